package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/server/internal/notify"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

// The 通知 page's forms: admins edit rules and channels (each save is a
// notify.settings_changed event), managers and admins acknowledge or
// resolve alerts through notify.AlertAction, and re-send failed deliveries
// through notify.Resend, the code behind POST /api/v1/alerts/{index}/{action}.

// ruleForm is one rule's form: what was stored, or what was sent back
// with the problems found, by field.
type ruleForm struct {
	Original                                                    string // name before the edit; "" for a new rule
	Name, Kind, Recipients, Webhooks, Departments, Delay, Thres string
	Repeat                                                      string // repeat_after
	Disabled, DeptRecipients, Default                           bool
	Errs                                                        map[string]string
	Err                                                         string
}

// smtpForm is the mail relay form; the password is never shown.
type smtpForm struct {
	Set                                           bool
	Host, Port, Security, Username, From, Charset string
	PasswordSet                                   bool
	Errs                                          map[string]string
	Err                                           string
}

// hookForm is one webhook's form.
type hookForm struct {
	Original, Name, URL, Format string
	Errs                        map[string]string
	Err                         string
}

// notifyView is the 通知 page.
type notifyView struct {
	Settings notify.Settings
	Revision int64
	Rules    []ruleForm
	SMTP     smtpForm
	Hooks    []hookForm
	Kinds    []kindOpt
	Log      []notify.Delivery
	Alerts   []notify.AlertRow
	// AlertErr and AlertComment keep a refused action's problem and text.
	AlertErr     map[int64]string
	AlertComment map[int64]string
	// Departments are those of PCs and register entries, offered by the
	// rule form; Unknown names, by rule, the departments outside them: a
	// mistyped department makes a rule that never fires, yet refusing it
	// would stop rules being set before a department's PCs enroll.
	Departments []string
	Unknown     map[string][]string
	// TestErr says, by channel ("mail" or "webhook:NAME"), why a test
	// send failed; TestMail keeps the addresses typed (notifytest.go).
	TestErr  map[string]string
	TestMail string
	// HoursSent is a refused hours or department form (notifyhours.go).
	HoursSent *hoursEdit
}

// kindOpt is one choice of the kind select.
type kindOpt struct{ Value, Label string }

func kindOpts() []kindOpt {
	out := make([]kindOpt, 0, len(notify.Kinds))
	for _, k := range notify.Kinds {
		out = append(out, kindOpt{k, labels.Of(labels.AlertKind, "ja", k)}) // the form is in Japanese
	}
	return out
}

func list(vs []string) string { return strings.Join(vs, ", ") }

func split(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '、' || r == '\n' || r == '\r' || r == ' ' || r == '\t' })
	if len(f) == 0 {
		return nil
	}
	return f
}

func formOfRule(r notify.Rule) ruleForm {
	f := ruleForm{Original: r.Name, Name: r.Name, Kind: r.Kind, Recipients: list(r.Recipients), Webhooks: list(r.Webhooks),
		Departments: list(r.Departments), Disabled: r.Disabled, DeptRecipients: r.DepartmentRecipients, Default: r.Default}
	if r.Delay != 0 {
		f.Delay = time.Duration(r.Delay).String()
	}
	if r.Threshold != 0 {
		f.Thres = strconv.Itoa(r.Threshold)
	}
	if r.RepeatAfter != 0 {
		f.Repeat = time.Duration(r.RepeatAfter).String()
	}
	return f
}

func formOfSMTP(m *notify.SMTP) smtpForm {
	if m == nil {
		return smtpForm{Port: "587", Security: notify.SecuritySTARTTLS, Charset: notify.CharsetISO2022JP}
	}
	return smtpForm{Set: true, Host: m.Host, Port: strconv.Itoa(m.Port), Security: m.Security, Username: m.Username,
		From: m.From, Charset: m.Charset, PasswordSet: m.Password != "" || m.PasswordSet}
}

