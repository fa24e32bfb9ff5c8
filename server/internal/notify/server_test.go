package notify_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/notify"
	"github.com/mamori/mamori/server/internal/notify/mailtest"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

func tlsClient(caPEM []byte, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// agent enrolls as mamori-agent does and ships sealed batches over mTLS.
type agent struct {
	id   string
	c    *http.Client
	base string
	seq  uint64
	prev string
}

func enroll(t *testing.T, srv *app.Server, host, dept string) *agent {
	t.Helper()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(host)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(wire.EnrollRequest{Token: srv.EnrollToken(), CSR: string(csrPEM), Hostname: host,
		OS: "windows", Arch: "amd64", Department: dept})
	resp, err := tlsClient(srv.CAPEM(), nil).Post(srv.URL()+wire.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var er wire.EnrollResponse
	if resp.StatusCode != 200 || json.Unmarshal(b, &er) != nil {
		t.Fatalf("enroll: %d %s", resp.StatusCode, b)
	}
	cert, err := tls.X509KeyPair([]byte(er.Certificate), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &agent{id: er.AgentID, base: srv.URL(), c: tlsClient(srv.CAPEM(), &cert)}
}

func (a *agent) send(t *testing.T, evs ...event.Event) {
	t.Helper()
	for i := range evs {
		a.seq++
		evs[i].Agent, evs[i].Seq = a.id, a.seq
		if err := evs[i].Seal(a.prev); err != nil {
			t.Fatal(err)
		}
		a.prev = evs[i].Hash
	}
	body, _ := json.Marshal(wire.Batch{Events: evs})
	resp, err := a.c.Post(a.base+wire.PathEvents, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 {
		t.Fatalf("batch: %d %s", resp.StatusCode, b)
	}
}

func call(t *testing.T, srv *app.Server, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, srv.URL()+path, rd)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	resp, err := tlsClient(srv.CAPEM(), nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v %s", path, err, b)
		}
	}
	if resp.StatusCode >= 400 {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// A screen-lock violation on 30 real enrolled agents, sent over mTLS,
// becomes one alert per PC in the compliance tracker and reaches a real
// SMTP server and a webhook as one grouped message each, after the delay.
func TestViolationOverRealIngestReachesMailAndWebhook(t *testing.T) {
	srv, err := app.Start(context.Background(), app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1"}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ms := mailtest.Start(t, false, "mamori", "relay-password-1")
	var mu sync.Mutex
	var posts [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, b)
		mu.Unlock()
	}))
	defer hook.Close()

	delay := 3 * time.Second
	set := notify.Settings{
		SMTP: &notify.SMTP{Host: "127.0.0.1", Port: ms.Addr.Port, Security: notify.SecuritySTARTTLS, Username: "mamori",
			Password: "relay-password-1", From: "mamori@example.jp", CAPEM: ms.CAPEM},
		Webhooks: []notify.Webhook{{Name: "chat", URL: hook.URL, Format: notify.FormatGeneric}},
		Rules: []notify.Rule{{Name: "営業部の違反", Kind: notify.KindViolation, Departments: []string{"営業部"},
			DepartmentRecipients: true, Webhooks: []string{"chat"}, Delay: notify.Duration(delay)}},
		Departments: map[string]notify.Department{"営業部": {Recipients: []string{"eigyo-kanri@example.jp"}}},
	}
	if st := call(t, srv, "PUT", notify.PathSettings, set, nil); st != 200 {
		t.Fatalf("PUT settings: %d", st)
	}
	var got notify.Settings
	if st := call(t, srv, "GET", notify.PathSettings, nil, &got); st != 200 || got.SMTP.Password != "" || !got.SMTP.PasswordSet {
		t.Fatalf("GET settings: %d, password answered or not set: %+v", st, got.SMTP)
	}
	// Bad input: 400 and nothing changes.
	if st := call(t, srv, "PUT", notify.PathSettings, map[string]any{"rules": []map[string]any{{"name": "x", "kind": "nope"}}}, nil); st != 400 {
		t.Errorf("bad settings: %d", st)
	}

	agents := make([]*agent, 30)
	for i := range agents {
		agents[i] = enroll(t, srv, fmt.Sprintf("eigyo-pc%02d", i), "営業部")
	}
	other := enroll(t, srv, "somu-pc", "総務部") // another department: not in this rule
	time.Sleep(1500 * time.Millisecond)       // the notifier is past the enrollments
	start := time.Now()
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	fail := func() event.Event {
		return event.Event{Time: time.Now().UTC(), Control: "screenlock", Type: "screenlock.status", Severity: event.Violation,
			Attrs: event.Attrs{"status": "fail", "since": since, "reason": "screenlock.timeout_too_long",
				"reason_ja": "画面ロックまでの時間が長すぎます", "reason_en": "screen lock timeout too long"}}
	}
	for _, a := range append(agents, other) {
		a.send(t, fail())
	}
	var m mailtest.Received
	select {
	case m = <-ms.Got:
	case <-time.After(delay + 60*time.Second): // generous: -race on a busy machine
		t.Fatal("no mail")
	}
	// The delay runs from the first alert the tracker raised (its commit
	// time in the log), not from the agents' batches.
	var alerts struct {
		Events []struct {
			Received time.Time `json:"received"`
		}
	}
	if st := call(t, srv, "GET", "/api/v1/events?type=compliance.alert", nil, &alerts); st != 200 || len(alerts.Events) != 31 {
		t.Fatalf("alerts: %d, %d events", st, len(alerts.Events))
	}
	took := m.At.Sub(alerts.Events[0].Received)
	t.Logf("mail %v after the first alert, %v after the batches", took, m.At.Sub(start))
	d := mailtest.Decode(t, m.Data)
	if len(m.To) != 1 || m.To[0] != "eigyo-kanri@example.jp" || !strings.HasPrefix(d.Subject, "[Mamori] 管理策違反 30 件 (30 台)") {
		t.Errorf("to %v subject %q", m.To, d.Subject)
	}
	if took < delay-200*time.Millisecond || took > delay+5*time.Second {
		// 5 s of slack covers a poll, the TLS handshake and -race.
		t.Errorf("mail after %v; delay %v", took, delay)
	}
	// From the violations themselves: the tracker raises the alerts of
	// PCs enrolled a moment ago at once (it used to wait up to 45 s for its
	// inventory cache to expire), so the mail comes about the delay after.
	if after := m.At.Sub(start); after > delay+10*time.Second {
		t.Errorf("mail %v after the violations were sent; delay %v", after, delay)
	}
	if strings.Contains(d.Body, "somu-pc") || !strings.Contains(d.Body, "eigyo-pc29 (営業部)") {
		t.Errorf("body:\n%s", d.Body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(posts)
		mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(delay) // grouped: nothing else comes
	mu.Lock()
	if len(posts) != 1 || len(ms.Got) != 0 {
		t.Fatalf("%d posts, %d more mails; want one of each", len(posts), len(ms.Got))
	}
	var wm notify.Message
	if err := json.Unmarshal(posts[0], &wm); err != nil || wm.Count != 30 {
		t.Errorf("webhook: %v count %d", err, wm.Count)
	}
	mu.Unlock()

	var log struct{ Deliveries []notify.Delivery }
	if st := call(t, srv, "GET", notify.PathLog, nil, &log); st != 200 || len(log.Deliveries) != 2 {
		t.Fatalf("log: %d %+v", st, log.Deliveries)
	}
	for _, dl := range log.Deliveries {
		if dl.Outcome != "sent" || dl.Count != 30 {
			t.Errorf("delivery %+v", dl)
		}
	}

	// Acknowledge one alert with a comment: the change is an event.
	idx := wm.Items[0].Index
	if st := call(t, srv, "POST", fmt.Sprintf("/api/v1/alerts/%d/acknowledge", idx), map[string]string{"comment": "担当者が確認中"}, nil); st != 200 {
		t.Fatalf("acknowledge: %d", st)
	}
	if st := call(t, srv, "POST", fmt.Sprintf("/api/v1/alerts/%d/resolve", idx), map[string]string{"comment": ""}, nil); st != 400 {
		t.Errorf("resolve without comment: %d", st)
	}
	if st := call(t, srv, "POST", "/api/v1/alerts/999999/resolve", map[string]string{"comment": "x"}, nil); st != 404 {
		t.Errorf("resolve of no alert: %d", st)
	}
	var page struct{ Events []event.Event }
	if st := call(t, srv, "GET", "/api/v1/events?type=alert.acknowledged", nil, &page); st != 200 || len(page.Events) != 1 ||
		page.Events[0].Attrs["comment"] != "担当者が確認中" || page.Events[0].User != "admin" {
		t.Errorf("ack event: %d %+v", st, page.Events)
	}
	// The form's limit is 2,000 characters: 700 kanji (2,100 bytes) fit;
	// 2,001 characters are refused saying so.
	var ans map[string]any
	if st := call(t, srv, "POST", fmt.Sprintf("/api/v1/alerts/%d/acknowledge", idx), map[string]string{"comment": strings.Repeat("確", 700)}, &ans); st != 200 {
		t.Errorf("700-character comment: %d %v", st, ans)
	}
	ans = nil
	if st := call(t, srv, "POST", fmt.Sprintf("/api/v1/alerts/%d/acknowledge", idx), map[string]string{"comment": strings.Repeat("a", 2001)}, &ans); st != 400 {
		t.Errorf("2,001-character comment: %d %v", st, ans)
	}
	// Resolved is the end: a stale tab's acknowledge must not set it back.
	if st := call(t, srv, "POST", fmt.Sprintf("/api/v1/alerts/%d/resolve", idx), map[string]string{"comment": "BitLocker有効化を確認"}, nil); st != 200 {
		t.Fatalf("resolve: %d", st)
	}
	ans = nil
	if st := call(t, srv, "POST", fmt.Sprintf("/api/v1/alerts/%d/acknowledge", idx), map[string]string{"comment": "再確認"}, &ans); st != 409 {
		t.Errorf("acknowledge after resolve: %d %v", st, ans)
	}
	if st := call(t, srv, "GET", "/api/v1/events?type=alert.acknowledged", nil, &page); st != 200 || len(page.Events) != 2 {
		t.Errorf("acknowledgements recorded: %d, want 2", len(page.Events))
	}
}
