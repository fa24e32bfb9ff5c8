package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// ActionResend re-sends a failed delivery (POST /api/v1/alerts/{index}/resend
// and the 通知 page's 再送).
const ActionResend = "resend"

// ErrResent refuses a re-send of a delivery a re-send already got through
// (or one under way): a second press or a stale tab must not send it twice.
var ErrResent = errors.New("notify: the failed delivery was already re-sent")

// ErrSendFailed wraps the error of a re-send that failed again (the
// attempt is recorded and the delivery stays failed), or of a test send.
var ErrSendFailed = errors.New("notify: sending failed")

// maxKept bounds the encoded attrs of a failed delivery, under the
// event's limit (event.MaxAttrsLen) with room for the store's encoding.
const maxKept = event.MaxAttrsLen - 2<<10

// keepMessage puts m's items, and with withText its text, into a final
// outcome's attrs: the 通知 page lists what was alerted (Alerted) and says
// what a failure lost, and Resend sends that again. Items are dropped from
// the end, then the text is cut, to fit; the count stays. A monthly report
// is not kept: its attachments would not fit.
func keepMessage(attrs event.Attrs, m Message, withText bool) {
	if m.Kind == "report" {
		return
	}
	items, text := m.Items, m.Text
	// Half the room for the text, so a long one leaves items to list.
	if len(text) > maxKept/2 {
		text = cutText(text, maxKept/2)
	}
	for {
		var its []any
		if b, err := json.Marshal(items); err == nil {
			d := json.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			_ = d.Decode(&its)
		}
		attrs["items"] = its
		if withText {
			attrs["text"] = text
		}
		if !m.First.IsZero() {
			attrs["first"], attrs["last"] = m.First.UTC().Format(time.RFC3339Nano), m.Last.UTC().Format(time.RFC3339Nano)
		}
		b, err := json.Marshal(attrs)
		switch {
		case err != nil || len(b) <= maxKept:
			return
		case len(items) > 0:
			items = items[:len(items)-1]
		case !withText || len(text) < 64:
			delete(attrs, "text") // cannot be made to fit; not re-sendable
			return
		default:
			text = cutText(text, len(text)-(len(b)-maxKept)-64)
		}
	}
}

// cutText cuts s to about n bytes at a character, saying so.
func cutText(s string, n int) string {
	s = strings.TrimSuffix(s, omitted)
	n = max(min(n-len(omitted), len(s)), 0)
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + omitted
}

const omitted = "\n(長いため以下省略)\n"

// storedMessage is the message a failed delivery kept; false if it kept
// none (recorded before messages were kept, or a monthly report).
func storedMessage(e *eventlog.Stored) (Message, bool) {
	str := func(k string) string { s, _ := e.Attrs[k].(string); return s }
	text, ok := e.Attrs["text"].(string)
	if !ok {
		return Message{}, false
	}
	m := Message{Rule: str("rule"), Kind: str("kind"), Subject: str("subject"), Text: text}
	m.Count, _ = strconv.Atoi(fmt.Sprint(e.Attrs["count"]))
	if b, err := json.Marshal(e.Attrs["items"]); err == nil {
		_ = json.Unmarshal(b, &m.Items)
	}
	m.First, _ = time.Parse(time.RFC3339Nano, str("first"))
	m.Last, _ = time.Parse(time.RFC3339Nano, str("last"))
	return m, true
}