// view builds the page from the current settings.
func (u *UI) notifyView(ctx context.Context) (*notifyView, error) {
	n := u.cfg.Alerting.Notifier
	set, rev, err := n.Settings(ctx)
	if err != nil {
		return nil, err
	}
	since := u.cfg.Now().AddDate(0, 0, -30)
	log, err := n.Log(ctx, since, 500)
	if err != nil {
		return nil, err
	}
	alerts, err := n.Alerts(ctx, since, 200)
	if err != nil {
		return nil, err
	}
	// What the messages were about is listed too, each linking to its
	// event: the messages point people here.
	alerted, err := n.Alerted(ctx, since, 500)
	if err != nil {
		return nil, err
	}
	alerts = append(alerts, alerted...)
	slices.SortStableFunc(alerts, func(a, b notify.AlertRow) int { return cmp.Compare(b.Index, a.Index) })
	v := &notifyView{Settings: set.Redacted(), Revision: rev, Kinds: kindOpts(), Log: log, Alerts: alerts,
		SMTP: formOfSMTP(set.SMTP), AlertErr: map[int64]string{}, AlertComment: map[int64]string{},
		TestErr: map[string]string{}}
	if v.Departments, err = u.departments(ctx); err != nil {
		return nil, err
	}
	v.Unknown = map[string][]string{}
	for _, r := range set.Rules {
		v.Rules = append(v.Rules, formOfRule(r))
		for _, d := range r.Departments {
			if !slices.Contains(v.Departments, d) {
				v.Unknown[r.Name] = append(v.Unknown[r.Name], d)
			}
		}
	}
	v.Rules = append(v.Rules, ruleForm{Kind: notify.KindViolation})
	for _, h := range set.Webhooks {
		v.Hooks = append(v.Hooks, hookForm{Original: h.Name, Name: h.Name, URL: h.URL, Format: h.Format})
	}
	v.Hooks = append(v.Hooks, hookForm{Format: notify.FormatGeneric})
	return v, nil
}

func (u *UI) handleNotifications(w http.ResponseWriter, r *http.Request) {
	v, err := u.notifyView(r.Context())
	if err != nil {
		u.internal(w, r, "notification settings", err)
		return
	}
	u.showNotifications(w, r, http.StatusOK, v)
}

func (u *UI) showNotifications(w http.ResponseWriter, r *http.Request, status int, v *notifyView) {
	p := u.titled(r, "notifications", "通知", "Notifications")
	p.Data = v
	u.render(w, r, status, "notifications", p)
}

// refuse re-renders the page with one form replaced by what was sent.
func (u *UI) refuse(w http.ResponseWriter, r *http.Request, status int, edit func(v *notifyView)) {
	v, err := u.notifyView(r.Context())
	if err != nil {
		u.internal(w, r, "notification settings", err)
		return
	}
	edit(v)
	u.showNotifications(w, r, status, v)
}

// store saves s and records the change; the answer is a field-free
// problem for the form's top, or "" when saved.
func (u *UI) store(r *http.Request, s notify.Settings, rev int64, object string, attrs event.Attrs) (string, int) {
	if _, err := u.cfg.Alerting.Notifier.PutSettings(r.Context(), s, rev); err != nil {
		switch {
		case errors.Is(err, notify.ErrInvalid):
			return "設定が正しくありません: " + strings.TrimPrefix(err.Error(), notify.ErrInvalid.Error()+": "), http.StatusBadRequest
		case errors.Is(err, notify.ErrConflict):
			return "他の人が通知の設定を変更しました。ページを再読み込みしてからやり直してください。", http.StatusConflict
		}
		u.log.Error().Err(err).Msg("web: storing notification settings")
		return "内部エラーのため保存できませんでした。", http.StatusInternalServerError
	}
	u.record(r, sessionFrom(r.Context()).Name, event.Event{Control: notify.Control, Type: notify.TypeSettings,
		Object: object, Attrs: attrs})
	return "", 0
}

func revisionOf(r *http.Request) (int64, bool) {
	v, err := strconv.ParseInt(r.PostFormValue("revision"), 10, 64)
	return v, err == nil && v >= 0
}

