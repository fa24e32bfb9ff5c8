package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/notify/mailtest"
)

// An admin checks the relay and a webhook from 通知 before the first real
// alert depends on them: テスト送信 sends one message through the stored
// settings, a failure is said beside the channel in Japanese with the
// addresses kept, bad addresses change nothing, managers cannot send, and
// every attempt is in the delivery log with who asked.
func TestTestSendFromTheNotificationsPage(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "manabu", "manager")
	ms := mailtest.Start(t, false, "mamori", "relay-pass-1")
	var up atomic.Bool
	var mu sync.Mutex
	var got []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	}))
	defer recv.Close()
	set := map[string]any{
		"smtp": map[string]any{"host": "127.0.0.1", "port": ms.Addr.Port, "security": "starttls", "username": "mamori",
			"password": "relay-pass-1", "from": "mamori@example.jp", "ca_pem": ms.CAPEM},
		"webhooks": []map[string]string{{"name": "soc", "url": recv.URL, "format": "slack"}},
	}
	if st := apiDo(t, srv, "PUT", "/api/v1/notifications", set, nil); st != 200 {
		t.Fatalf("PUT settings: %d", st)
	}

	admin := newBrowser(t, srv)
	tok := admin.login("admin", srv.AdminPassword())
	pg := admin.get("/notifications")
	for _, want := range []string{`id="test-mail"`, `id="test-hook-soc"`, "テスト送信の宛先"} {
		if !strings.Contains(pg.body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}

	a := admin.post("/notifications/test", url.Values{"csrf": {tok}, "mail": {"kanri@example.jp, it@example.jp"}})
	if a.status != http.StatusSeeOther {
		t.Fatalf("mail test: %d\n%.2000s", a.status, a.body)
	}
	select {
	case m := <-ms.Got:
		if len(m.To) != 2 || !strings.Contains(mailtest.Decode(t, m.Data).Body, "アラートではありません") {
			t.Errorf("test mail to %v", m.To)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no test mail")
	}
	if pg := admin.get("/notifications?ok=tested"); !strings.Contains(pg.body, "テストメッセージを送信しました") || !strings.Contains(pg.body, "通知のテスト送信") {
		t.Error("no flash or no delivery log row after the test")
	}

	// The webhook is down: said beside it, recorded, nothing delivered.
	a = admin.post("/notifications/test", url.Values{"csrf": {tok}, "webhook": {"soc"}})
	if a.status != http.StatusBadGateway || !strings.Contains(a.body, "テストメッセージを送れませんでした: 受信側がエラーを返しました (503") {
		t.Errorf("webhook down: %d\n%.3000s", a.status, a.body)
	}
	up.Store(true)
	if a := admin.post("/notifications/test", url.Values{"csrf": {tok}, "webhook": {"soc"}}); a.status != http.StatusSeeOther {
		t.Errorf("webhook test: %d", a.status)
	}
	mu.Lock()
	if len(got) != 1 || !strings.Contains(got[0], "通知のテスト送信") {
		t.Errorf("webhook got %q", got)
	}
	mu.Unlock()

	before := len(serverEvents(t, srv, "notify.test_sent")) + len(serverEvents(t, srv, "notify.test_failed"))
	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"mail": {"kanri@"}}, "メールアドレスの形が正しくありません"},
		{url.Values{"mail": {""}}, "宛先 (メールアドレス) を入力してください"},
		{url.Values{"webhook": {"teams"}}, "その Webhook は今の設定にありません"},
	} {
		tc.form.Set("csrf", tok)
		a := admin.post("/notifications/test", tc.form)
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, tc.want) {
			t.Errorf("%v: %d, want 400 with %q", tc.form, a.status, tc.want)
		}
		if v := tc.form.Get("mail"); v != "" && !strings.Contains(a.body, `value="`+v+`"`) {
			t.Errorf("%v: the addresses typed are not kept", tc.form)
		}
	}
	mgr := newBrowser(t, srv)
	mtok := mgr.login("manabu", testPassword)
	if a := mgr.post("/notifications/test", url.Values{"csrf": {mtok}, "webhook": {"soc"}}); a.status != http.StatusForbidden {
		t.Errorf("manager test send: %d", a.status)
	}
	if after := len(serverEvents(t, srv, "notify.test_sent")) + len(serverEvents(t, srv, "notify.test_failed")); after != before {
		t.Errorf("refused tests recorded %d events", after-before)
	}

	sent, failed := serverEvents(t, srv, "notify.test_sent"), serverEvents(t, srv, "notify.test_failed")
	if len(sent) != 2 || len(failed) != 1 || sent[0].User != "admin" || toString(sent[0].Attrs["via"]) != "web" ||
		toString(failed[0].Attrs["destination"]) != "webhook:soc" {
		t.Errorf("recorded tests: sent %+v failed %+v", sent, failed)
	}
	// The API does the same.
	if st := apiDo(t, srv, "POST", "/api/v1/notifications/test", map[string]string{"webhook": "soc"}, nil); st != http.StatusOK {
		t.Errorf("API test: %d", st)
	}
	if st := apiDo(t, srv, "POST", "/api/v1/notifications/test", map[string]string{"webhook": "none"}, nil); st != http.StatusBadRequest {
		t.Errorf("API test of no webhook: %d", st)
	}
}
