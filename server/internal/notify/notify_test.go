package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/notify/alertkind"
	"github.com/mamori/mamori/server/internal/notify/mailtest"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// rig is a notifier over a real SQLite event store and a real embedded etcd.
type rig struct {
	store *eventlog.SQLite
	st    *state.State
	n     *Notifier
	stop  func()
}

func newRig(t *testing.T, agents map[string]AgentInfo) *rig {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := eventlog.OpenSQLite(ctx, filepath.Join(dir, "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	st, err := state.Open(ctx, state.Config{DataDir: dir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	n, err := New(Config{Events: store, KV: st, Poll: 50 * time.Millisecond, Log: zerolog.Nop(), DashboardURL: func() string { return "https://mamori.example.jp:8443/" },
		IsNotFound: func(err error) bool { return errors.Is(err, state.ErrNotFound) },
		IsConflict: func(err error) bool { return errors.Is(err, state.ErrConflict) },
		Agents:     func(context.Context) (map[string]AgentInfo, error) { return agents, nil }})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{store: store, st: st, n: n}
}

// run starts the notifier and returns once it has placed its cursors
// (events appended before that would be history to it, never news).
func (r *rig) run(t *testing.T) {
	r.n.mu.Lock()
	r.n.cursors = nil // Run loads them again; wait for that load
	r.n.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.n.Run(ctx); close(done) }()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(func() { r.stop() })
	waitFor(t, 30*time.Second, "the notifier's start position", func() bool {
		r.n.mu.Lock()
		defer r.n.mu.Unlock()
		return r.n.cursors != nil
	})
}

// alert appends a compliance alert the way compliance.Tracker raises one.
func (r *rig) alert(t *testing.T, agent, host, dept, control, reason, reasonJA string) {
	t.Helper()
	_, err := r.store.AppendServer(context.Background(), event.Event{Control: "compliance", Type: "compliance.alert",
		Severity: event.Violation, Object: agent, Attrs: event.Attrs{"key": "violation|" + agent + "|" + control, "kind": "violation",
			"agent": agent, "hostname": host, "department": dept, "control": control, "reason": reason, "reason_ja": reasonJA}})
	if err != nil {
		t.Fatal(err)
	}
}

// hook is an httptest webhook receiver that fails its first failFirst posts.
type hook struct {
	srv       *httptest.Server
	failFirst int32
	calls     atomic.Int32
	mu        sync.Mutex
	bodies    [][]byte
	at        []time.Time
}

