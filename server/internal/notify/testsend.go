package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/mamori/mamori/shared/event"
)

// PathTest is where an admin sends a test message through a channel
// (POST, {"mail": ["a@example.jp"]} or {"webhook": "teams"}).
const PathTest = "/api/v1/notifications/test"

// A test message's outcome. They are not deliveries of alerts: reports and
// the alert list leave them out, the delivery log shows them.
const (
	TypeTestSent   = "notify.test_sent"
	TypeTestFailed = "notify.test_failed"
)

// KindTest is the kind of a test message in the delivery log.
const KindTest = "test"

// maxTestRecipients bounds the addresses of one test mail: it checks a
// relay, it is not a way to mail the office.
const maxTestRecipients = 10

// TestRequest names one channel to try as it is stored now: mail to Mail
// through the SMTP relay, or the webhook named Webhook.
type TestRequest struct {
	Mail    []string `json:"mail,omitempty"`
	Webhook string   `json:"webhook,omitempty"`
}

// SendTest sends a short test message through the channel req names, as
// the settings now hold it, in one attempt, so the admin who asked learns
// at once whether the relay, its password or the webhook's URL work,
// rather than from the first real alert that does not arrive. The attempt
// is recorded (TypeTestSent or TypeTestFailed, with who asked and via).
// Bad input wraps ErrInvalid; a send that failed wraps ErrSendFailed.
func (n *Notifier) SendTest(ctx context.Context, user, via string, req TestRequest) error {
	set, _, err := n.Settings(ctx)
	if err != nil {
		return err
	}
	var d destination
	switch {
	case len(req.Mail) > 0 && req.Webhook != "":
		return invalid("name one channel: mail or webhook, not both")
	case req.Webhook != "":
		if d, err = destinationNamed(set, "webhook:"+req.Webhook); err != nil {
			return err
		}
	case len(req.Mail) > 0:
		if len(req.Mail) > maxTestRecipients {
			return invalid("mail: at most %d addresses for a test", maxTestRecipients)
		}
		if err := checkAddrs("mail", req.Mail); err != nil {
			return err
		}
		if d, err = destinationNamed(set, "mail:"+strings.Join(req.Mail, ",")); err != nil {
			return err
		}
	default:
		return invalid("name a channel: mail (addresses) or webhook (a name)")
	}
	now := n.cfg.Now()
	m := Message{Rule: "テスト送信", Kind: KindTest, Subject: "[Mamori] 通知のテスト送信", Count: 0, First: now, Last: now}
	var b strings.Builder
	fmt.Fprintf(&b, "Mamori の通知設定を確かめるためのテストメッセージです。アラートではありません。\n\n")
	fmt.Fprintf(&b, "送信した人: %s\n日時: %s\n送信先: %s\n\n", user, jst(now), d.name)
	b.WriteString("これが届いていれば、この送信先にはアラートの通知も届きます。\n")
	if n.cfg.DashboardURL != nil {
		if u := n.cfg.DashboardURL(); u != "" {
			fmt.Fprintf(&b, "\n通知の設定: %snotifications\n", u)
		}
	}
	m.Text = b.String()
	return n.sendRecorded(ctx, d, m, user, via, TypeTestSent, TypeTestFailed, event.Attrs{})
}

// ServeTest answers POST /api/v1/notifications/test: 200 when the test
// message got through, 502 when it did not (the error says why, and the
// attempt is recorded), 400 for a request that names no usable channel.
func (n *Notifier) ServeTest(w http.ResponseWriter, r *http.Request) {
	var req TestRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		msg := err.Error()
		if errors.Is(err, io.EOF) {
			msg = "empty body"
		}
		n.fail(w, r, http.StatusBadRequest, `body must be {"mail": ["a@example.jp"]} or {"webhook": "NAME"}: `+msg)
		return
	}
	err := n.SendTest(r.Context(), n.caller(r), "", req)
	switch {
	case errors.Is(err, ErrInvalid):
		n.fail(w, r, http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
		return
	case errors.Is(err, ErrSendFailed):
		n.reply(w, r, http.StatusBadGateway, map[string]string{"error": err.Error(), "error_ja": ErrorJA(err.Error())})
		return
	case err != nil:
		n.log.Error().Err(err).Msg("notify: test send")
		n.fail(w, r, http.StatusInternalServerError, "internal error: sending the test")
		return
	}
	n.reply(w, r, http.StatusOK, map[string]string{"state": "sent"})
}
