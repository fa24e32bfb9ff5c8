package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/notify"
	"github.com/mamori/mamori/shared/event"
)

// lockedBuffer collects a server's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// adminPut PUTs v as JSON to the admin API and returns the status.
func adminPut(t *testing.T, base, token string, caPEM []byte, path string, v any) int {
	t.Helper()
	b, _ := json.Marshal(v)
	req, _ := http.NewRequest("PUT", base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpsClient(caPEM, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

var treeSizeMetric = regexp.MustCompile(`(?m)^mamori_store_tree_size (\S+)$`)

// metricsTreeSize reads mamori_store_tree_size from a server's /metrics.
func metricsTreeSize(t *testing.T, base string, caPEM []byte) int64 {
	t.Helper()
	resp, err := httpsClient(caPEM, nil).Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := treeSizeMetric.FindSubmatch(b)
	if m == nil {
		t.Fatalf("/metrics: no tree size in %.300s", b)
	}
	f, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return int64(f)
}

// A standby runs none of the writer's appending jobs: with a writer and a
// standby on one etcd and PostgreSQL, a violation is alerted once (one
// compliance.alert in the log, one webhook delivery) and the standby logs
// no fenced write. Its read side follows the log: /metrics, the checkpoint
// and an evidence export on the standby cover what the writer stored
// after the standby started. When the writer leaves, the standby is
// promoted and raises and delivers the next violation.
func TestStandbyFollowsTheLogAndRunsNoWriterJobs(t *testing.T) {
	events := pgtest.Start(t).Schema(t)
	ep, _ := siteEtcd(t)
	kek := testKEK(t)
	ctx := context.Background()

	c1 := nodeConfig(t, t.TempDir(), ep, events, "node1.test", kek)
	c1.Hostnames = []string{"127.0.0.1"} // the node URL a standby sends records to
	c1.ServiceName = "localhost"         // URL() names it; resolvable in a test
	n1, err := app.Start(ctx, c1)
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Close()
	caPEM, token := n1.CAPEM(), n1.AdminToken()
	var hits atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hits.Add(1)
	}))
	defer hook.Close()
	set := notify.Settings{Webhooks: []notify.Webhook{{Name: "chat", URL: hook.URL, Format: notify.FormatGeneric}},
		Rules: []notify.Rule{{Name: "violations", Kind: notify.KindViolation, Webhooks: []string{"chat"},
			Delay: notify.Duration(time.Second)}}}
	if st := adminPut(t, n1.URL(), token, caPEM, notify.PathSettings, set); st != 200 {
		t.Fatalf("PUT notification settings: %d", st)
	}
	a := enroll(t, n1.URL(), n1.EnrollToken(), n1.CAFingerprint(), caPEM, "pc-ha-01")
	if _, err := a.send(a.events(10)); err != nil {
		t.Fatal(err)
	}

	var logs lockedBuffer
	c2 := nodeConfig(t, t.TempDir(), ep, events, "node2.test", kek)
	c2.Hostnames = []string{"127.0.0.1"}
	c2.Join = true
	c2.Log = zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), &logs)).Level(zerolog.WarnLevel)
	n2, err := app.Start(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if n2.Role() != "standby" {
		t.Fatalf("second server: role %q", n2.Role())
	}
	loaded := metricsTreeSize(t, n2.URL(), caPEM)

	fail := func(control string) []event.Event {
		a.seq++
		e := event.Event{Agent: a.id, Seq: a.seq, Time: time.Now().UTC(), Control: control, Type: control + ".status",
			Severity: event.Violation, Attrs: event.Attrs{"status": "fail", "since": time.Now().UTC().Format(time.RFC3339),
				"reason": control + ".test_fail", "reason_ja": "テスト", "reason_en": "test"}}
		if err := e.Seal(a.prev); err != nil {
			t.Fatal(err)
		}
		a.prev = e.Hash
		return []event.Event{e}
	}
	alerts := func(srv *app.Server) int {
		var q queried
		v := map[string][]string{"type": {compliance.AlertType}, "limit": {"100"}}
		if st := adminGet(t, srv.URL(), token, caPEM, "/api/v1/events", v, &q); st != 200 {
			t.Fatalf("alert query: %d", st)
		}
		return len(q.Events)
	}
	waitFor := func(what string, d time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(d); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, d)
			}
		}
	}

	if _, err := a.send(fail("screenlock")); err != nil {
		t.Fatal(err)
	}
	// The writer's tracker may hold an inventory from before the agent
	// enrolled (cached 15 s): then its 30 s check raises the alert.
	waitFor("the writer's webhook delivery", 60*time.Second, func() bool { return hits.Load() >= 1 })
	size := metricsTreeSize(t, n1.URL(), caPEM)
	// The standby's read side follows the log past what it loaded.
	waitFor("the standby's /metrics following the writer's", 10*time.Second, func() bool {
		return metricsTreeSize(t, n2.URL(), caPEM) >= size
	})
	if size <= loaded {
		t.Fatalf("the log did not grow after the standby started: %d, %d", loaded, size)
	}
	cp := waitCheckpoint(t, n1.URL(), token, caPEM, size)
	if got := waitCheckpoint(t, n2.URL(), token, caPEM, cp.Size); got.Checkpoint == "" {
		t.Fatal("the standby's checkpoint has no note")
	}
	// Several polls of the notifier, the rule's delay and the tracker later,
	// still one alert and one delivery, and the standby wrote nothing.
	time.Sleep(4 * time.Second)
	if n, h := alerts(n2), hits.Load(); n != 1 || h != 1 {
		t.Fatalf("with a standby running: %d alerts in the log, %d deliveries; want 1 and 1", n, h)
	}
	if l := logs.String(); strings.Contains(l, "fenced") {
		t.Fatalf("the standby tried to write:\n%s", l)
	}

	req, _ := http.NewRequest("GET", n2.URL()+"/api/v1/export?format=bundle&type="+compliance.AlertType, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpsClient(caPEM, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// (The export's own record is sent to the writer: TestStandbyAdminPlane.)
	if resp.StatusCode != 200 || !strings.Contains(string(bundle), `"type":"`+compliance.AlertType+`"`) {
		t.Fatalf("export on the standby: %d, no alert in %.400s", resp.StatusCode, bundle)
	}

	// The writer leaves (it resigns on Close): the standby takes over and
	// raises and delivers the next violation.
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor("the standby's promotion", 30*time.Second, func() bool { return n2.Role() == "writer" })
	a.base = n2.URL()
	if _, err := a.send(fail("posture")); err != nil {
		t.Fatal(err)
	}
	waitFor("the promoted writer's alert and delivery", 60*time.Second, func() bool { return alerts(n2) == 2 && hits.Load() == 2 })
}