// handleRuleForm saves (or, with action=delete, removes) one rule.
func (u *UI) handleRuleForm(w http.ResponseWriter, r *http.Request) {
	set, _, err := u.cfg.Alerting.Notifier.Settings(r.Context())
	if err != nil {
		u.internal(w, r, "notification settings", err)
		return
	}
	rev, ok := revisionOf(r)
	f := ruleForm{Original: r.PostFormValue("original"), Name: strings.TrimSpace(r.PostFormValue("name")),
		Kind: r.PostFormValue("kind"), Recipients: r.PostFormValue("recipients"), Webhooks: r.PostFormValue("webhooks"),
		Departments: r.PostFormValue("departments"), Delay: strings.TrimSpace(r.PostFormValue("delay")),
		Thres: strings.TrimSpace(r.PostFormValue("threshold")), Repeat: strings.TrimSpace(r.PostFormValue("repeat_after")), Disabled: r.PostFormValue("disabled") != "",
		DeptRecipients: r.PostFormValue("department_recipients") != "", Default: r.PostFormValue("default") != "",
		Errs: map[string]string{}}
	put := func(status int) {
		u.refuse(w, r, status, func(v *notifyView) {
			for i := range v.Rules {
				if v.Rules[i].Original == f.Original {
					v.Rules[i] = f
					return
				}
			}
			v.Rules = append(v.Rules, f)
		})
	}
	if !ok {
		f.Err = "フォームが古くなっています。ページを再読み込みしてください。"
		put(http.StatusBadRequest)
		return
	}
	at := slices.IndexFunc(set.Rules, func(ru notify.Rule) bool { return ru.Name == f.Original })
	if f.Original != "" && at < 0 {
		f.Err = "このルールはもうありません。ページを再読み込みしてください。"
		put(http.StatusConflict)
		return
	}
	rules := slices.Clone(set.Rules)
	attrs := event.Attrs{"rule": f.Original}
	if r.PostFormValue("action") == "delete" {
		if at < 0 {
			f.Err = "削除するルールがありません。"
			put(http.StatusBadRequest)
			return
		}
		rules = slices.Delete(rules, at, at+1)
		attrs["change"] = "rule.deleted"
	} else {
		ru, bad := parseRule(&f, set, rules, at)
		if bad {
			put(http.StatusBadRequest)
			return
		}
		if at < 0 {
			rules = append(rules, ru)
		} else {
			rules[at] = ru
		}
		attrs["change"], attrs["rule"], attrs["kind"] = "rule.saved", ru.Name, ru.Kind
		attrs["recipients"], attrs["webhooks"] = len(ru.Recipients), list(ru.Webhooks)
	}
	set.Rules = rules
	if msg, status := u.store(r, set, rev, "notifications/rule/"+fmt.Sprint(attrs["rule"]), attrs); msg != "" {
		f.Err = msg
		put(status)
		return
	}
	back(w, r, "/notifications", "saved")
}

