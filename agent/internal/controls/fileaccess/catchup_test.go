package fileaccess

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/controlstest"
	"github.com/mamori/mamori/agent/internal/fswatch"
	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// TestCatchUpSummaryCarriesWindow: more changes made while the agent was
// stopped than bulk_threshold are summarised in one fileaccess.bulk at the
// next start; like the single events it says they happened while the agent
// was stopped and gives the window (window_from: the agent's last stored
// event before the stop, window_to: the comparison), so an auditor can tell
// when they could have happened.
func TestCatchUpSummaryCarriesWindow(t *testing.T) {
	root := t.TempDir()
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	p := pol(func(f *policy.FileAccess) {
		f.Folders = []policy.Folder{{Path: root, RegisterID: "PI-3"}}
		f.BulkThreshold = 2
		f.BulkWindow = policy.Duration(time.Hour) // closed by the stop, however slow the machine
	})
	sp, stop := runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs, "fileaccess.status", "") != nil })
	first := stop()
	lastBefore := first[len(first)-1].Time

	const n = 6
	for i := range n {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%d.csv", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sp, stop = runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "individual events", func(evs []event.Event) bool {
		k := 0
		for _, e := range evs[len(first):] {
			if e.Type == TypeCreated {
				k++
			}
		}
		return k == 2
	})
	evs := stop()[len(first):] // the stop closes the bulk window
	b := find(evs, TypeBulk, root)
	if b == nil {
		t.Fatalf("no summary in %v", evs)
	}
	single := find(evs, TypeCreated, "")
	if fmt.Sprint(b.Attrs["suppressed"]) != fmt.Sprint(n-2) || fmt.Sprint(b.Attrs["total"]) != fmt.Sprint(n) || b.RegisterID != "PI-3" {
		t.Fatalf("summary %+v", b)
	}
	from, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(b.Attrs["window_from"]))
	to, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(b.Attrs["window_to"]))
	if b.Attrs["attribution_source"] != sourceWhileStopped || !from.Equal(lastBefore) || !to.After(from) ||
		b.Attrs["window_to"] != single.Attrs["window_to"] {
		t.Fatalf("summary %v; want attribution_source %s, window %v .. %v (of the single events)",
			b.Attrs, sourceWhileStopped, lastBefore, single.Attrs["window_to"])
	}
	if s := fmt.Sprint(b.Attrs["summary"]); !strings.Contains(s, "while the agent was stopped") {
		t.Fatalf("summary %q does not say when", s)
	}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestCatchUpSummaryNotMixedWithLive: changes found at start and live
// changes of the same folder are not counted in one summary, else the
// window would be claimed for changes the agent saw happen (or lost for
// those it did not): a live change closes the catch-up window, and each
// summary's individually and total count its own kind only.
func TestCatchUpSummaryNotMixedWithLive(t *testing.T) {
	root := t.TempDir()
	rec := &controlstest.Recorder{}
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	clk := controlstest.NewFakeClock(t0)
	c := newControl(controls.Env{Emit: rec, Clock: clk, Log: zerolog.Nop()}, &fakeProbe{})
	r := &runner{c: c, cfg: config{threshold: 2, window: time.Minute, folders: []folder{{path: root}}},
		roots: map[string]*rootState{root: {folder: folder{path: root}}}, recent: map[string][]access{},
		offline: map[string]window{root: {from: t0.Add(-time.Hour), to: t0}}}
	ctx := context.Background()
	ch := func(i int, prior bool) fswatch.Change {
		return fswatch.Change{Op: fswatch.Created, Path: filepath.Join(root, fmt.Sprintf("f%d.csv", i)), Root: root,
			Count: 1, Prior: prior, Reconciled: prior}
	}
	for i := range 5 {
		r.record(ctx, ch(i, true))
	}
	clk.Advance(time.Second)
	for i := 5; i < 8; i++ {
		r.record(ctx, ch(i, false))
	}
	r.closeBulks(ctx)

	var sums []event.Event
	for _, e := range rec.Events() {
		if e.Type == TypeBulk {
			sums = append(sums, e)
		}
	}
	if len(sums) != 2 {
		t.Fatalf("%d summaries, want 2 (catch-up, live): %v", len(sums), sums)
	}
	cu, live := sums[0], sums[1]
	if cu.Attrs["attribution_source"] != sourceWhileStopped || num(cu.Attrs["suppressed"]) != 3 || num(cu.Attrs["total"]) != 5 ||
		cu.Attrs["window_from"] != t0.Add(-time.Hour).Format(time.RFC3339Nano) || cu.Attrs["window_to"] != t0.Format(time.RFC3339Nano) {
		t.Fatalf("catch-up summary %v", cu.Attrs)
	}
	if live.Attrs["attribution_source"] != nil || live.Attrs["window_from"] != nil || live.Attrs["window_to"] != nil ||
		num(live.Attrs["suppressed"]) != 1 || num(live.Attrs["total"]) != 3 {
		t.Fatalf("live summary %v", live.Attrs)
	}
	if k := len(rec.OfType(TypeCreated)); k != 4 {
		t.Fatalf("%d created one by one, want 2 + 2", k)
	}
}