// Resend sends the message of the failed delivery at idx once more, to the
// destination that failed only (the others got it), as the settings now
// name it (a webhook's URL is not in the log); one attempt, so the person
// who asked sees the outcome. user asked, via "web" or "" (the API); the
// outcome is recorded like any delivery's, with resend_of and who. Bad
// input wraps ErrInvalid, an index that is no failed delivery ErrNoAlert;
// a delivery already re-sent is refused with ErrResent.
func (n *Notifier) Resend(ctx context.Context, user, via string, idx int64) error {
	a, err := n.failedAt(ctx, idx)
	if err != nil {
		return err
	}
	m, ok := storedMessage(&a)
	switch kind, _ := a.Attrs["kind"].(string); {
	case kind == "report":
		return invalid("a monthly report is not re-sent from here (its attachments were not kept)")
	case !ok:
		return invalid("the failed delivery at index %d was recorded before messages were kept; it cannot be re-sent", idx)
	}
	set, _, err := n.Settings(ctx)
	if err != nil {
		return err
	}
	name, _ := a.Attrs["destination"].(string)
	d, err := destinationNamed(set, name)
	if err != nil {
		return err
	}
	n.mu.Lock()
	if n.resending == nil {
		n.resending = map[int64]bool{}
	}
	if n.resending[idx] {
		n.mu.Unlock()
		return fmt.Errorf("%w: a re-send of delivery %d is under way", ErrResent, idx)
	}
	n.resending[idx] = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.resending, idx)
		n.mu.Unlock()
	}()
	// The guard above is this server's; the claim in etcd is every
	// server's, so two admins on two servers cannot both send it.
	rev, err := n.claimResend(ctx, idx)
	if err != nil {
		return err
	}
	if done, err := n.resent(ctx, a); err != nil {
		n.releaseResend(ctx, idx, rev, false)
		return err
	} else if done {
		n.releaseResend(ctx, idx, rev, true)
		return fmt.Errorf("%w: delivery %d", ErrResent, idx)
	}
	err = n.sendRecorded(ctx, d, m, user, via, TypeSent, TypeAttemptFailed, event.Attrs{"resend_of": idx})
	n.releaseResend(ctx, idx, rev, err == nil)
	return err
}

// sendRecorded makes one attempt, for user who asked (via the web or ""
// the API), to deliver m to d, and records its outcome as typ ok or failed
// with more attrs; a failure wraps ErrSendFailed.
func (n *Notifier) sendRecorded(ctx context.Context, d destination, m Message, user, via, ok, failed string, more event.Attrs) error {
	actx, cancel := context.WithTimeout(ctx, resendTimeout)
	err := send(actx, d, m)
	cancel()
	if via != "" {
		more["via"] = via
	}
	if err != nil {
		n.recordAs(ctx, failed, event.Warning, d, m, 1, err, user, more)
		return fmt.Errorf("%w: %w", ErrSendFailed, err)
	}
	n.recordAs(ctx, ok, event.Info, d, m, 1, nil, user, more)
	return nil
}

// resendTimeout bounds one re-send attempt; a claim lasts a little longer,
// so a server that died while sending frees the delivery after it.
const resendTimeout = 60 * time.Second

// resendClaim is held in etcd while a server re-sends a failed delivery,
// and says afterwards whether one got through (a standby's log may not yet
// hold the notify.sent that says so).
type resendClaim struct {
	Until time.Time `json:"until"`
	Done  bool      `json:"done,omitempty"`
}

func resendKey(idx int64) string { return "notifications/resends/" + strconv.FormatInt(idx, 10) }

// claimResend takes the re-send of delivery idx for this server, or says
// ErrResent when one is under way (or got through) on any server.
func (n *Notifier) claimResend(ctx context.Context, idx int64) (int64, error) {
	var c resendClaim
	rev, err := n.cfg.KV.GetJSON(ctx, resendKey(idx), &c)
	switch {
	case err != nil && (n.cfg.IsNotFound == nil || !n.cfg.IsNotFound(err)):
		return 0, fmt.Errorf("notify: reading the re-send claim of %d: %w", idx, err)
	case err != nil:
		rev = 0 // none yet: create it
	case c.Done:
		return 0, fmt.Errorf("%w: delivery %d", ErrResent, idx)
	case n.cfg.Now().Before(c.Until):
		return 0, fmt.Errorf("%w: a re-send of delivery %d is under way", ErrResent, idx)
	}
	c = resendClaim{Until: n.cfg.Now().Add(resendTimeout + 30*time.Second)}
	rev, err = n.cfg.KV.PutJSON(ctx, resendKey(idx), c, rev)
	switch {
	case err != nil && n.cfg.IsConflict != nil && n.cfg.IsConflict(err):
		return 0, fmt.Errorf("%w: a re-send of delivery %d is under way", ErrResent, idx)
	case err != nil:
		return 0, fmt.Errorf("notify: claiming the re-send of %d: %w", idx, err)
	}
	return rev, nil
}

// releaseResend ends this server's claim: done when the message got
// through, else free for the next try.
func (n *Notifier) releaseResend(ctx context.Context, idx, rev int64, done bool) {
	c := resendClaim{Until: n.cfg.Now(), Done: done}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := n.cfg.KV.PutJSON(rctx, resendKey(idx), c, rev); err != nil {
		// The claim runs out by itself; a re-send that got through is in
		// the log, which every server reads before sending.
		n.log.Warn().Err(err).Int64("delivery", idx).Msg("notify: re-send claim not released")
	}
}

