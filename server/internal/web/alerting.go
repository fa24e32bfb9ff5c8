package web

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/incident"
	"github.com/mamori/mamori/server/internal/notify"
	"github.com/mamori/mamori/server/internal/report"
	"github.com/mamori/mamori/shared/event"
)

// Alerting holds the services behind the notification, incident and
// report pages; any may be nil, and its pages then answer 404.
type Alerting struct {
	Notifier  *notify.Notifier
	Incidents *incident.Service
	Reports   *report.Service
}

// alertingRoutes mounts the pages; reading them takes any role. Admins
// edit notification rules and channels, managers and admins acknowledge
// and resolve alerts; each change is an event (notifyform.go).
func (u *UI) alertingRoutes(mux *http.ServeMux) {
	a := u.cfg.Alerting
	if a == nil {
		return
	}
	if a.Notifier != nil {
		mux.HandleFunc("GET /notifications", u.auth(anyRole, u.handleNotifications))
		mux.HandleFunc("POST /notifications/rules", u.auth(adminsOnly, u.handleRuleForm))
		mux.HandleFunc("POST /notifications/smtp", u.auth(adminsOnly, u.handleSMTPForm))
		mux.HandleFunc("POST /notifications/webhooks", u.auth(adminsOnly, u.handleWebhookForm))
		mux.HandleFunc("POST /notifications/test", u.auth(adminsOnly, u.handleTestSend))
		mux.HandleFunc("POST /notifications/hours", u.auth(adminsOnly, u.handleHoursForm))
		mux.HandleFunc("POST /notifications/departments", u.auth(adminsOnly, u.handleDepartmentForm))
		mux.HandleFunc("POST /alerts/{index}/{action}", u.auth(deciders, u.handleAlertForm))
	}
	if a.Incidents != nil {
		mux.HandleFunc("GET /incidents", u.auth(anyRole, u.handleIncidents))
		mux.HandleFunc("POST /incidents", u.auth(deciders, u.handleIncidentOpen))
		mux.HandleFunc("GET /incidents/{id}", u.auth(anyRole, u.handleIncident))
		mux.HandleFunc("POST /incidents/{id}", u.auth(deciders, u.handleIncidentSave))
		mux.HandleFunc("GET /incidents/{id}/worksheet", u.auth(anyRole, u.handleWorksheet))
	}
	if a.Reports != nil {
		mux.HandleFunc("GET /reports", u.auth(anyRole, u.handleReports))
	}
}

func (u *UI) titled(r *http.Request, nav, ja, en string) *page {
	p := u.newPage(r, nav, "")
	p.Title = ja
	if p.Lang == "en" {
		p.Title = en
	}
	return p
}

// incidentsView is the 事故 page: the list and the form to open one by
// hand (kept, with its problem, when refused).
type incidentsView struct {
	List []incident.Incident
	Form incidentForm
}

type incidentForm struct {
	Title, DiscoveredAt, Summary string
	Err                          string
}

func (u *UI) handleIncidents(w http.ResponseWriter, r *http.Request) {
	u.incidentsPage(w, r, http.StatusOK, incidentForm{})
}

func (u *UI) incidentsPage(w http.ResponseWriter, r *http.Request, status int, f incidentForm) {
	all, err := u.cfg.Alerting.Incidents.List(r.Context())
	if err != nil {
		u.internal(w, r, "incidents", err)
		return
	}
	p := u.titled(r, "incidents", "事故・漏えい等", "Incidents")
	p.Data = incidentsView{List: all, Form: f}
	u.render(w, r, status, "incidents", p)
}

// handleIncidentOpen opens an incident from an alert (the 通知 page's
// button: alert=INDEX) or by hand (title); discovered_at is a Japan time
// (YYYY-MM-DDTHH:MM), now when empty. The incident service records it.
func (u *UI) handleIncidentOpen(w http.ResponseWriter, r *http.Request) {
	f := incidentForm{Title: strings.TrimSpace(r.PostFormValue("title")), DiscoveredAt: strings.TrimSpace(r.PostFormValue("discovered_at")),
		Summary: r.PostFormValue("summary")}
	en := langOf(r) == "en"
	refuse := func(ja, enMsg string) {
		if f.Err = ja; en {
			f.Err = enMsg
		}
		u.incidentsPage(w, r, http.StatusBadRequest, f)
	}
	req := incident.OpenRequest{Title: f.Title, Summary: f.Summary}
	if a := r.PostFormValue("alert"); a != "" {
		idx, err := strconv.ParseInt(a, 10, 64)
		if err != nil || idx < 0 {
			refuse("アラートの番号が正しくありません。", "The alert number is not valid.")
			return
		}
		req.Alert = &idx
	}
	if f.DiscoveredAt != "" {
		t, err := time.ParseInLocation("2006-01-02T15:04", f.DiscoveredAt, u.cfg.Location)
		if err != nil {
			refuse("発覚日時は 2026-12-03T09:30 の形で入力してください。", "Give the discovery time as 2026-12-03T09:30.")
			return
		}
		req.DiscoveredAt = t
	}
	_, err := u.cfg.Alerting.Incidents.Open(r.Context(), sessionFrom(r.Context()).Name, req)
	switch {
	case errors.Is(err, incident.ErrNotFound):
		refuse("そのアラートは見つかりません。", "No such alert.")
		return
	case errors.Is(err, incident.ErrInvalid):
		refuse(incidentProblem(err), incidentProblemEN(err))
		return
	case err != nil:
		u.internal(w, r, "open incident", err)
		return
	}
	back(w, r, "/incidents", "saved")
}