// parseRule checks the form field by field (messages in Japanese beside
// each field) and returns the rule; bad says f.Errs holds problems.
func parseRule(f *ruleForm, set notify.Settings, rules []notify.Rule, at int) (notify.Rule, bool) {
	ru := notify.Rule{Name: f.Name, Kind: f.Kind, Disabled: f.Disabled, DepartmentRecipients: f.DeptRecipients,
		Recipients: split(f.Recipients), Webhooks: split(f.Webhooks), Departments: split(f.Departments), Default: f.Default}
	switch {
	case ru.Name == "" || len(ru.Name) > 64:
		f.Errs["name"] = "名前を入力してください (64 バイト以内)。"
	case slices.ContainsFunc(rules, func(o notify.Rule) bool { return o.Name == ru.Name && (at < 0 || o.Name != rules[at].Name) }):
		f.Errs["name"] = "同じ名前のルールがあります。"
	}
	if !slices.Contains(notify.Kinds, ru.Kind) {
		f.Errs["kind"] = "種類を一覧から選んでください。"
	}
	for _, a := range ru.Recipients {
		if _, err := mail.ParseAddress(a); err != nil {
			f.Errs["recipients"] = "メールアドレスではありません: " + a
			break
		}
	}
	if _, ok := f.Errs["recipients"]; !ok {
		switch {
		case (len(ru.Recipients) > 0 || ru.DepartmentRecipients) && set.SMTP == nil:
			f.Errs["recipients"] = "メールを送るには先に SMTP サーバーを設定してください。"
		case len(ru.Recipients) == 0 && len(ru.Webhooks) == 0 && !ru.DepartmentRecipients && !ru.Default:
			f.Errs["recipients"] = "宛先、Webhook、部署の宛先のいずれかを指定してください。"
		case len(ru.Recipients) > 100:
			f.Errs["recipients"] = "宛先は 100 件までです。"
		}
	}
	for _, h := range ru.Webhooks {
		if !slices.ContainsFunc(set.Webhooks, func(w notify.Webhook) bool { return w.Name == h }) {
			f.Errs["webhooks"] = "その名前の Webhook はありません: " + h
			break
		}
	}
	if f.Delay != "" {
		d, err := notify.ParseDuration(f.Delay)
		if err != nil || d < 0 || d > 24*time.Hour {
			f.Errs["delay"] = "「30s」「5m」「1h」「2分」のように 24 時間以内で入力してください。"
		}
		ru.Delay = notify.Duration(d)
	}
	if f.Repeat != "" && (f.Kind == notify.KindViolation || f.Kind == notify.KindSilent) {
		d, err := notify.ParseDuration(f.Repeat)
		if err != nil || d < 0 || d > 7*24*time.Hour {
			f.Errs["repeat_after"] = "「30m」「1h」「1時間」のように 7 日 (168h) 以内で入力してください。"
		}
		ru.RepeatAfter = notify.Duration(d)
	}
	if f.Thres != "" {
		v, err := strconv.Atoi(f.Thres)
		if err != nil || v < 0 || v > 10000 {
			f.Errs["threshold"] = "0 から 10000 までの数で入力してください。"
		}
		ru.Threshold = v
	}
	return ru, len(f.Errs) > 0
}

// handleSMTPForm saves (or, with action=delete, removes) the mail relay.
func (u *UI) handleSMTPForm(w http.ResponseWriter, r *http.Request) {
	set, _, err := u.cfg.Alerting.Notifier.Settings(r.Context())
	if err != nil {
		u.internal(w, r, "notification settings", err)
		return
	}
	rev, ok := revisionOf(r)
	f := smtpForm{Set: set.SMTP != nil, Host: strings.TrimSpace(r.PostFormValue("host")), Port: strings.TrimSpace(r.PostFormValue("port")),
		Security: r.PostFormValue("security"), Username: strings.TrimSpace(r.PostFormValue("username")),
		From: strings.TrimSpace(r.PostFormValue("from")), Charset: r.PostFormValue("charset"),
		PasswordSet: set.SMTP != nil && set.SMTP.Password != "", Errs: map[string]string{}}
	put := func(status int) { u.refuse(w, r, status, func(v *notifyView) { v.SMTP = f }) }
	if !ok {
		f.Err = "フォームが古くなっています。ページを再読み込みしてください。"
		put(http.StatusBadRequest)
		return
	}
	attrs := event.Attrs{"change": "smtp.saved"}
	if r.PostFormValue("action") == "delete" {
		set.SMTP = nil
		attrs["change"] = "smtp.deleted"
	} else {
		m := &notify.SMTP{Host: f.Host, Security: f.Security, Username: f.Username, Password: r.PostFormValue("password"),
			From: f.From, Charset: f.Charset}
		if m.Host == "" || strings.ContainsAny(m.Host, " /\r\n") {
			f.Errs["host"] = "SMTP サーバーのホスト名を入力してください。"
		}
		port, err := strconv.Atoi(f.Port)
		if err != nil || port < 1 || port > 65535 {
			f.Errs["port"] = "1 から 65535 までのポート番号を入力してください。"
		}
		m.Port = port
		if !slices.Contains([]string{notify.SecuritySTARTTLS, notify.SecurityTLS, notify.SecurityNone}, m.Security) {
			f.Errs["security"] = "暗号化の方式を選んでください。"
		} else if m.Security == notify.SecurityNone && !notify.IsLoopback(m.Host) {
			f.Errs["security"] = "暗号化なしは同じマシン上の中継 (127.0.0.1、localhost) だけに使えます。STARTTLS か TLS を選んでください。"
		}
		if !slices.Contains([]string{notify.CharsetISO2022JP, notify.CharsetUTF8}, m.Charset) {
			f.Errs["charset"] = "文字コードを選んでください。"
		}
		if _, err := mail.ParseAddress(m.From); err != nil {
			f.Errs["from"] = "送信元のメールアドレスを入力してください。"
		}
		if m.Password != "" && m.Username == "" {
			f.Errs["username"] = "パスワードを使うにはユーザー名も入力してください。"
		}
		if len(f.Errs) > 0 {
			put(http.StatusBadRequest)
			return
		}
		set.SMTP = m
		attrs["host"], attrs["security"] = m.Host, m.Security
	}
	if msg, status := u.store(r, set, rev, "notifications/smtp", attrs); msg != "" {
		f.Err = msg
		put(status)
		return
	}
	back(w, r, "/notifications", "saved")
}

