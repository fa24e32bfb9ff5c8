package compliance

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/policies"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// clock is a settable clock for silence.
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

// hostList is an Inventory over a fixed list (the state-backed one is
// exercised through the app test).
type hostList []HostInfo

func (h hostList) Hosts(context.Context) ([]HostInfo, error) { return h, nil }

// agentStream seals events as one agent would.
type agentStream struct {
	id   string
	seq  uint64
	prev string
}

func (a *agentStream) status(t testing.TB, control string, st Status, reason string, since time.Time) event.Event {
	t.Helper()
	a.seq++
	sev := event.Info
	if st == Fail {
		sev = event.Violation
	}
	e := event.Event{Agent: a.id, Seq: a.seq, Time: since, Control: control, Type: control + ".status", Severity: sev,
		Attrs: event.Attrs{"status": string(st), "since": since.UTC().Format(time.RFC3339), "reason": reason,
			"reason_ja": reason + " (ja)", "reason_en": reason + " (en)"}}
	if err := e.Seal(a.prev); err != nil {
		t.Fatal(err)
	}
	a.prev = e.Hash
	return e
}

func openStore(t testing.TB, dir string) *eventlog.SQLite {
	t.Helper()
	s, err := eventlog.OpenSQLite(context.Background(), filepath.Join(dir, "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendAll(t *testing.T, s eventlog.Store, agent string, evs ...event.Event) {
	t.Helper()
	if _, err := s.Append(context.Background(), agent, evs); err != nil {
		t.Fatal(err)
	}
}

func alertEvents(t *testing.T, s eventlog.Store) []eventlog.Stored {
	t.Helper()
	p, err := s.Query(context.Background(), eventlog.Filter{Control: AlertControl, Type: AlertType, Limit: eventlog.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return p.Events
}

func TestTrackerLatestStatusAndAlertsOncePerTransition(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := openStore(t, dir)
	defer func() { store.Close() }()
	clk := &clock{t: time.Now()}
	inv := hostList{
		{Agent: "a1", Hostname: "pc-01", Department: "総務部", Enrolled: clk.Now(), Policy: pol(30*time.Minute, allAudit())},
		{Agent: "a2", Hostname: "pc-02", Department: "営業部", Enrolled: clk.Now(), Policy: pol(30*time.Minute, allAudit())},
	}
	newTracker := func(s eventlog.Store) *Tracker {
		tr, err := New(Config{Events: s, Inventory: inv, Now: clk.Now, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	tr := newTracker(store)

	a1, a2 := &agentStream{id: "a1"}, &agentStream{id: "a2"}
	s1 := clk.Now().Add(-time.Hour).Truncate(time.Second)
	appendAll(t, store, "a1", a1.status(t, "screenlock", Pass, "screenlock.ok", s1), a1.status(t, "backup", Fail, "backup.overdue", s1))
	appendAll(t, store, "a2", a2.status(t, "screenlock", Fail, "screenlock.no_password", s1))

	rep, err := tr.Report(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Hosts) != 2 || rep.Hosts[0].Agent != "a1" {
		t.Fatalf("hosts = %+v", rep.Hosts)
	}
	bk := rep.Hosts[0].Controls["backup"]
	if bk.Status != Fail || bk.Reason != "backup.overdue" || bk.ReasonJA != "backup.overdue (ja)" || !bk.Since.Equal(s1) || *bk.Index != 1 {
		t.Fatalf("a1 backup = %+v", bk)
	}
	if got := rep.Fleet["screenlock"]; got.Pass != 1 || got.Fail != 1 || got.Rate != 0.5 {
		t.Fatalf("fleet screenlock = %+v", got)
	}
	if got := rep.Departments["営業部"]["screenlock"]; got.Fail != 1 || got.Rate != 0 {
		t.Fatalf("営業部 screenlock = %+v", got)
	}

	// Two violations: two alerts, and a second check raises nothing more.
	for range 2 {
		if err := tr.CheckAlerts(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := alertEvents(t, store); len(got) != 2 {
		t.Fatalf("alerts after two checks: %d", len(got))
	}
	// The same failure re-reported on the interval is the same violation.
	appendAll(t, store, "a2", a2.status(t, "screenlock", Fail, "screenlock.no_password", s1))
	if err := tr.CheckAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	if got := alertEvents(t, store); len(got) != 2 {
		t.Fatalf("a re-reported failure raised an alert: %d", len(got))
	}
	// Fixed, then failing again: a new violation.
	appendAll(t, store, "a2", a2.status(t, "screenlock", Pass, "screenlock.ok", clk.Now()))
	if err := tr.CheckAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	appendAll(t, store, "a2", a2.status(t, "screenlock", Fail, "screenlock.no_password", clk.Now()))
	if err := tr.CheckAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	alerts := alertEvents(t, store)
	if len(alerts) != 3 {
		t.Fatalf("alerts after fail -> pass -> fail: %d", len(alerts))
	}
	last := alerts[2]
	if last.Agent != event.ServerStream || last.Severity != event.Violation || last.Attrs["agent"] != "a2" ||
		last.Attrs["control"] != "screenlock" || last.Attrs["kind"] != KindViolation {
		t.Fatalf("alert event = %+v", last.Event)
	}

	// A restarted server (new tracker, reopened store) raises nothing twice.
	store.Close()
	store = openStore(t, dir)
	tr = newTracker(store)
	if err := tr.CheckAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	if got := alertEvents(t, store); len(got) != 3 {
		t.Fatalf("alerts after restart: %d", len(got))
	}
	open, err := tr.Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 2 || open[0].Kind != KindViolation {
		t.Fatalf("open alerts = %+v", open)
	}
	// Each alert, and its event in the log, names the clauses at stake.
	if !slices.Equal(open[0].Clauses, policies.Clauses()[open[0].Control]) || len(open[0].Clauses) == 0 {
		t.Fatalf("alert clauses = %v", open[0].Clauses)
	}
	if ae := alertEvents(t, store); len(ae) == 0 || len(ae[0].Attrs["clauses"].([]any)) == 0 {
		t.Fatalf("alert event without clauses: %+v", ae)
	}

	// Silence: once past silent_after (and the restarted tracker's grace),
	// both hosts are silent, alerted once each.
	clk.Add(31 * time.Minute)
	for range 2 {
		if err := tr.CheckAlerts(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var silent int
	for _, a := range alertEvents(t, store) {
		if a.Attrs["kind"] == KindSilent {
			silent++
			if a.Severity != event.Warning || a.Attrs["reason"] != ReasonSilent {
				t.Fatalf("silent alert = %+v", a.Event)
			}
		}
	}
	if silent != 2 {
		t.Fatalf("silent alerts = %d, want 2", silent)
	}
	rep, err = tr.Report(ctx, Filter{Agent: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	if h := rep.Hosts[0]; !h.Silent || h.Controls["screenlock"].Reason != ReasonSilent || h.Controls["screenlock"].Status != Unknown {
		t.Fatalf("silent host = %+v", h)
	}
	if got := rep.Fleet["screenlock"]; got.Unknown != 1 || got.Rate != 0 {
		t.Fatalf("fleet of silent a1 = %+v", got)
	}
}

func TestReportFilters(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir())
	defer store.Close()
	now := time.Now()
	inv := hostList{
		{Agent: "a1", Hostname: "pc-01", Department: "総務部", Enrolled: now, Policy: pol(0, allAudit())},
		{Agent: "a2", Hostname: "pc-02", Department: "営業部", Enrolled: now, Policy: pol(0, allAudit())},
	}
	tr, err := New(Config{Events: store, Inventory: inv, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := &agentStream{id: "a1"}, &agentStream{id: "a2"}
	appendAll(t, store, "a1", a1.status(t, "posture", Fail, "posture.disk_unencrypted", now))
	appendAll(t, store, "a2", a2.status(t, "posture", Pass, "posture.ok", now))

	rep, err := tr.Report(ctx, Filter{Control: "posture", Status: Fail})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Hosts) != 1 || rep.Hosts[0].Agent != "a1" || len(rep.Hosts[0].Controls) != 1 {
		t.Fatalf("fail hosts = %+v", rep.Hosts)
	}
	if len(rep.Fleet) != 1 || rep.Fleet["posture"].Rate != 0.5 {
		t.Fatalf("fleet = %+v", rep.Fleet)
	}
	if len(rep.Clauses) != 1 || !slices.Contains(rep.Clauses["posture"], "PPC 通則編 §10-6(c)") {
		t.Fatalf("report clauses = %v", rep.Clauses)
	}
	rep, err = tr.Report(ctx, Filter{Department: "営業部"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Hosts) != 1 || rep.Hosts[0].Agent != "a2" || rep.Fleet["posture"].Rate != 1 {
		t.Fatalf("営業部 = %+v %+v", rep.Hosts, rep.Fleet)
	}

	for _, tc := range []struct{ q, param string }{
		{"control=printer", "control"},
		{"status=green", "status"},
		{"agent=a1&agent=a2", "agent"},
		{"host=pc-01", "host"},
	} {
		q, _ := url.ParseQuery(tc.q)
		_, err := ParseFilter(q)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != tc.param {
			t.Fatalf("ParseFilter(%s) = %v, want an error naming %s", tc.q, err, tc.param)
		}
		rec := httptest.NewRecorder()
		tr.ServeCompliance(rec, httptest.NewRequest("GET", PathCompliance+"?"+tc.q, nil))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tc.param) {
			t.Fatalf("GET ?%s = %d %s", tc.q, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	tr.ServeAlerts(rec, httptest.NewRequest("GET", PathAlerts+"?x=1", nil))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("alerts with a parameter = %d", rec.Code)
	}
}

func TestInvalidStatusIsUnknown(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir())
	defer store.Close()
	tr, err := New(Config{Events: store, Inventory: hostList{{Agent: "a1", Enrolled: time.Now(), Policy: pol(0, allAudit())}}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	a := &agentStream{id: "a1"}
	appendAll(t, store, "a1", a.status(t, "media", "green", "media.ok", time.Now()))
	rep, err := tr.Report(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if m := rep.Hosts[0].Controls["media"]; m.Status != Unknown || m.Reason != ReasonBadStatus || m.Index == nil {
		t.Fatalf("media = %+v", m)
	}
}

// counting counts the events Query hands out.
type counting struct {
	eventlog.Store
	mu sync.Mutex
	n  int
}

func (c *counting) Query(ctx context.Context, f eventlog.Filter) (eventlog.Page, error) {
	p, err := c.Store.Query(ctx, f)
	c.mu.Lock()
	c.n += len(p.Events)
	c.mu.Unlock()
	return p, err
}

func TestSnapshotSparesTheReplay(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := openStore(t, dir)
	defer store.Close()
	now := time.Now()
	var inv hostList
	for i := range 20 {
		id := "a" + strings.Repeat("x", i)
		inv = append(inv, HostInfo{Agent: id, Hostname: id, Enrolled: now, Policy: pol(0, allAudit())})
		a := &agentStream{id: id}
		var evs []event.Event
		for j := range 10 {
			st := Pass
			if (i+j)%3 == 0 {
				st = Fail
			}
			evs = append(evs, a.status(t, Controls[j%len(Controls)], st, "r", now))
		}
		appendAll(t, store, id, evs...)
	}
	path := filepath.Join(dir, "compliance.json")
	cfg := Config{Events: store, Inventory: inv, Log: zerolog.Nop(), SnapshotPath: path}
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.CheckAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	want, err := first.Report(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.SaveSnapshot(); err != nil {
		t.Fatal(err)
	}

	// One more status after the snapshot.
	late := &agentStream{id: "late"}
	cfg.Inventory = append(inv, HostInfo{Agent: "late", Hostname: "late", Enrolled: now, Policy: pol(0, allAudit())})
	appendAll(t, store, "late", late.status(t, "backup", Pass, "backup.ok", now))

	cnt := &counting{Store: store}
	cfg.Events = cnt
	second, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := second.Report(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	// Only the check of each cursor (one event each) and the new event.
	if cnt.n > len(streams())+1 {
		t.Fatalf("restart read %d events; the snapshot should spare the replay", cnt.n)
	}
	if len(got.Hosts) != len(want.Hosts)+1 {
		t.Fatalf("%d hosts, want %d", len(got.Hosts), len(want.Hosts)+1)
	}
	for i, h := range want.Hosts {
		for _, c := range Controls {
			if a, b := h.Controls[c], got.Hosts[i].Controls[c]; a.Status != b.Status || (a.Index == nil) != (b.Index == nil) || (a.Index != nil && *a.Index != *b.Index) {
				t.Fatalf("%s %s: %+v after restart, %+v before", h.Agent, c, b, a)
			}
		}
	}
	before := len(alertEvents(t, store))
	if err := second.CheckAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	if after := len(alertEvents(t, store)); after != before {
		t.Fatalf("restart from snapshot raised %d alerts again", after-before)
	}

	// A snapshot that does not match the store (another database) is
	// dropped and the log replayed.
	other := openStore(t, t.TempDir())
	defer other.Close()
	x := &agentStream{id: "ax"}
	appendAll(t, other, "ax", x.status(t, "posture", Fail, "posture.av_missing", now))
	third, err := New(Config{Events: other, Inventory: inv, Log: zerolog.Nop(), SnapshotPath: path})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := third.Report(ctx, Filter{Agent: "ax"})
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Hosts[0].Controls["posture"]; c.Status != Fail || c.Reason != "posture.av_missing" {
		t.Fatalf("posture from the other store = %+v", c)
	}
	third.mu.RLock()
	n := len(third.latest)
	third.mu.RUnlock()
	if n != 1 {
		t.Fatalf("a mismatched snapshot leaked %d agents' statuses", n)
	}
}

// growingInventory is an Inventory that PCs join while the tracker runs,
// counting its reads.
type growingInventory struct {
	mu    sync.Mutex
	hosts []HostInfo
	reads int
}

func (g *growingInventory) Hosts(context.Context) ([]HostInfo, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reads++
	return slices.Clone(g.hosts), nil
}

func (g *growingInventory) add(h HostInfo) {
	g.mu.Lock()
	g.hosts = append(g.hosts, h)
	g.mu.Unlock()
}

// A PC enrolled after the inventory was cached, whose first status fails
// (a new install reports its statuses at once), is alerted at the next
// check, not once the cache expires: the alert, and the mail behind it,
// would otherwise come up to InventoryTTL+AlertEvery late.
func TestNewlyEnrolledAgentAlertedWithoutWaitingForTheInventoryCache(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir())
	defer store.Close()
	now := time.Now()
	inv := &growingInventory{hosts: []HostInfo{{Agent: "a1", Hostname: "pc-01", Enrolled: now, Policy: pol(time.Hour, allAudit())}}}
	tr, err := New(Config{Events: store, Inventory: inv, InventoryTTL: time.Hour, Poll: time.Millisecond, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.CheckAlerts(ctx); err != nil { // caches the inventory without a2
		t.Fatal(err)
	}
	inv.add(HostInfo{Agent: "a2", Hostname: "pc-02", Department: "営業部", Enrolled: now, Policy: pol(time.Hour, allAudit())})
	a2 := &agentStream{id: "a2"}
	appendAll(t, store, "a2", a2.status(t, "screenlock", Fail, "screenlock.timeout_too_long", now))
	time.Sleep(5 * time.Millisecond) // older than one Poll: the tracker may read the inventory again
	if err := tr.CheckAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	alerts := alertEvents(t, store)
	if len(alerts) != 1 || alerts[0].Attrs["agent"] != "a2" || alerts[0].Attrs["hostname"] != "pc-02" {
		t.Fatalf("alerts after the new PC's failing status: %+v", alerts)
	}
	// Known agents do not make it read the inventory again.
	reads := inv.reads
	time.Sleep(5 * time.Millisecond)
	appendAll(t, store, "a2", a2.status(t, "backup", Fail, "backup.overdue", now))
	if err := tr.CheckAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	if inv.reads != reads || len(alertEvents(t, store)) != 2 {
		t.Errorf("inventory read %d more times, %d alerts", inv.reads-reads, len(alertEvents(t, store)))
	}
}

// TestSinceKeptAcrossAgentRestart: an agent re-sends its statuses at start
// with since = the start time (its StatusReporter begins afresh). While the
// state and reason stay the same the server keeps the since of the first
// report of the run, so 発生日時 and the exception runs in reports do not
// move on every restart; live, after a snapshot restart of the server and
// on a replay of the log alike. A change of state or reason starts a new
// since.
func TestSinceKeptAcrossAgentRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := openStore(t, dir)
	defer store.Close()
	clk := &clock{t: time.Now().Truncate(time.Second)}
	inv := hostList{{Agent: "a1", Hostname: "pc-01", Enrolled: clk.Now().Add(-48 * time.Hour), Policy: pol(0, allAudit())}}
	path := filepath.Join(dir, "compliance.json")
	newTracker := func(snapshot string) *Tracker {
		tr, err := New(Config{Events: store, Inventory: inv, Now: clk.Now, Log: zerolog.Nop(), SnapshotPath: snapshot})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	since := func(tr *Tracker) (ControlState, time.Time) {
		t.Helper()
		rep, err := tr.Report(ctx, Filter{Agent: "a1", Control: "posture"})
		if err != nil {
			t.Fatal(err)
		}
		c := rep.Hosts[0].Controls["posture"]
		if c.Since == nil {
			t.Fatalf("posture without since: %+v", c)
		}
		return c, *c.Since
	}
	a := &agentStream{id: "a1"}
	first := clk.Now().Add(-24 * time.Hour)
	restart := clk.Now().Add(-time.Hour)
	tr := newTracker(path)

	appendAll(t, store, "a1", a.status(t, "posture", Fail, "posture.disk_not_encrypted", first))
	if _, s := since(tr); !s.Equal(first) {
		t.Fatalf("first report: since %v, want %v", s, first)
	}
	// The hourly re-report keeps the agent's since anyway.
	appendAll(t, store, "a1", a.status(t, "posture", Fail, "posture.disk_not_encrypted", first))
	// The agent restarts: same state and reason, since = restart time.
	appendAll(t, store, "a1", a.status(t, "posture", Fail, "posture.disk_not_encrypted", restart))
	c, s := since(tr)
	if !s.Equal(first) {
		t.Fatalf("after the agent's restart: since %v (the restart), want %v (the first report)", s, first)
	}
	if c.Time == nil || !c.Time.Equal(restart) {
		t.Fatalf("state not from the newest event: %+v", c)
	}
	if err := tr.SaveSnapshot(); err != nil {
		t.Fatal(err)
	}

	// A server restart, from the snapshot and by replaying the log, agrees.
	appendAll(t, store, "a1", a.status(t, "posture", Fail, "posture.disk_not_encrypted", restart.Add(30*time.Minute)))
	for name, tr := range map[string]*Tracker{"snapshot": newTracker(path), "replay": newTracker("")} {
		if _, s := since(tr); !s.Equal(first) {
			t.Fatalf("server restart (%s): since %v, want %v", name, s, first)
		}
	}

	// Another reason is another status: its since is its own.
	other := clk.Now().Add(-30 * time.Minute)
	appendAll(t, store, "a1", a.status(t, "posture", Fail, "posture.firewall_off", other))
	if _, s := since(tr); !s.Equal(other) {
		t.Fatalf("new reason: since %v, want %v", s, other)
	}
	// So is another state, and coming back to the old one starts anew.
	pass := clk.Now().Add(-20 * time.Minute)
	appendAll(t, store, "a1", a.status(t, "posture", Pass, "posture.ok", pass))
	again := clk.Now().Add(-10 * time.Minute)
	appendAll(t, store, "a1", a.status(t, "posture", Fail, "posture.firewall_off", again))
	if _, s := since(tr); !s.Equal(again) {
		t.Fatalf("fail again after a pass: since %v, want %v", s, again)
	}
}