// incidentProblemEN is the incident service's own (English) words.
func incidentProblemEN(err error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, "invalid: "); ok {
		msg = after
	}
	return "Check the input: " + msg + "."
}

// incidentProblem says in Japanese what was wrong with an incident form.
func incidentProblem(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "title is required"):
		return "件名を入力してください (アラートから記録するときは不要です)。"
	case strings.Contains(msg, "in the future"):
		return "発覚日時が未来になっています。"
	case strings.Contains(msg, "occurred_at is after discovered_at"):
		return "発生日時が発覚日時より後になっています (アラートから記録するときは、発覚日時がアラートの発生より前になっています)。"
	case strings.Contains(msg, "add_entries"):
		return "追加する台帳番号が個人情報管理台帳にありません: " + msg[strings.LastIndex(msg, " ")+1:]
	case strings.Contains(msg, "status must be"):
		return "状態を選択肢から選んでください。"
	case strings.Contains(msg, "persons must be"):
		return "本人の数は 0 以上にしてください。"
	case strings.Contains(msg, "longer than"):
		return "長すぎる項目があります: " + msg
	case strings.Contains(msg, "a reportable incident is closed once"):
		return "報告対象の事故は、速報と確報の報告日時を記録するまで「完了」にできません。報告対象でないと判断した場合は、その根拠（本人の数、要配慮・暗号化などの項目）を直してから完了にしてください。"
	case strings.Contains(msg, "not an alert"):
		return "このイベントはアラートではありません。"
	default:
		return "入力を確認してください: " + msg
	}
}

func (u *UI) handleWorksheet(w http.ResponseWriter, r *http.Request) {
	s := u.cfg.Alerting.Incidents
	in, err := s.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, incident.ErrNotFound) {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	if err != nil {
		u.internal(w, r, "incident", err)
		return
	}
	var buf bytes.Buffer
	switch r.URL.Query().Get("format") {
	case "", "html":
		err = s.WorksheetHTML(r.Context(), &buf, in)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	case "csv":
		err = s.WorksheetCSV(r.Context(), &buf, in)
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="mamori-`+in.ID+`-worksheet.csv"`)
	default:
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "format: html, csv")
		return
	}
	if err != nil {
		w.Header().Del("Content-Disposition")
		u.internal(w, r, "worksheet", err)
		return
	}
	_, _ = w.Write(buf.Bytes())
}

// handleReports shows the report form; with from and to it answers the
// report itself (html or csv), recorded as an export.
func (u *UI) handleReports(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	depts, err := u.departments(r.Context())
	if err != nil {
		u.internal(w, r, "report departments", err)
		return
	}
	// form shows the form with the values given, and a refusal in the
	// page's language (the exact detail after it).
	form := func(status int, ja, en, detail string) {
		p := u.titled(r, "reports", "監査報告書", "Audit reports")
		p.Data = reportForm{From: q.Get("from"), To: q.Get("to"), Department: q.Get("department"), Format: q.Get("format"), Departments: depts}
		if ja != "" {
			p.Err = ja
			if p.Lang == "en" {
				p.Err = en
			}
			if detail != "" {
				p.Err += " (" + detail + ")"
			}
		}
		u.render(w, r, status, "reports", p)
	}
	if q.Get("from") == "" && q.Get("to") == "" {
		now := u.cfg.Now().In(u.cfg.Location)
		first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, u.cfg.Location)
		q.Set("from", first.AddDate(0, -1, 0).Format(time.DateOnly))
		q.Set("to", first.AddDate(0, 0, -1).Format(time.DateOnly))
		form(http.StatusOK, "", "", "")
		return
	}
	from, to, err := report.ParseDates(q.Get("from"), q.Get("to"))
	if err != nil {
		form(http.StatusBadRequest, "開始日と終了日を YYYY-MM-DD で、開始日が終了日より後にならないように指定してください。",
			"Give the start and end as YYYY-MM-DD, the start not after the end.", strings.TrimPrefix(err.Error(), report.ErrInvalid.Error()+": "))
		return
	}
	if d := q.Get("department"); d != "" && !slices.Contains(depts, d) {
		form(http.StatusBadRequest, "部署「"+d+"」の端末も台帳もありません。部署名を一覧から選んでください (空欄で全部署)。",
			"No PC and no register entry has the department \""+d+"\". Pick one from the list (empty: all).", "")
		return
	}
	if q.Get("format") == "bundle" {
		if q.Get("department") != "" {
			form(http.StatusBadRequest, "証跡バンドルは期間の全イベントです。部署は空欄にしてください (部署ごとの数字はその一部です)。",
				"The evidence bundle holds every event of the period: leave the department empty (a department's figures are a subset of it).", "")
			return
		}
		u.reportBundle(w, r, from, to)
		return
	}
	rep, err := u.cfg.Alerting.Reports.Build(r.Context(), report.Params{From: from, To: to, Department: q.Get("department")})
	if errors.Is(err, report.ErrInvalid) {
		ja, en := "報告書を作成できません。期間は 3 年以内にしてください。", "The report cannot be made: at most three years."
		if errors.Is(err, report.ErrFuture) {
			ja, en = "報告書を作成できません。期間の開始日が未来です（まだ起きていない期間の記録は証明できません）。", "The report cannot be made: the period starts in the future."
		}
		form(http.StatusBadRequest, ja, en, "")
		return
	}
	if err != nil {
		u.internal(w, r, "report", err)
		return
	}
	var buf bytes.Buffer
	format := q.Get("format")
	switch format {
	case "", "html":
		format = "html"
		err = rep.HTML(&buf)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	case "csv":
		err = rep.CSV(&buf)
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="mamori-audit-`+q.Get("from")+`-`+q.Get("to")+`.csv"`)
	default:
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "format: html, csv")
		return
	}
	if err != nil {
		w.Header().Del("Content-Disposition")
		u.internal(w, r, "report", err)
		return
	}
	u.record(r, sessionFrom(r.Context()).Name, eventExport("report/audit", format, q.Get("from"), q.Get("to"), q.Get("department")))
	_, _ = w.Write(buf.Bytes())
}