// handleWebhookForm saves (or, with action=delete, removes) one webhook;
// a rename follows into the rules that use it.
func (u *UI) handleWebhookForm(w http.ResponseWriter, r *http.Request) {
	set, _, err := u.cfg.Alerting.Notifier.Settings(r.Context())
	if err != nil {
		u.internal(w, r, "notification settings", err)
		return
	}
	rev, ok := revisionOf(r)
	f := hookForm{Original: r.PostFormValue("original"), Name: strings.TrimSpace(r.PostFormValue("name")),
		URL: strings.TrimSpace(r.PostFormValue("url")), Format: r.PostFormValue("format"), Errs: map[string]string{}}
	put := func(status int) {
		u.refuse(w, r, status, func(v *notifyView) {
			for i := range v.Hooks {
				if v.Hooks[i].Original == f.Original {
					v.Hooks[i] = f
					return
				}
			}
			v.Hooks = append(v.Hooks, f)
		})
	}
	if !ok {
		f.Err = "フォームが古くなっています。ページを再読み込みしてください。"
		put(http.StatusBadRequest)
		return
	}
	at := slices.IndexFunc(set.Webhooks, func(h notify.Webhook) bool { return h.Name == f.Original })
	if f.Original != "" && at < 0 {
		f.Err = "この Webhook はもうありません。ページを再読み込みしてください。"
		put(http.StatusConflict)
		return
	}
	hooks, rules := slices.Clone(set.Webhooks), slices.Clone(set.Rules)
	attrs := event.Attrs{"webhook": f.Original}
	if r.PostFormValue("action") == "delete" {
		if at < 0 {
			f.Err = "削除する Webhook がありません。"
			put(http.StatusBadRequest)
			return
		}
		for _, ru := range rules {
			if slices.Contains(ru.Webhooks, f.Original) {
				f.Errs["name"] = "ルール「" + ru.Name + "」が使っているため削除できません。"
				put(http.StatusBadRequest)
				return
			}
		}
		hooks = slices.Delete(hooks, at, at+1)
		attrs["change"] = "webhook.deleted"
	} else {
		switch {
		case f.Name == "" || len(f.Name) > 64:
			f.Errs["name"] = "名前を入力してください (64 バイト以内)。"
		case slices.ContainsFunc(hooks, func(h notify.Webhook) bool { return h.Name == f.Name && h.Name != f.Original }):
			f.Errs["name"] = "同じ名前の Webhook があります。"
		}
		if pu, err := url.Parse(f.URL); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			f.Errs["url"] = "https:// で始まる URL を入力してください。"
		}
		if !slices.Contains([]string{notify.FormatGeneric, notify.FormatTeams, notify.FormatSlack}, f.Format) {
			f.Errs["format"] = "形式を選んでください。"
		}
		if len(f.Errs) > 0 {
			put(http.StatusBadRequest)
			return
		}
		h := notify.Webhook{Name: f.Name, URL: f.URL, Format: f.Format}
		if at < 0 {
			hooks = append(hooks, h)
		} else {
			hooks[at] = h
			for i := range rules {
				rules[i].Webhooks = slices.Clone(rules[i].Webhooks)
				for j, n := range rules[i].Webhooks {
					if n == f.Original {
						rules[i].Webhooks[j] = f.Name
					}
				}
			}
		}
		// The URL may hold a secret: only the name and format are recorded.
		attrs["change"], attrs["webhook"], attrs["format"] = "webhook.saved", h.Name, h.Format
	}
	set.Webhooks, set.Rules = hooks, rules
	if msg, status := u.store(r, set, rev, "notifications/webhook/"+fmt.Sprint(attrs["webhook"]), attrs); msg != "" {
		f.Err = msg
		put(status)
		return
	}
	back(w, r, "/notifications", "saved")
}