func newHook(t *testing.T, failFirst int32) *hook {
	h := &hook{failFirst: failFirst}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := h.calls.Add(1)
		if n <= h.failFirst {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, b)
		h.at = append(h.at, time.Now())
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) got() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...)
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deliveryLog reads the notify events of the server stream.
func deliveryLog(t *testing.T, store *eventlog.SQLite) []eventlog.Stored {
	t.Helper()
	p, err := store.Query(context.Background(), eventlog.Filter{Agent: event.ServerStream, Control: Control, Limit: eventlog.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return p.Events
}

func TestViolationsReachMailAndWebhookGrouped(t *testing.T) {
	agents := map[string]AgentInfo{}
	for i := range 30 {
		agents[fmt.Sprintf("a%02d", i)] = AgentInfo{Hostname: fmt.Sprintf("PC-%02d", i), Department: "営業部"}
	}
	r := newRig(t, agents)
	ms := mailtest.Start(t, false, "mamori", "s3cret-pass")
	h := newHook(t, 0)
	delay := 1500 * time.Millisecond
	set := Settings{
		SMTP: &SMTP{Host: "127.0.0.1", Port: ms.Addr.Port, Security: SecuritySTARTTLS, Username: "mamori", Password: "s3cret-pass",
			From: "mamori@example.jp", Charset: CharsetISO2022JP, CAPEM: ms.CAPEM},
		Webhooks: []Webhook{{Name: "soc", URL: h.srv.URL, Format: FormatGeneric}},
		Rules:    []Rule{{Name: "違反", Kind: KindViolation, Recipients: []string{"kanri@example.jp"}, Webhooks: []string{"soc"}, Delay: Duration(delay)}},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	start := time.Now()
	for i := range 30 {
		id := fmt.Sprintf("a%02d", i)
		r.alert(t, id, agents[id].Hostname, "営業部", "screenlock", "screenlock.timeout_too_long", "画面ロックまでの時間が長すぎます")
	}
	var m mailtest.Received
	select {
	case m = <-ms.Got:
	case <-time.After(delay + 5*time.Second):
		t.Fatal("no mail within the delay")
	}
	waitFor(t, 5*time.Second, "webhook", func() bool { return len(h.got()) == 1 })
	if took := m.At.Sub(start); took < delay-100*time.Millisecond || took > delay+3*time.Second {
		t.Errorf("mail after %v, want about the %v delay", took, delay)
	}
	if m.Auth != "mamori" || len(m.To) != 1 || m.To[0] != "kanri@example.jp" {
		t.Errorf("mail auth %q to %v", m.Auth, m.To)
	}
	d := mailtest.Decode(t, m.Data)
	if d.Charset != "iso-2022-jp" || d.Subject != "[Mamori] 管理策違反 30 件 (30 台)" {
		t.Errorf("charset %q subject %q", d.Charset, d.Subject)
	}
	if !strings.Contains(d.Body, "画面ロックまでの時間が長すぎます") || !strings.Contains(d.Body, "PC-29 (営業部)") {
		t.Errorf("body:\n%s", d.Body)
	}
	// Counted in the units they are, in the words of the UI, with where to look.
	for _, want := range []string{"件数: 30 件 (端末 30 台)", "- 画面ロック 画面ロックまでの時間が長すぎます: 30 件\n",
		"PC-29 (営業部) 画面ロック 画面ロックまでの時間が長すぎます", "「通知」で確認してください: https://mamori.example.jp:8443/notifications"} {
		if !strings.Contains(d.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, d.Body)
		}
	}
	if strings.Contains(d.Body, "compliance.alert") || strings.Contains(d.Body, "screenlock") {
		t.Errorf("body shows codes where the UI shows words:\n%s", d.Body)
	}
	var g Message
	if err := json.Unmarshal(h.got()[0], &g); err != nil {
		t.Fatal(err)
	}
	if g.Count != 30 || len(g.Items) != 30 || g.Rule != "違反" || g.Kind != KindViolation {
		t.Errorf("webhook message: count %d items %d rule %q", g.Count, len(g.Items), g.Rule)
	}
	// Grouped: nothing more comes.
	time.Sleep(delay)
	if len(ms.Got) != 0 || len(h.got()) != 1 {
		t.Errorf("more than one message: %d mails, %d posts", 1+len(ms.Got), len(h.got()))
	}
	waitFor(t, 5*time.Second, "delivery log", func() bool { return len(deliveryLog(t, r.store)) == 2 })
	for _, e := range deliveryLog(t, r.store) {
		if e.Type != TypeSent || e.Attrs["rule"] != "違反" {
			t.Errorf("log event %s %v", e.Type, e.Attrs)
		}
		if strings.Contains(fmt.Sprint(e.Attrs), h.srv.URL) {
			t.Error("the webhook URL is in the log")
		}
	}
}

func TestMailEncodingsAndTLSModes(t *testing.T) {
	m := Message{Rule: "r", Kind: KindMedia, Subject: "[Mamori] 未登録・未承認の媒体 1 件 営業部の長い件名を折り返します",
		Text: "Mamori からの通知です。\nE:\\顧客\\見積.xlsx を書き込みました。\n", Count: 1}
	for _, tc := range []struct {
		name, charset, security, rawSubject string
	}{
		{"iso-2022-jp over starttls", CharsetISO2022JP, SecuritySTARTTLS, "=?ISO-2022-JP?B?"},
		{"utf-8 over implicit tls", CharsetUTF8, SecurityTLS, "=?UTF-8?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := mailtest.Start(t, tc.security == SecurityTLS, "u", "p@ss-word-1")
			cfg := SMTP{Host: "127.0.0.1", Port: ms.Addr.Port, Security: tc.security, Username: "u", Password: "p@ss-word-1",
				From: "mamori@example.jp", Charset: tc.charset, CAPEM: ms.CAPEM}
			if err := sendMail(context.Background(), cfg, []string{"a@example.jp", "b@example.jp"}, m); err != nil {
				t.Fatal(err)
			}
			got := <-ms.Got
			if !strings.Contains(strings.ToUpper(string(got.Data)), strings.ToUpper(tc.rawSubject)) {
				t.Errorf("raw subject not %s:\n%s", tc.rawSubject, got.Data)
			}
			for _, line := range strings.Split(string(got.Data), "\r\n") {
				if len(line) > 998 {
					t.Errorf("line of %d bytes", len(line))
				}
			}
			d := mailtest.Decode(t, got.Data)
			if d.Subject != m.Subject || d.Body != m.Text || d.Charset != tc.charset || len(got.To) != 2 {
				t.Errorf("got charset %q subject %q body %q to %v", d.Charset, d.Subject, d.Body, got.To)
			}
			// A wrong password is a failed delivery, not a silent one.
			cfg.Password = "wrong-password"
			if err := sendMail(context.Background(), cfg, []string{"a@example.jp"}, m); err == nil {
				t.Error("wrong password accepted")
			}
			// A relay whose certificate we do not trust is refused.
			cfg.Password, cfg.CAPEM = "p@ss-word-1", ""
			if err := sendMail(context.Background(), cfg, []string{"a@example.jp"}, m); err == nil {
				t.Error("untrusted relay certificate accepted")
			}
		})
	}
}

func TestWebhookFailingThreeTimesGetsItOnTheFourth(t *testing.T) {
	r := newRig(t, map[string]AgentInfo{})
	h := newHook(t, 3)
	set := Settings{
		Webhooks: []Webhook{{Name: "teams", URL: h.srv.URL, Format: FormatTeams}},
		Rules:    []Rule{{Name: "media", Kind: KindMedia, Webhooks: []string{"teams"}, Delay: Duration(100 * time.Millisecond)}},
		Retry:    Retry{Attempts: 5, Initial: Duration(100 * time.Millisecond), Max: Duration(time.Second)},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	seal(t, r.store, "pc1", event.Event{Control: "media", Type: "media.blocked", Severity: event.Violation,
		Object: "usb:0781:5581:4C53000", Attrs: event.Attrs{"reason": "unregistered"}})
	waitFor(t, 10*time.Second, "delivery on the 4th try", func() bool { return len(h.got()) == 1 })
	if c := h.calls.Load(); c != 4 {
		t.Errorf("%d calls, want 4", c)
	}
	var card struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string `json:"contentType"`
			Content     struct {
				Type string `json:"type"`
				Body []struct {
					Text string `json:"text"`
				} `json:"body"`
			} `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(h.got()[0], &card); err != nil || len(card.Attachments) != 1 ||
		card.Attachments[0].Content.Type != "AdaptiveCard" || card.Attachments[0].Content.Body[0].Text != "[Mamori] 未登録・未承認の媒体 1 件" {
		t.Errorf("teams card %s (%v)", h.got()[0], err)
	}
	waitFor(t, 5*time.Second, "log", func() bool { return len(deliveryLog(t, r.store)) == 4 })
	log := deliveryLog(t, r.store)
	for i, e := range log {
		want := TypeAttemptFailed
		if i == 3 {
			want = TypeSent
		}
		if e.Type != want || fmt.Sprint(e.Attrs["attempt"]) != fmt.Sprint(i+1) {
			t.Errorf("log[%d] = %s attempt %v", i, e.Type, e.Attrs["attempt"])
		}
	}
}

// TestWebhookURLNeverInLogOrEvents: a Teams or Slack webhook URL is a
// credential; a failed delivery names the webhook, never its URL, in the
// hash-chained events (kept for years) and the server's log.
func TestWebhookURLNeverInLogOrEvents(t *testing.T) {
	r := newRig(t, map[string]AgentInfo{})
	var logBuf safeBuffer
	r.n.log = zerolog.New(&logBuf)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens: the POST fails with the URL in Go's error
	set := Settings{
		Webhooks: []Webhook{{Name: "teams-soumu", URL: "http://" + closed + "/webhookb2/SECRETPATH/IncomingWebhook/x?sig=SECRETSIG", Format: FormatTeams}},
		Rules:    []Rule{{Name: "media", Kind: KindMedia, Webhooks: []string{"teams-soumu"}, Delay: Duration(50 * time.Millisecond)}},
		Retry:    Retry{Attempts: 1, Initial: Duration(50 * time.Millisecond), Max: Duration(100 * time.Millisecond)},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	seal(t, r.store, "pc1", event.Event{Control: "media", Type: "media.blocked", Severity: event.Violation,
		Object: "usb:0781:5581:4C53000", Attrs: event.Attrs{"reason": "unregistered"}})
	waitFor(t, 10*time.Second, "the failed delivery", func() bool {
		for _, e := range deliveryLog(t, r.store) {
			if e.Type == TypeFailed {
				return true
			}
		}
		return false
	})
	for _, e := range deliveryLog(t, r.store) {
		b, _ := json.Marshal(e.Attrs)
		if strings.Contains(string(b), "SECRET") {
			t.Errorf("%s event carries the webhook URL: %s", e.Type, b)
		}
		if e.Type == TypeFailed && !strings.Contains(string(b), "teams-soumu") {
			t.Errorf("%s event does not name the webhook: %s", e.Type, b)
		}
	}
	if strings.Contains(logBuf.String(), "SECRET") {
		t.Errorf("server log carries the webhook URL:\n%s", logBuf.String())
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// seal appends one agent event through the real chain checks.
func seal(t *testing.T, store *eventlog.SQLite, agent string, e event.Event) {
	t.Helper()
	h, err := store.Head(context.Background(), agent)
	if err != nil {
		t.Fatal(err)
	}
	e.Agent, e.Seq = agent, h.Seq+1
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if err := e.Seal(h.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(context.Background(), agent, []event.Event{e}); err != nil {
		t.Fatal(err)
	}
}

func TestFloodOfViolationsIsBounded(t *testing.T) {
	r := newRig(t, map[string]AgentInfo{})
	h := newHook(t, 0)
	slack := newHook(t, 0)
	set := Settings{
		Webhooks:  []Webhook{{Name: "g", URL: h.srv.URL, Format: FormatGeneric}, {Name: "s", URL: slack.srv.URL, Format: FormatSlack}},
		Rules:     []Rule{{Name: "flood", Kind: KindViolation, Webhooks: []string{"g", "s"}, Delay: Duration(200 * time.Millisecond)}},
		RateLimit: 12,
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	controls := []string{"screenlock", "media", "fileaccess", "backup", "posture"}
	for i := range 1000 {
		r.alert(t, fmt.Sprintf("a%03d", i%200), fmt.Sprintf("PC-%03d", i%200), "総務部", controls[i%5], controls[i%5]+".fail", "違反")
		if i%100 == 99 {
			time.Sleep(150 * time.Millisecond) // spread over several grouping windows
		}
	}
	time.Sleep(1500 * time.Millisecond)
	msgs := h.got()
	// Burst of 3, then one per 5 minutes: in these few seconds at most 3.
	if len(msgs) == 0 || len(msgs) > 3 {
		t.Fatalf("%d messages for 1000 violations, want 1..3", len(msgs))
	}
	delivered := 0
	for _, b := range msgs {
		var m Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if len(m.Items) > maxItems {
			t.Errorf("%d items in one message", len(m.Items))
		}
		delivered += m.Count
	}
	if len(slack.got()) != len(msgs) {
		t.Errorf("slack got %d, generic %d", len(slack.got()), len(msgs))
	}
	var sm struct{ Text string }
	if err := json.Unmarshal(slack.got()[0], &sm); err != nil || !strings.HasPrefix(sm.Text, "*[Mamori] 管理策違反") {
		t.Errorf("slack body %s", slack.got()[0])
	}
	// Nothing is lost: what was not sent waits, merged, for the limiter.
	r.n.mu.Lock()
	held := 0
	for _, g := range r.n.groups {
		held += g.count
	}
	// Each PC's control alerted 5 times within the hour: the 4 repeats are
	// held back (RepeatAfter) and counted, never sent alone.
	repeats := 0
	for _, q := range r.n.repeats {
		repeats += q.held
	}
	r.n.mu.Unlock()
	if delivered+held != 200 || repeats != 800 {
		t.Errorf("delivered %d + held %d != 200 PCs' controls, repeats %d != 800", delivered, held, repeats)
	}
}

func TestBadSettingsChangeNothing(t *testing.T) {
	r := newRig(t, nil)
	good := Settings{Webhooks: []Webhook{{Name: "g", URL: "https://chat.example.jp/hook", Format: FormatSlack}},
		Rules: []Rule{{Name: "r", Kind: KindSilent, Webhooks: []string{"g"}}}}
	if _, err := r.n.PutSettings(context.Background(), good, -1); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"unknown field":              `{"rules":[],"colour":"red"}`,
		"unknown kind":               `{"webhooks":[{"name":"g","url":"https://x.example/h","format":"slack"}],"rules":[{"name":"r","kind":"weather","webhooks":["g"]}]}`,
		"no such webhook":            `{"rules":[{"name":"r","kind":"silent","webhooks":["nope"]}]}`,
		"bad address":                `{"smtp":{"host":"mail","port":587,"security":"starttls","from":"m@example.jp"},"rules":[{"name":"r","kind":"silent","recipients":["not an address"]}]}`,
		"mail without smtp":          `{"rules":[{"name":"r","kind":"silent","recipients":["a@example.jp"]}]}`,
		"bad hours":                  `{"hours":{"start":"18:00","end":"09:00","days":[1]}}`,
		"bad day off":                `{"departments":{"経理部":{"hours":{"start":"09:00","end":"18:00","days":[1],"days_off":["02-30"]}}}}`,
		"day off not a date":         `{"hours":{"start":"09:00","end":"18:00","days":[1],"days_off":["年末"]}}`,
		"bad format":                 `{"webhooks":[{"name":"g","url":"https://x.example/h","format":"xml"}]}`,
		"bad url":                    `{"webhooks":[{"name":"g","url":"file:///etc/passwd","format":"generic"}]}`,
		"bad duration":               `{"rules":[{"name":"r","kind":"silent","delay":"soon"}]}`,
		"plain smtp to another host": `{"smtp":{"host":"mail.example.jp","port":25,"security":"none","username":"u","password":"p","from":"m@example.jp"}}`,
		"url with a space":           `{"webhooks":[{"name":"g","url":"https://outlook.office.com/webhook/ abc","format":"teams"}]}`,
		"repeat_after on bulk_copy":  `{"webhooks":[{"name":"g","url":"https://x.example/h","format":"slack"}],"rules":[{"name":"r","kind":"bulk_copy","webhooks":["g"],"repeat_after":"1h"}]}`,
		"repeat_after over 7 days":   `{"webhooks":[{"name":"g","url":"https://x.example/h","format":"slack"}],"rules":[{"name":"r","kind":"silent","webhooks":["g"],"repeat_after":"200h"}]}`,
	} {
		s, err := ParseSettings([]byte(body))
		if err == nil {
			_, err = r.n.PutSettings(context.Background(), s, -1)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	// What the admin reads: the value as typed, not Go's escaped bytes.
	if _, err := ParseSettings([]byte(`{"rules":[{"name":"r","kind":"silent","delay":"2ふん"}]}`)); err == nil ||
		!strings.Contains(err.Error(), `"2ふん" is not a duration`) {
		t.Errorf("bad Japanese duration: %v", err)
	}
	if _, err := ParseSettings([]byte(`{"hours":{"start":"18:00","end":"09:00","days":[1]}}`)); err == nil || !strings.Contains(err.Error(), "across midnight") {
		t.Errorf("overnight hours: %v", err)
	}
	// Japanese units read as Go's.
	for in, want := range map[string]time.Duration{"2分": 2 * time.Minute, "１時間30分": 90 * time.Minute, "45秒": 45 * time.Second, "90s": 90 * time.Second} {
		if d, err := ParseDuration(in); err != nil || d != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
	var stored Settings
	if _, err := r.st.GetJSON(context.Background(), SettingsKey, &stored); err != nil || len(stored.Rules) != 1 || stored.Rules[0].Name != "r" {
		t.Errorf("stored settings changed: %+v %v", stored, err)
	}
}

// Access to a registered folder at night or on a public holiday alerts;
// the same access in working hours, or outside a registered folder, does not.
func TestOutOfHoursAccessAlerts(t *testing.T) {
	r := newRig(t, map[string]AgentInfo{"pc1": {Hostname: "PC-1", Department: "経理部"}})
	h := newHook(t, 0)
	set := Settings{
		Webhooks:    []Webhook{{Name: "g", URL: h.srv.URL, Format: FormatGeneric}},
		Rules:       []Rule{{Name: "時間外", Kind: KindOutOfHours, Webhooks: []string{"g"}, Delay: Duration(200 * time.Millisecond)}},
		Departments: map[string]Department{"経理部": {Hours: &Hours{Start: "08:00", End: "17:00", Days: []int{1, 2, 3, 4, 5}}}},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	for _, e := range []event.Event{
		{Time: at("2026-11-26T10:00:00+09:00"), Type: "file.modified", RegisterID: "PI-1", Object: `D:\経理\在勤.xlsx`}, // Thursday, working hours
		{Time: at("2026-11-26T17:30:00+09:00"), Type: "file.read", RegisterID: "PI-1", Object: `D:\経理\夕方.xlsx`},     // after 17:00
		{Time: at("2026-11-23T10:00:00+09:00"), Type: "file.modified", RegisterID: "PI-1", Object: `D:\経理\祝日.xlsx`}, // 勤労感謝の日
		{Time: at("2026-11-24T03:00:00+09:00"), Type: "file.created", Object: `C:\tmp\登録外.txt`},                     // not registered
	} {
		e.Control, e.Severity, e.User = "fileaccess", event.Info, `OFFICE\suzuki`
		seal(t, r.store, "pc1", e)
	}
	waitFor(t, 5*time.Second, "the out-of-hours alert", func() bool { return len(h.got()) == 1 })
	var m Message
	if err := json.Unmarshal(h.got()[0], &m); err != nil {
		t.Fatal(err)
	}
	objs := []string{}
	for _, it := range m.Items {
		objs = append(objs, it.Object)
	}
	sort.Strings(objs)
	if m.Count != 2 || fmt.Sprint(objs) != `[D:\経理\夕方.xlsx D:\経理\祝日.xlsx]` || m.Items[0].Department != "経理部" {
		t.Errorf("count %d objects %v", m.Count, objs)
	}
}

// Five failed logins of one user within the window alert; two do not. A
// gap in an agent's chain is a log-integrity alert.
func TestLoginFailuresAndIntegrity(t *testing.T) {
	r := newRig(t, nil)
	h := newHook(t, 0)
	set := Settings{
		Webhooks: []Webhook{{Name: "g", URL: h.srv.URL, Format: FormatGeneric}},
		Rules: []Rule{{Name: "ログイン", Kind: KindLoginFailures, Webhooks: []string{"g"}, Delay: Duration(300 * time.Millisecond), Threshold: 5},
			{Name: "完全性", Kind: KindIntegrity, Webhooks: []string{"g"}, Delay: Duration(300 * time.Millisecond)}},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	fail := func(user string) {
		if _, err := r.store.AppendServer(context.Background(), event.Event{Control: "server", Type: "ui.login_failed",
			Severity: event.Warning, Object: "user/" + user, Attrs: event.Attrs{"ip": "192.0.2.7"}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 6 {
		fail("tanaka")
	}
	fail("sato")
	fail("sato")
	// An agent skipping seq 2..4: the store records server.gap.
	seal(t, r.store, "pc9", event.Event{Control: "agent", Type: "agent.started", Severity: event.Info})
	hd, _ := r.store.Head(context.Background(), "pc9")
	e := event.Event{Agent: "pc9", Seq: 5, Time: time.Now().UTC(), Control: "agent", Type: "agent.started", Severity: event.Info}
	if err := e.Seal(hd.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Append(context.Background(), "pc9", []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "two messages", func() bool { return len(h.got()) == 2 })
	time.Sleep(500 * time.Millisecond)
	if len(h.got()) != 2 {
		t.Fatalf("%d messages", len(h.got()))
	}
	kinds := map[string]Message{}
	for _, b := range h.got() {
		var m Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		kinds[m.Kind] = m
	}
	if m := kinds[KindLoginFailures]; !strings.Contains(m.Text, "- tanaka: 6 回") || strings.Contains(m.Text, "sato") {
		t.Errorf("login failures message:\n%s", m.Text)
	}
	if m := kinds[KindIntegrity]; m.Count != 1 || m.Items[0].Type != eventlog.GapType {
		t.Errorf("integrity message: %+v", m)
	}
}

// Alerts still waiting in a group when the server stops are read again
// and delivered after the restart: the saved cursors never pass them.
func TestPendingAlertsSurviveARestart(t *testing.T) {
	r := newRig(t, map[string]AgentInfo{})
	h := newHook(t, 0)
	set := Settings{
		Webhooks: []Webhook{{Name: "g", URL: h.srv.URL, Format: FormatGeneric}},
		Rules:    []Rule{{Name: "r", Kind: KindViolation, Webhooks: []string{"g"}, Delay: Duration(time.Hour)}},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	// Something already delivered before: its cursor is saved past it.
	r.run(t)
	for i := range 3 {
		r.alert(t, fmt.Sprintf("a%d", i), "PC", "総務部", "backup", "backup.overdue", "古い")
	}
	waitFor(t, 5*time.Second, "the group", func() bool {
		r.n.mu.Lock()
		defer r.n.mu.Unlock()
		return len(r.n.groups) == 1 && r.n.groups["rule/r"].count == 3
	})
	r.n.mu.Lock()
	r.n.savedAt = time.Time{} // save now rather than in 10 s
	r.n.mu.Unlock()
	if err := r.n.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.stop()
	if len(h.got()) != 0 {
		t.Fatal("delivered before the delay")
	}
	// A new notifier on the same etcd and log, with a short delay now.
	n2, err := New(Config{Events: r.store, KV: r.st, Poll: 50 * time.Millisecond, Log: zerolog.Nop(),
		IsNotFound: func(err error) bool { return errors.Is(err, state.ErrNotFound) },
		Agents:     func(context.Context) (map[string]AgentInfo, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	set.Rules[0].Delay = Duration(100 * time.Millisecond)
	if _, err := n2.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n2.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "delivery after the restart", func() bool { return len(h.got()) == 1 })
	var m Message
	if err := json.Unmarshal(h.got()[0], &m); err != nil || m.Count != 3 {
		t.Errorf("after restart: %v count %d", err, m.Count)
	}
}

// An event from a PC enrolled after the notifier read the agent list names
// the PC and its department at once: a rule that mails the department's
// recipients would otherwise group it under no department, and no mail
// would go (the list was cached for 15 s).
func TestNewlyEnrolledAgentKnownAtOnce(t *testing.T) {
	var mu sync.Mutex
	agents := map[string]AgentInfo{"pc0": {Hostname: "PC-0", Department: "経理部"}}
	r := newRig(t, nil)
	r.n.cfg.Agents = func(context.Context) (map[string]AgentInfo, error) {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]AgentInfo{}
		for k, v := range agents {
			out[k] = v
		}
		return out, nil
	}
	set := Settings{
		SMTP:        &SMTP{Host: "127.0.0.1", Port: 25, Security: SecurityNone, From: "mamori@example.jp", Charset: CharsetISO2022JP},
		Rules:       []Rule{{Name: "媒体", Kind: KindMedia, DepartmentRecipients: true, Delay: Duration(time.Hour)}},
		Departments: map[string]Department{"総務部": {Recipients: []string{"somu@example.jp"}}},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.n.Step(ctx); err != nil { // reads the agent list: pc0 only
		t.Fatal(err)
	}
	mu.Lock()
	agents["pc1"] = AgentInfo{Hostname: "PC-1", Department: "総務部"}
	mu.Unlock()
	seal(t, r.store, "pc1", event.Event{Control: "media", Type: "media.blocked", Severity: event.Violation,
		Object: "usb:0781:5581:4C53000", Attrs: event.Attrs{"reason": "default"}})
	if err := r.n.Step(ctx); err != nil {
		t.Fatal(err)
	}
	r.n.mu.Lock()
	g := r.n.groups["rule/媒体/総務部"]
	r.n.mu.Unlock()
	if g == nil || g.count != 1 || g.items[0].Hostname != "PC-1" {
		t.Fatalf("groups %v, want the block under 総務部 named PC-1", r.n.groups)
	}
	if d := destinations(set, g); len(d) != 1 || d[0].name != "mail:somu@example.jp" {
		t.Errorf("destinations %+v", d)
	}
}

// A rule that mails department recipients, for an alert of a department
// with none (or a PC enrolled without one), has nowhere to send it: that
// is a failed delivery, visible like any other, not a silent drop.
func TestAlertWithNowhereToGoIsAFailedDelivery(t *testing.T) {
	r := newRig(t, map[string]AgentInfo{"pc1": {Hostname: "PC-1", Department: "経理部"}})
	set := Settings{
		SMTP:        &SMTP{Host: "127.0.0.1", Port: 25, Security: SecurityNone, From: "mamori@example.jp", Charset: CharsetISO2022JP},
		Rules:       []Rule{{Name: "媒体", Kind: KindMedia, DepartmentRecipients: true, Delay: Duration(50 * time.Millisecond)}},
		Departments: map[string]Department{"総務部": {Recipients: []string{"somu@example.jp"}}},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	seal(t, r.store, "pc1", event.Event{Control: "media", Type: "media.blocked", Severity: event.Violation, Object: "E:"})
	waitFor(t, 10*time.Second, "the failed delivery", func() bool { return len(deliveryLog(t, r.store)) > 0 })
	log := deliveryLog(t, r.store)
	if len(log) != 1 || log[0].Type != TypeFailed || log[0].Severity != event.Warning || log[0].Attrs["destination"] != "none" ||
		!strings.Contains(fmt.Sprint(log[0].Attrs["error"]), "経理部") {
		t.Fatalf("delivery log %+v", log)
	}
}

// TestISO2022JPMailHasOnlyJISX0208: strict ISO-2022-JP readers (iconv,
// Python, mail filters) refuse a whole body for one NEC or IBM extension
// character (①, ㈱, 髙), which x/text's encoder writes; those become 〓, the
// mark Japanese mail has always used for a character it cannot carry.
func TestISO2022JPMailHasOnlyJISX0208(t *testing.T) {
	m := Message{Subject: "[Mamori] 髙橋①の件", Text: "対象: D:\\顧客\\髙橋①㈱～.csv\n"}
	msg, err := buildMail(SMTP{From: "mamori@example.jp", Charset: CharsetISO2022JP}, []string{"kanri@example.jp"}, m)
	if err != nil {
		t.Fatal(err)
	}
	var raw strings.Builder
	if _, err := msg.WriteTo(&raw); err != nil {
		t.Fatal(err)
	}
	d := mailtest.Decode(t, []byte(raw.String()))
	for name, jis := range map[string][]byte{"subject": d.SubjectRaw, "body": d.BodyRaw} {
		if bad := nonJISX0208(jis); bad != "" {
			t.Errorf("%s holds %s outside JIS X 0208", name, bad)
		}
	}
	if !strings.Contains(d.Body, "対象: D:\\顧客\\〓橋〓〓～.csv") || !strings.Contains(d.Subject, "〓橋〓の件") {
		t.Errorf("subject %q body %q", d.Subject, d.Body)
	}
}

// nonJISX0208 names the first two-byte code in an ISO-2022-JP text whose
// row is not one of JIS X 0208's (1-8, 16-84), or "".
func nonJISX0208(b []byte) string {
	twoByte := false
	for i := 0; i < len(b); i++ {
		if b[i] == 0x1b && i+2 < len(b) {
			twoByte = b[i+1] == '$'
			i += 2
			continue
		}
		if twoByte && i+1 < len(b) {
			if row := int(b[i]) - 0x20; row < 1 || (row > 8 && row < 16) || row > 84 {
				return fmt.Sprintf("row %d (0x%02x%02x)", row, b[i], b[i+1])
			}
			i++
		}
	}
	return ""
}

// TestFlappingControlMailsOnceAnInterval: a PC whose screen lock turns
// fail, pass and fail again (each fail run is a new compliance alert) is
// mailed once per repeat_after, not once per flap; other PCs are not held
// back, and the first mail after the interval says how many were held.
func TestFlappingControlMailsOnceAnInterval(t *testing.T) {
	r := newRig(t, map[string]AgentInfo{"pc1": {Hostname: "PC-01"}, "pc2": {Hostname: "PC-02"}})
	h := newHook(t, 0)
	set := Settings{
		Webhooks: []Webhook{{Name: "g", URL: h.srv.URL, Format: FormatGeneric}},
		Rules: []Rule{{Name: "違反", Kind: KindViolation, Webhooks: []string{"g"}, Delay: Duration(100 * time.Millisecond),
			RepeatAfter: Duration(2 * time.Second)}},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	start := time.Now()
	msgs := func() []Message {
		var out []Message
		for _, b := range h.got() {
			var m Message
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		return out
	}
	r.alert(t, "pc1", "PC-01", "", "screenlock", "screenlock.timeout", "画面ロックまでの時間が長すぎます")
	waitFor(t, 5*time.Second, "the first mail", func() bool { return len(h.got()) == 1 })
	for range 3 { // flaps within the interval
		r.alert(t, "pc1", "PC-01", "", "screenlock", "screenlock.timeout", "画面ロックまでの時間が長すぎます")
		time.Sleep(150 * time.Millisecond)
	}
	r.alert(t, "pc2", "PC-02", "", "screenlock", "screenlock.timeout", "画面ロックまでの時間が長すぎます")
	waitFor(t, 5*time.Second, "PC-02's mail", func() bool { return len(h.got()) == 2 })
	if m := msgs()[1]; m.Count != 1 || len(m.Items) != 1 || m.Items[0].Hostname != "PC-02" {
		t.Errorf("second mail should be PC-02's alone: %+v", m)
	}
	if time.Since(start) > 1800*time.Millisecond {
		t.Skip("machine too slow to stay within the 2 s interval")
	}
	time.Sleep(time.Until(start.Add(2100 * time.Millisecond)))
	r.alert(t, "pc1", "PC-01", "", "screenlock", "screenlock.timeout", "画面ロックまでの時間が長すぎます")
	waitFor(t, 5*time.Second, "PC-01's mail after the interval", func() bool { return len(h.got()) == 3 })
	m := msgs()[2]
	if len(m.Items) != 1 || m.Items[0].Hostname != "PC-01" || !strings.Contains(m.Items[0].Detail, "のあと 3 回繰り返しました") ||
		!strings.Contains(m.Text, "2秒 以内の繰り返しは通知していません") {
		t.Errorf("after the interval: items %+v\n%s", m.Items, m.Text)
	}
}

// Suspected tampering with an agent and event times run back are
// log-integrity alerts the notifier delivers, not only classifies: the
// streams it tails come from the same list as the classification.
func TestTamperSignsReachTheIntegrityRule(t *testing.T) {
	r := newRig(t, nil)
	h := newHook(t, 0)
	set := Settings{
		Webhooks: []Webhook{{Name: "g", URL: h.srv.URL, Format: FormatGeneric}},
		Rules:    []Rule{{Name: "完全性", Kind: KindIntegrity, Webhooks: []string{"g"}, Delay: Duration(300 * time.Millisecond)}},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	for _, e := range []event.Event{
		{Control: "server", Type: alertkind.TypeTamperSuspected, Severity: event.Violation, Object: "pc9",
			Attrs: event.Attrs{"agent": "pc9", "reason": "chain_conflict"}},
		{Control: eventlog.GapControl, Type: eventlog.ClockRewoundType, Severity: event.Warning,
			Attrs: event.Attrs{"agent": "pc9", "seq": 7, "rewind": "720h0m0s"}},
	} {
		if _, err := r.store.AppendServer(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the integrity message", func() bool { return len(h.got()) == 1 })
	var m Message
	if err := json.Unmarshal(h.got()[0], &m); err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindIntegrity || m.Count != 2 {
		t.Fatalf("message: %+v", m)
	}
}