// departments lists the departments a report or a rule can name
// (report.Service.Departments: the one rule for both pages and the API).
func (u *UI) departments(ctx context.Context) ([]string, error) {
	if u.cfg.Alerting == nil || u.cfg.Alerting.Reports == nil {
		return nil, nil
	}
	return u.cfg.Alerting.Reports.Departments(ctx)
}

// reportForm is the 監査報告 form's data.
type reportForm struct {
	From, To, Department, Format string
	Departments                  []string // of PCs and register entries, sorted
}

// reportBundle writes the evidence bundle behind a report: every event
// of the period (as the API's format=bundle), for mamori-server verify.
func (u *UI) reportBundle(w http.ResponseWriter, r *http.Request, from, to time.Time) {
	q := r.URL.Query()
	if u.cfg.Evidence == nil {
		u.fail(w, r, http.StatusNotImplemented, "err_invalid", "export is not enabled on this server")
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="mamori-audit-`+q.Get("from")+`-`+q.Get("to")+`.jsonl"`)
	cw := &countingWriter{w: w}
	sum, err := u.cfg.Evidence.Bundle(r.Context(), cw, api.Filter{From: from, To: to.AddDate(0, 0, 1)}, 0,
		map[string]string{"report": "audit", "from": q.Get("from"), "to": q.Get("to")})
	if err != nil {
		w.Header().Del("Content-Disposition")
		u.exportFailed(w, r, err, cw.n > 0)
		return
	}
	e := eventExport("report/audit", "bundle", q.Get("from"), q.Get("to"), "")
	e.Attrs["events"], e.Attrs["tree_size"] = sum.Events, sum.TreeSize
	u.record(r, sessionFrom(r.Context()).Name, e)
}

// eventExport is the record of a report downloaded from the UI.
func eventExport(object, format, from, to, dept string) event.Event {
	return event.Event{Type: "export.made", Object: object,
		Attrs: event.Attrs{"format": format, "from": from, "to": to, "department": dept}}
}

// alertActs maps each open 概要 alert (kind|agent|control) to the latest
// alert event raised for it, so 概要 links to its 確認/解決 on 通知. A
// failure only loses the links: it is logged, not shown as an error.
func (u *UI) alertActs(ctx context.Context) map[string]notify.AlertRow {
	if u.cfg.Alerting == nil || u.cfg.Alerting.Notifier == nil {
		return nil
	}
	rows, err := u.cfg.Alerting.Notifier.Alerts(ctx, u.cfg.Now().AddDate(0, 0, -30), 1000)
	if err != nil {
		u.log.Warn().Err(err).Msg("web: alert states for 概要")
		return nil
	}
	out := map[string]notify.AlertRow{}
	for _, r := range rows { // newest first: keep the first of each
		k := r.Kind + "|" + r.Agent + "|" + r.Control
		if _, ok := out[k]; !ok && r.Type != notify.TypeFailed {
			out[k] = r
		}
	}
	return out
}