// handleAlertForm acknowledges or resolves an alert with a comment, or
// re-sends a failed delivery (handleResend).
func (u *UI) handleAlertForm(w http.ResponseWriter, r *http.Request) {
	idx, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	action := r.PathValue("action")
	if err != nil || idx < 0 || (action != notify.ActionAcknowledge && action != notify.ActionResolve && action != notify.ActionResend) {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	if action == notify.ActionResend {
		u.handleResend(w, r, idx)
		return
	}
	comment := r.PostFormValue("comment")
	err = u.cfg.Alerting.Notifier.AlertAction(r.Context(), sessionFrom(r.Context()).Name, "web", idx, action, comment)
	switch {
	case errors.Is(err, notify.ErrInvalid):
		msg := "コメントを入力してください (確認・対応した内容)。"
		if n := utf8.RuneCountInString(strings.TrimSpace(comment)); n > notify.MaxComment {
			msg = fmt.Sprintf("コメントは %d 文字以内にしてください (%d 文字あります)。", notify.MaxComment, n)
		}
		u.refuse(w, r, http.StatusBadRequest, func(v *notifyView) {
			v.AlertErr[idx] = msg
			v.AlertComment[idx] = comment
		})
		return
	case errors.Is(err, notify.ErrResolved):
		u.refuse(w, r, http.StatusConflict, func(v *notifyView) {
			msg := "この警告はすでに解決済みです。確認済みに戻すことはできません。"
			var re *notify.ResolvedError
			if errors.As(err, &re) {
				msg = fmt.Sprintf("この警告は %s に %s が解決済みにしました。確認済みに戻すことはできません。",
					re.At.In(u.cfg.Location).Format("2006-01-02 15:04"), re.By)
			}
			v.AlertErr[idx] = msg
			v.AlertComment[idx] = comment
		})
		return
	case errors.Is(err, notify.ErrNoAlert):
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	case err != nil:
		u.internal(w, r, "alert action", err)
		return
	}
	back(w, r, "/notifications", "saved")
}

// handleResend re-sends a failed delivery through notify.Resend, the code
// behind POST /api/v1/alerts/{index}/resend; a refusal or a failure is
// said on the row (a failed attempt is recorded and the row stays failed).
func (u *UI) handleResend(w http.ResponseWriter, r *http.Request, idx int64) {
	err := u.cfg.Alerting.Notifier.Resend(r.Context(), sessionFrom(r.Context()).Name, "web", idx)
	say := func(status int, msg string) {
		u.refuse(w, r, status, func(v *notifyView) { v.AlertErr[idx] = msg })
	}
	switch {
	case errors.Is(err, notify.ErrNoAlert):
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
	case errors.Is(err, notify.ErrResent):
		say(http.StatusConflict, "この通知はすでに再送されています (または再送中です)。二重には送りません。")
	case errors.Is(err, notify.ErrSendFailed):
		say(http.StatusBadGateway, "再送できませんでした: "+notify.ErrorJA(err.Error())+"。送信先が復旧してからもう一度再送してください。")
	case errors.Is(err, notify.ErrInvalid):
		say(http.StatusBadRequest, "再送できません (送信先が今の設定にないか、本文が記録されていません): "+strings.TrimPrefix(err.Error(), notify.ErrInvalid.Error()+": "))
	case err != nil:
		u.internal(w, r, "re-send", err)
	default:
		back(w, r, "/notifications", "resent")
	}
}
