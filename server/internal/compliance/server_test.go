package compliance_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func httpsClient(caPEM []byte, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// agent enrolls like mamori-agent (token, CSR, CA pinned by fingerprint)
// and ships sealed batches over mTLS.
type agent struct {
	id   string
	base string
	c    *http.Client
	seq  uint64
	prev string
}

func enroll(t *testing.T, srv *app.Server, host, dept string) *agent {
	t.Helper()
	if err := pki.CheckFingerprint(srv.CAPEM(), srv.CAFingerprint()); err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(host)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(wire.EnrollRequest{Token: srv.EnrollToken(), CSR: string(csrPEM), Hostname: host,
		OS: "windows", Arch: "amd64", Department: dept})
	resp, err := httpsClient(srv.CAPEM(), nil).Post(srv.URL()+wire.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("enroll: %d %s", resp.StatusCode, b)
	}
	var er wire.EnrollResponse
	if err := json.Unmarshal(b, &er); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(er.Certificate), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &agent{id: er.AgentID, base: srv.URL(), c: httpsClient(srv.CAPEM(), &cert)}
}

// status is a control's verdict as the agent reports it.
type status struct {
	State                      compliance.Status
	Reason, ReasonJA, ReasonEN string
	Since                      time.Time
}

// statusEvent builds a "<control>.status" event the way the agent's
// controls.StatusEvent does (agent/internal/controls/status.go; internal
// to agent/, so mirrored here; the e2e test uses the real agent).
func statusEvent(control string, st status, now time.Time) event.Event {
	sev := event.Info
	switch st.State {
	case compliance.Fail:
		sev = event.Violation
	case compliance.Unknown:
		sev = event.Warning
	}
	return event.Event{Time: now, Control: control, Type: control + ".status", Severity: sev,
		Attrs: event.Attrs{"status": string(st.State), "since": st.Since.UTC().Format(time.RFC3339),
			"reason": st.Reason, "reason_ja": st.ReasonJA, "reason_en": st.ReasonEN}}
}

// send ships status events built by the agent's own StatusEvent.
func (a *agent) send(t *testing.T, sts map[string]status) {
	t.Helper()
	var evs []event.Event
	for _, c := range compliance.Controls {
		st, ok := sts[c]
		if !ok {
			continue
		}
		a.seq++
		e := statusEvent(c, st, time.Now())
		e.Agent, e.Seq = a.id, a.seq
		if err := e.Seal(a.prev); err != nil {
			t.Fatal(err)
		}
		a.prev = e.Hash
		evs = append(evs, e)
	}
	body, _ := json.Marshal(wire.Batch{Events: evs})
	resp, err := a.c.Post(a.base+wire.PathEvents, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("batch: %d %s", resp.StatusCode, b)
	}
}

func admin(t *testing.T, srv *app.Server, method, path string, body []byte, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL()+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	resp, err := httpsClient(srv.CAPEM(), nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v in %s", path, err, b)
		}
	}
	if resp.StatusCode >= 400 && out != nil {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

const policyYAML = `apiVersion: mamori/v1
kind: Policy
name: %s
controls:
  screenlock: {mode: audit, max_idle: 10m, require_password: true}
  media:      {mode: audit, default: block}
  fileaccess: {mode: audit, paths: ["D:\\顧客"]}
  backup:     {mode: audit, destination: "/mnt/backup", max_age: 26h}
  posture:    {mode: audit, disk_encryption: required, antivirus: required}
  agent:      {heartbeat: %s, silent_after: %s}
`

func TestComplianceOverRealServer(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	srv, err := app.Start(ctx, app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1"}, Log: zerolog.Nop(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// Everything audited; pc-01 gets silent_after 10m, pc-02 the default 30m.
	for _, p := range []struct{ name, hb, silent string }{{"default", "5m", "30m"}, {"short", "1m", "10m"}} {
		if st := admin(t, srv, "PUT", "/api/v1/policies/"+p.name, fmt.Appendf(nil, policyYAML, p.name, p.hb, p.silent), new(any)); st != 200 && st != 201 && st != 204 {
			t.Fatalf("PUT policy %s: %d", p.name, st)
		}
	}
	a1 := enroll(t, srv, "pc-01", "総務部")
	a2 := enroll(t, srv, "pc-02", "営業部")
	if err := srv.State().Assign(ctx, a1.id, "short"); err != nil {
		t.Fatal(err)
	}

	since := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	a1.send(t, map[string]status{
		"screenlock": {State: compliance.Pass, Reason: "screenlock.ok", ReasonJA: "画面ロックは設定どおりです", ReasonEN: "screen lock as required", Since: since},
		"backup":     {State: compliance.Fail, Reason: "backup.overdue", ReasonJA: "バックアップが古すぎます", ReasonEN: "backup overdue", Since: since},
		"posture":    {State: compliance.Pass, Reason: "posture.ok", ReasonJA: "問題ありません", ReasonEN: "all checks pass", Since: since},
	})
	a2.send(t, map[string]status{
		"screenlock": {State: compliance.Fail, Reason: "screenlock.timeout_too_long", ReasonJA: "画面ロックまでの時間が長すぎます", ReasonEN: "screen lock timeout too long", Since: since},
		"posture":    {State: compliance.Unknown, Reason: "posture.wmi_unavailable", ReasonJA: "WMI を利用できません", ReasonEN: "WMI unavailable", Since: since},
	})

	var rep compliance.Report
	if st := admin(t, srv, "GET", compliance.PathCompliance, nil, &rep); st != 200 {
		t.Fatalf("GET compliance: %d", st)
	}
	if len(rep.Hosts) != 2 || rep.Hosts[0].Hostname != "pc-01" || rep.Hosts[1].Hostname != "pc-02" {
		t.Fatalf("hosts = %+v", rep.Hosts)
	}
	h1, h2 := rep.Hosts[0], rep.Hosts[1]
	if h1.Department != "総務部" || h1.Silent || h1.LastSeen == nil {
		t.Fatalf("pc-01 = %+v", h1)
	}
	for _, tc := range []struct {
		h       compliance.Host
		control string
		status  compliance.Status
		reason  string
	}{
		{h1, "screenlock", compliance.Pass, "screenlock.ok"},
		{h1, "backup", compliance.Fail, "backup.overdue"},
		{h1, "posture", compliance.Pass, "posture.ok"},
		{h1, "media", compliance.Unknown, compliance.ReasonNoStatus},
		{h2, "screenlock", compliance.Fail, "screenlock.timeout_too_long"},
		{h2, "posture", compliance.Unknown, "posture.wmi_unavailable"},
	} {
		cs := tc.h.Controls[tc.control]
		if cs.Status != tc.status || cs.Reason != tc.reason {
			t.Errorf("%s %s = %s %s, want %s %s", tc.h.Hostname, tc.control, cs.Status, cs.Reason, tc.status, tc.reason)
		}
		if tc.reason != compliance.ReasonNoStatus && (cs.Since == nil || !cs.Since.Equal(since) || cs.Index == nil || cs.ReasonJA == "") {
			t.Errorf("%s %s: since/index/reason_ja = %+v", tc.h.Hostname, tc.control, cs)
		}
	}
	if got := rep.Fleet["screenlock"]; got.Pass != 1 || got.Fail != 1 || got.Unknown != 0 || got.Rate != 0.5 {
		t.Errorf("fleet screenlock = %+v", got)
	}
	if got := rep.Fleet["posture"]; got.Pass != 1 || got.Unknown != 1 || got.Rate != 0.5 {
		t.Errorf("fleet posture = %+v", got)
	}
	if got := rep.Departments["総務部"]["screenlock"]; got.Pass != 1 || got.Rate != 1 {
		t.Errorf("総務部 screenlock = %+v", got)
	}

	// The index points at the stored status event.
	var page struct {
		Events []struct {
			Type  string      `json:"type"`
			Attrs event.Attrs `json:"attrs"`
		} `json:"events"`
	}
	q := url.Values{"agent": {a1.id}, "type": {"backup.status"}}
	if st := admin(t, srv, "GET", "/api/v1/events?"+q.Encode(), nil, &page); st != 200 || len(page.Events) != 1 || page.Events[0].Attrs["reason"] != "backup.overdue" {
		t.Fatalf("events: %d %+v", st, page)
	}

	// Filters and their refusals.
	if st := admin(t, srv, "GET", compliance.PathCompliance+"?status=fail&control=screenlock", nil, &rep); st != 200 ||
		len(rep.Hosts) != 1 || rep.Hosts[0].Hostname != "pc-02" {
		t.Fatalf("?status=fail&control=screenlock: %d %+v", st, rep.Hosts)
	}
	for _, bad := range []string{"control=printer", "status=ok", "since=1h"} {
		var e wire.Error
		req, _ := http.NewRequest("GET", srv.URL()+compliance.PathCompliance+"?"+bad, nil)
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
		resp, err := httpsClient(srv.CAPEM(), nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if param, _, _ := strings.Cut(bad, "="); resp.StatusCode != 400 || !strings.HasPrefix(e.Error, param+":") {
			t.Fatalf("?%s: %d %q", bad, resp.StatusCode, e.Error)
		}
	}
	if st := admin(t, srv, "GET", compliance.PathCompliance, nil, nil); st != 200 {
		t.Fatalf("admin GET: %d", st)
	}
	req, _ := http.NewRequest("GET", srv.URL()+compliance.PathCompliance, nil)
	if resp, err := httpsClient(srv.CAPEM(), nil).Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("without a token: %v %v", resp, err)
	}

	// Open alerts, and one compliance.alert per violation in the log.
	var alerts struct{ Alerts []compliance.Alert }
	if st := admin(t, srv, "GET", compliance.PathAlerts, nil, &alerts); st != 200 || len(alerts.Alerts) != 2 {
		t.Fatalf("alerts: %d %+v", st, alerts)
	}
	waitAlerts(t, srv, 2)

	// 11 minutes on: pc-01 (silent_after 10m) is silent, pc-02 (30m) not.
	clk.Add(11 * time.Minute)
	if st := admin(t, srv, "GET", compliance.PathCompliance, nil, &rep); st != 200 {
		t.Fatalf("GET compliance: %d", st)
	}
	h1, h2 = rep.Hosts[0], rep.Hosts[1]
	if !h1.Silent || h2.Silent {
		t.Fatalf("silent: pc-01 %v, pc-02 %v", h1.Silent, h2.Silent)
	}
	for _, c := range compliance.Controls {
		cs := h1.Controls[c]
		if cs.Status != compliance.Unknown || cs.Reason != compliance.ReasonSilent ||
			!(strings.HasPrefix(cs.ReasonEN, "agent silent for 10m") || strings.HasPrefix(cs.ReasonEN, "agent silent for 11m")) || !strings.Contains(cs.ReasonJA, "応答がありません") {
			t.Errorf("silent pc-01 %s = %+v", c, cs)
		}
	}
	if r := h1.Controls["backup"].ReasonJA; !strings.Contains(r, "最後の報告は違反") {
		t.Errorf("silent pc-01's last backup violation is not said: %q", r)
	}
	if got := rep.Fleet["screenlock"]; got.Pass != 0 || got.Fail != 1 || got.Unknown != 1 || got.Rate != 0 {
		t.Errorf("fleet screenlock with pc-01 silent = %+v", got)
	}
	if st := admin(t, srv, "GET", compliance.PathAlerts, nil, &alerts); st != 200 || len(alerts.Alerts) != 2 ||
		alerts.Alerts[0].Kind != compliance.KindSilent && alerts.Alerts[1].Kind != compliance.KindSilent {
		t.Fatalf("alerts with pc-01 silent: %d %+v", st, alerts)
	}
	waitAlerts(t, srv, 3) // the silent alert, raised by the background loop within its 30 s period
}

// waitAlerts waits until the server stream holds n compliance.alert events
// and checks it does not go beyond.
func waitAlerts(t *testing.T, srv *app.Server, n int) {
	t.Helper()
	q := url.Values{"type": {compliance.AlertType}}
	var page struct {
		Events []json.RawMessage `json:"events"`
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		if st := admin(t, srv, "GET", "/api/v1/events?"+q.Encode(), nil, &page); st != 200 {
			t.Fatalf("events: %d", st)
		}
		if len(page.Events) > n {
			t.Fatalf("%d alert events, want %d", len(page.Events), n)
		}
		if len(page.Events) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d alert events after 45s, want %d", len(page.Events), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