// send makes one attempt to deliver m to d.
func send(ctx context.Context, d destination, m Message) error {
	if d.isHook {
		return postWebhook(ctx, d.hook, m)
	}
	return sendMail(ctx, d.smtp, d.mail, m)
}

// destinationNamed is the destination a delivery log names, from set.
func destinationNamed(set Settings, name string) (destination, error) {
	if rcpts, ok := strings.CutPrefix(name, "mail:"); ok && rcpts != "" {
		if set.SMTP == nil {
			return destination{}, invalid("no SMTP relay is configured now")
		}
		return destination{name: name, mail: strings.Split(rcpts, ","), smtp: *set.SMTP}, nil
	}
	if hook, ok := strings.CutPrefix(name, "webhook:"); ok {
		for _, w := range set.Webhooks {
			if w.Name == hook {
				return destination{name: name, hook: w, isHook: true}, nil
			}
		}
		return destination{}, invalid("webhook %q is no longer configured", hook)
	}
	return destination{}, invalid("the message had nowhere to go (%s): give its rule recipients or webhooks", name)
}

// failedAt reads the failed delivery at idx.
func (n *Notifier) failedAt(ctx context.Context, idx int64) (eventlog.Stored, error) {
	if idx >= 0 {
		p, err := n.cfg.Events.Query(ctx, eventlog.Filter{Control: Control, Type: TypeFailed, Cursor: eventlog.CursorAfter(idx - 1), Limit: 1})
		if err != nil {
			return eventlog.Stored{}, fmt.Errorf("notify: reading delivery %d: %w", idx, err)
		}
		if len(p.Events) == 1 && p.Events[0].Index == idx && p.Events[0].Agent == event.ServerStream {
			return p.Events[0], nil
		}
	}
	return eventlog.Stored{}, fmt.Errorf("%w: no failed delivery at index %d", ErrNoAlert, idx)
}

// resent says whether a re-send of failed delivery a got through.
func (n *Notifier) resent(ctx context.Context, a eventlog.Stored) (bool, error) {
	f := eventlog.Filter{Control: Control, Type: TypeSent, From: a.Time, Limit: eventlog.MaxLimit}
	for {
		p, err := n.cfg.Events.Query(ctx, f)
		if err != nil {
			return false, fmt.Errorf("notify: reading re-sends: %w", err)
		}
		for _, e := range p.Events {
			if e.Agent == event.ServerStream && fmt.Sprint(e.Attrs["resend_of"]) == strconv.FormatInt(a.Index, 10) {
				return true, nil
			}
		}
		if p.Next == "" || len(p.Events) == 0 {
			return false, nil
		}
		f.Cursor = p.Next
	}
}

// errorsJA say in Japanese what a delivery error means, by a part of the
// Go error; the raw error stays beside it as the detail.
var errorsJA = []struct{ part, ja string }{
	{"connection refused", "接続できませんでした (connection refused)"},
	{"no such host", "宛先のホスト名が見つかりませんでした (no such host)"},
	{"connection reset", "接続が切断されました (connection reset)"},
	{"network is unreachable", "宛先のネットワークに到達できませんでした (network is unreachable)"},
	{"no route to host", "宛先のネットワークに到達できませんでした (no route to host)"},
	{"timeout", "時間内に応答がありませんでした (timeout)"},
	{"deadline exceeded", "時間内に応答がありませんでした (timeout)"},
	{"certificate", "サーバーの証明書を確認できませんでした (certificate)"},
	{"x509", "サーバーの証明書を確認できませんでした (certificate)"},
	{"authentication", "SMTP の認証に失敗しました (authentication)"},
	{"smtp auth failed", "SMTP の認証に失敗しました (ユーザー名かパスワードが違います)"},
	{"535 ", "SMTP の認証に失敗しました (535)"},
	{"nowhere to send", "送信先がありません (ルールに宛先も Webhook もありません)"},
	{"no smtp relay", "SMTP サーバーが設定されていません"},
}

// ErrorJA is a delivery error in Japanese (empty for none).
func ErrorJA(raw string) string {
	if raw == "" {
		return ""
	}
	if _, status, ok := strings.Cut(raw, " answered "); ok {
		return "受信側がエラーを返しました (" + status + ")"
	}
	low := strings.ToLower(raw)
	for _, e := range errorsJA {
		if strings.Contains(low, e.part) {
			return e.ja
		}
	}
	return "送信できませんでした"
}