// TestOutageFromBaseline: an agent killed after taking a folder's baseline
// but before storing any event leaves no previous event; the window of the
// changes found at the next start then starts at the saved baseline's time,
// the last moment the agent is known to have seen the folder.
func TestOutageFromBaseline(t *testing.T) {
	root := t.TempDir()
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	sp, err := spool.Open(dbPath, spool.Options{Agent: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Minute).UTC()
	if err := saveBaseline(sp, root, nil, map[string]fswatch.Entry{}, base); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	f := filepath.Join(root, "名簿.csv")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sp, stop := runOnSpool(t, dbPath, pol(func(fa *policy.FileAccess) { fa.Paths = []string{root} }))
	if prev := sp.Previous(); !prev.Time.IsZero() {
		t.Fatalf("previous %+v, want none", prev)
	}
	waitSpool(t, sp, "created while stopped", func(evs []event.Event) bool { return find(evs, TypeCreated, f) != nil })
	e := find(stop(), TypeCreated, f)
	if e.Attrs["attribution_source"] != sourceWhileStopped || e.Attrs["window_from"] != base.Format(time.RFC3339Nano) {
		t.Fatalf("created %v; want while_agent_stopped from the baseline %v", e.Attrs, base)
	}
}

// TestLaterWatcherIsNotWhileStopped: the outage window belongs to the
// comparison made at start. A later watcher (a policy that changes the
// exclusions or the debounce, or a watcher that failed) also compares
// with the saved snapshot, but what it finds happened while the agent ran:
// reconciled, without the start's window.
func TestLaterWatcherIsNotWhileStopped(t *testing.T) {
	root := t.TempDir()
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	p1 := pol(func(f *policy.FileAccess) { f.Paths, f.Exclude = []string{root}, []string{"*.tmp"} })
	_, stop := runOnSpool(t, dbPath, p1)
	stop() // the baseline

	sp, c, stop := runControlOnSpool(t, dbPath, p1)
	defer stop()
	ready := filepath.Join(root, "ready.csv")
	if err := os.WriteFile(ready, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSpool(t, sp, "the second start watching", func(evs []event.Event) bool { return find(evs, TypeCreated, ready) != nil })
	f := filepath.Join(root, "作業中.tmp") // excluded: no event, not in the saved snapshot
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	p2 := pol(func(fa *policy.FileAccess) { fa.Paths, fa.Exclude = []string{root}, []string{} })
	if err := c.Apply(context.Background(), p2); err != nil {
		t.Fatal(err)
	}
	waitSpool(t, sp, "the file the new watcher finds", func(evs []event.Event) bool { return find(evs, TypeCreated, f) != nil })
	evs, err := sp.Peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	e := find(evs, TypeCreated, f)
	if e.Attrs["attribution_source"] == sourceWhileStopped || e.Attrs["window_from"] != nil || e.Attrs["reconciled"] != true {
		t.Fatalf("created %v; want reconciled, not while the agent was stopped", e.Attrs)
	}
}
