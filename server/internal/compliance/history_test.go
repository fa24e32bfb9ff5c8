package compliance

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

type memHistory struct {
	mu    sync.Mutex
	days  []Day
	saves int
}

func (m *memHistory) LoadHistory(context.Context) ([]Day, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.days), nil
}

func (m *memHistory) SaveHistory(_ context.Context, d []Day) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.days, m.saves = slices.Clone(d), m.saves+1
	return nil
}

func (m *memHistory) get() ([]Day, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.days), m.saves
}

// Run records the day's rates on its own (no page view), one row per day
// per control and department, the day's last figures winning.
func TestRunRecordsDailyHistory(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	clk := &clock{t: time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC)} // 08:00 JST on the 2nd
	inv := hostList{
		{Agent: "a1", Hostname: "pc-01", Department: "総務部", Enrolled: clk.Now(), Policy: pol(0, allAudit())},
		{Agent: "a2", Hostname: "pc-02", Department: "営業部", Enrolled: clk.Now(), Policy: pol(0, allAudit())},
	}
	mem := &memHistory{}
	tr, err := New(Config{Events: store, Inventory: inv, Log: zerolog.Nop(), Now: clk.Now, History: mem,
		HistoryEvery: 20 * time.Millisecond, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := &agentStream{id: "a1"}, &agentStream{id: "a2"}
	appendAll(t, store, "a1", a1.status(t, "posture", Fail, "posture.disk_unencrypted", clk.Now()))
	appendAll(t, store, "a2", a2.status(t, "posture", Pass, "posture.ok", clk.Now()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = tr.Run(ctx, nil) }()
	alerting := make(chan struct{})
	go func() { defer close(alerting); tr.RunAlerts(ctx) }()
	defer func() { cancel(); <-done; <-alerting }()
	wait := func(cond func([]Day) bool) []Day {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if d, _ := mem.get(); cond(d) {
				return d
			}
		}
		d, _ := mem.get()
		t.Fatalf("history not recorded as expected: %+v", d)
		return nil
	}
	days := wait(func(d []Day) bool { return len(d) == 1 })
	if d := days[0]; d.Day != "2026-12-02" || d.Controls["posture"] != 0.5 || d.Departments["総務部"] != 0 || d.Departments["営業部"] <= 0 {
		t.Fatalf("day: %+v", d)
	}
	// The next day, a1 is fixed: a second row, the first kept.
	clk.Add(24 * time.Hour)
	appendAll(t, store, "a1", a1.status(t, "posture", Pass, "posture.ok", clk.Now()))
	days = wait(func(d []Day) bool { return len(d) == 2 && d[1].Controls["posture"] == 1 })
	if days[0].Day != "2026-12-02" || days[0].Controls["posture"] != 0.5 || days[1].Day != "2026-12-03" || days[1].Departments["総務部"] <= 0 {
		t.Fatalf("two days: %+v", days)
	}
	if h, err := tr.History(context.Background()); err != nil || len(h) != 2 {
		t.Fatalf("History: %v %v", h, err)
	}
}
