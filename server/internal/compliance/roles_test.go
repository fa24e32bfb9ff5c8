package compliance

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// Run, which every server runs, appends nothing: a standby's tracker
// follows the log for its reports, and only RunAlerts (the writer's) raises
// the alert of a fail status.
func TestRunAppendsNothingRunAlertsRaises(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	clk := &clock{t: time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC)}
	inv := hostList{{Agent: "a1", Hostname: "pc-01", Department: "総務部", Enrolled: clk.Now(), Policy: pol(0, allAudit())}}
	tr, err := New(Config{Events: store, Inventory: inv, Log: zerolog.Nop(), Now: clk.Now, History: &memHistory{},
		Poll: 10 * time.Millisecond, AlertEvery: 10 * time.Millisecond, HistoryEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a1 := &agentStream{id: "a1"}
	appendAll(t, store, "a1", a1.status(t, "posture", Fail, "posture.disk_unencrypted", clk.Now()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = tr.Run(ctx, nil) }()
	alerts := func() int {
		p, err := store.Query(context.Background(), eventlog.Filter{Agent: event.ServerStream, Type: AlertType, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Events)
	}
	// Run has read the fail status (a report sees it) ...
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r, err := tr.Report(ctx, Filter{Status: Fail})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Hosts) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fail status is not in the report: %+v", r.Hosts)
		}
	}
	// ... and many of its polls later still raised nothing.
	time.Sleep(200 * time.Millisecond)
	if n := alerts(); n != 0 {
		t.Fatalf("Run alone appended %d alerts", n)
	}
	actx, stopAlerts := context.WithCancel(ctx)
	alerting := make(chan struct{})
	go func() { defer close(alerting); tr.RunAlerts(actx) }()
	for deadline := time.Now().Add(5 * time.Second); alerts() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("RunAlerts raised %d alerts, want 1", alerts())
		}
	}
	stopAlerts()
	<-alerting
	cancel()
	<-done
}
