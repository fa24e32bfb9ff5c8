package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/notify/mailtest"
)

// TestSendTestReachesTheChannelAndIsRecorded: an admin's test message
// goes through the stored relay and webhook, says it is a test, and every
// attempt (a wrong relay password, an unknown webhook) is recorded or
// refused as the admin would need to know: bad requests change nothing.
func TestSendTestReachesTheChannelAndIsRecorded(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	ms := mailtest.Start(t, false, "mamori", "s3cret-pass")
	h := newHook(t, 0)
	set := Settings{
		SMTP: &SMTP{Host: "127.0.0.1", Port: ms.Addr.Port, Security: SecuritySTARTTLS, Username: "mamori", Password: "s3cret-pass",
			From: "mamori@example.jp", Charset: CharsetISO2022JP, CAPEM: ms.CAPEM},
		Webhooks: []Webhook{{Name: "teams", URL: h.srv.URL, Format: FormatTeams}},
	}
	if _, err := r.n.PutSettings(ctx, set, -1); err != nil {
		t.Fatal(err)
	}

	if err := r.n.SendTest(ctx, "kanri", "web", TestRequest{Mail: []string{"it@example.jp"}}); err != nil {
		t.Fatalf("mail test: %v", err)
	}
	select {
	case got := <-ms.Got:
		d := mailtest.Decode(t, got.Data)
		if d.Subject != "[Mamori] 通知のテスト送信" || !strings.Contains(d.Body, "アラートではありません") ||
			!strings.Contains(d.Body, "送信した人: kanri") || !strings.Contains(d.Body, "https://mamori.example.jp:8443/notifications") {
			t.Errorf("test mail subject %q body:\n%s", d.Subject, d.Body)
		}
		if len(got.To) != 1 || got.To[0] != "it@example.jp" || got.Auth != "mamori" {
			t.Errorf("test mail to %v auth %q", got.To, got.Auth)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no test mail")
	}
	if err := r.n.SendTest(ctx, "kanri", "", TestRequest{Webhook: "teams"}); err != nil {
		t.Fatalf("webhook test: %v", err)
	}
	if b := h.got(); len(b) != 1 || !bytes.Contains(b[0], []byte("通知のテスト送信")) || !bytes.Contains(b[0], []byte("AdaptiveCard")) {
		t.Errorf("webhook got %q", b)
	}

	// A relay password gone wrong: the admin hears why, and it is recorded.
	set.SMTP.Password = "changed-by-someone"
	if _, err := r.n.PutSettings(ctx, set, -1); err != nil {
		t.Fatal(err)
	}
	err := r.n.SendTest(ctx, "kanri", "web", TestRequest{Mail: []string{"it@example.jp"}})
	if !errors.Is(err, ErrSendFailed) || !strings.Contains(ErrorJA(err.Error()), "認証に失敗") {
		t.Fatalf("test with a wrong password: %v (%s)", err, ErrorJA(errString(err)))
	}

	before := len(deliveryLog(t, r.store))
	for _, bad := range []TestRequest{
		{},
		{Mail: []string{"not an address"}},
		{Mail: []string{"a@example.jp"}, Webhook: "teams"},
		{Webhook: "slack"},
		{Mail: strings.Split(strings.Repeat("a@example.jp,", 11), ",")[:11]},
	} {
		if err := r.n.SendTest(ctx, "kanri", "", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SendTest(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	if after := len(deliveryLog(t, r.store)); after != before {
		t.Errorf("refused tests recorded %d events", after-before)
	}

	// The log has the three attempts, as tests, with who asked.
	log, err := r.n.Log(ctx, time.Now().Add(-time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, d := range log {
		outcomes = append(outcomes, d.Outcome+" "+d.Kind+" "+d.Destination+" "+d.By)
	}
	want := []string{"test_failed test mail:it@example.jp kanri", "test_sent test webhook:teams kanri", "test_sent test mail:it@example.jp kanri"}
	if strings.Join(outcomes, "|") != strings.Join(want, "|") {
		t.Errorf("delivery log:\n%s\nwant\n%s", strings.Join(outcomes, "\n"), strings.Join(want, "\n"))
	}
	// Tests are not alerts.
	rows, err := r.n.Alerts(ctx, time.Now().Add(-time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 0 {
		t.Errorf("tests listed as alerts: %+v", rows)
	}
}

// TestServeTestAnswers: the API's answers for a test that got through, one
// that did not, and bodies that name no channel.
func TestServeTestAnswers(t *testing.T) {
	r := newRig(t, nil)
	h := newHook(t, 1) // the first call answers 503
	if _, err := r.n.PutSettings(context.Background(), Settings{Webhooks: []Webhook{{Name: "soc", URL: h.srv.URL, Format: FormatGeneric}}}, -1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body   string
		status int
		has    string
	}{
		{`{"webhook": "soc"}`, http.StatusBadGateway, "受信側がエラーを返しました"},
		{`{"webhook": "soc"}`, http.StatusOK, `"sent"`},
		{``, http.StatusBadRequest, "empty body"},
		{`{"webhook": "soc", "extra": 1}`, http.StatusBadRequest, "unknown field"},
		{`{"webhook": "nope"}`, http.StatusBadRequest, `webhook \"nope\" is no longer configured`},
		{`{"mail": ["a@example.jp"]}`, http.StatusBadRequest, "no SMTP relay"},
	} {
		w := httptest.NewRecorder()
		r.n.ServeTest(w, httptest.NewRequest(http.MethodPost, PathTest, strings.NewReader(tc.body)))
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.has) {
			t.Errorf("%s: %d %s, want %d with %q", tc.body, w.Code, w.Body, tc.status, tc.has)
		}
		if w.Code != http.StatusOK {
			var e map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e["error"] == "" {
				t.Errorf("%s: error body %s", tc.body, w.Body)
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
