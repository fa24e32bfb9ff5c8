package fileaccess

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// fullDisk is a spool whose disk is full while full is set: every event is
// refused, as the spool refuses a commit that fails with ENOSPC.
type fullDisk struct {
	*spool.Spool
	mu      sync.Mutex
	full    bool
	refused []event.Event
	first   time.Time // of the first refusal
}

var errNoSpace = errors.New("spool: commit failed: write spool.db: no space left on device")

func (d *fullDisk) setFull(full bool) { d.mu.Lock(); d.full = full; d.mu.Unlock() }

func (d *fullDisk) refuse(e event.Event) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.full {
		return false
	}
	if d.first.IsZero() {
		d.first = time.Now()
	}
	d.refused = append(d.refused, e)
	return true
}

func (d *fullDisk) refusedEvents() ([]event.Event, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]event.Event(nil), d.refused...), d.first
}

func (d *fullDisk) Emit(ctx context.Context, e event.Event) error {
	if d.refuse(e) {
		return errNoSpace
	}
	return d.Spool.Emit(ctx, e)
}

func (d *fullDisk) EmitState(ctx context.Context, e event.Event, st *spool.State) error {
	if d.refuse(e) {
		return errNoSpace
	}
	return d.Spool.EmitState(ctx, e, st)
}

// TestRefusedEventsResyncedWithoutRestart: changes the agent saw while the
// spool refused their events (disk full; here two single events and the
// fileaccess.bulk of three more) are found again without a restart once the
// spool stores events again, by comparing the saved snapshot with the
// folder, and reported as not_recorded (not while_agent_stopped: the agent
// was running) with the window from the first refused change to the
// comparison; a later restart finds nothing more.
func TestRefusedEventsResyncedWithoutRestart(t *testing.T) {
	root := t.TempDir()
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	p := pol(func(f *policy.FileAccess) {
		f.Folders = []policy.Folder{{Path: root, RegisterID: "PI-4"}}
		f.BulkThreshold = 2
		f.BulkWindow = policy.Duration(500 * time.Millisecond)
	})
	sp, err := spool.Open(dbPath, spool.Options{Agent: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	d := &fullDisk{Spool: sp}
	c := newControl(controls.Env{Emit: d, Clock: controls.RealClock{}, Log: zerolog.Nop(), StateDir: t.TempDir()},
		&fakeProbe{err: fmt.Errorf("none: %w", errors.ErrUnsupported)})
	if err := c.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop := func() []event.Event {
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		evs, err := sp.Peek(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		sp.Close()
		return evs
	}
	defer func() {
		if !stopped {
			stop()
		}
	}()
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs, "fileaccess.status", "") != nil })

	d.setFull(true)
	fullAt := time.Now()
	const n = 5
	var files []string
	for i := range n {
		f := filepath.Join(root, fmt.Sprintf("f%d.csv", i))
		files = append(files, f)
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		refused, _ := d.refusedEvents()
		if find(refused, TypeBulk, root) != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the summary was not refused: %v", refused)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.setFull(false)
	openAt := time.Now()
	trigger := filepath.Join(root, "trigger.csv") // the next change: stored
	if err := os.WriteFile(trigger, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	notRecorded := func(e event.Event) bool { return e.Attrs["attribution_source"] == sourceNotRecorded }
	waitSpool(t, sp, "the refused changes, without a restart", func(evs []event.Event) bool {
		for _, e := range evs {
			if e.Type == TypeBulk && notRecorded(e) {
				return true
			}
		}
		return false
	})
	first := stop()
	_, firstRefusal := d.refusedEvents()

	var sum *event.Event
	created := map[string]int{}
	for i, e := range first {
		if e.Attrs["attribution_source"] == sourceWhileStopped {
			t.Errorf("%s %s reported while_agent_stopped: %v", e.Type, e.Object, e.Attrs)
		}
		switch {
		case e.Type == TypeBulk && notRecorded(e):
			sum = &first[i]
		case e.Type == TypeCreated:
			created[e.Object]++
			if e.Object == trigger {
				if e.Attrs["attribution_source"] != nil || e.Attrs["window_from"] != nil {
					t.Errorf("live change %v", e.Attrs)
				}
				continue
			}
			if !notRecorded(e) || e.Attrs["reconciled"] != true || e.RegisterID != "PI-4" {
				t.Errorf("created %s %v; want not_recorded, reconciled", e.Object, e.Attrs)
			}
		}
	}
	if sum == nil {
		t.Fatal("no not_recorded summary")
	}
	if fmt.Sprint(sum.Attrs["total"]) != fmt.Sprint(n) || fmt.Sprint(sum.Attrs["suppressed"]) != fmt.Sprint(n-2) || sum.RegisterID != "PI-4" {
		t.Fatalf("summary %v; want %d changes", sum.Attrs, n)
	}
	if s := fmt.Sprint(sum.Attrs["summary"]); !strings.Contains(s, "could not record") {
		t.Fatalf("summary %q does not say why", s)
	}
	from, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(sum.Attrs["window_from"]))
	to, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(sum.Attrs["window_to"]))
	if err1 != nil || err2 != nil || from.After(firstRefusal) || from.Before(fullAt.Add(-5*time.Second)) || to.Before(openAt) {
		t.Fatalf("summary window %v .. %v; want from before the first refusal %v (disk full at %v), to after %v",
			sum.Attrs["window_from"], sum.Attrs["window_to"], firstRefusal, fullAt, openAt)
	}
	if err := sum.Validate(); err != nil {
		t.Fatal(err)
	}
	k := 0
	for _, f := range files {
		k += created[f]
		if created[f] > 1 {
			t.Errorf("%s created %d times", f, created[f])
		}
	}
	if k != 2 || created[trigger] != 1 {
		t.Fatalf("created one by one: %v; want 2 refused changes and the trigger", created)
	}
	for _, e := range first {
		if e.Type == TypeCreated && notRecorded(e) && (e.Attrs["window_from"] != sum.Attrs["window_from"] || e.Attrs["window_to"] != sum.Attrs["window_to"]) {
			t.Errorf("created %s window %v .. %v, summary's %v .. %v", e.Object, e.Attrs["window_from"], e.Attrs["window_to"],
				sum.Attrs["window_from"], sum.Attrs["window_to"])
		}
	}

	// The saved snapshot is current: a restart finds nothing more.
	sp2, stop2 := runOnSpool(t, dbPath, p)
	waitSpool(t, sp2, "status after the restart", func(evs []event.Event) bool {
		return len(evs) > len(first) && find(evs[len(first):], "fileaccess.status", "") != nil
	})
	for _, e := range stop2()[len(first):] {
		if strings.HasPrefix(e.Type, "file.") || e.Type == TypeBulk {
			t.Errorf("after the restart: %s %s %v", e.Type, e.Object, e.Attrs)
		}
	}
}

// TestResyncOfAnIdleFolder: when no event follows the refused ones (the
// folder is idle once the disk has room again), the comparison is tried
// checkInterval after the last refusal, not before; the folder is still
// watched after it.
func TestResyncOfAnIdleFolder(t *testing.T) {
	root := t.TempDir()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{Agent: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	d := &fullDisk{Spool: sp}
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	clk := controlstest.NewFakeClock(t0)
	c := newControl(controls.Env{Emit: d, Clock: clk, Log: zerolog.Nop()}, &fakeProbe{})
	const debounce = 100 * time.Millisecond
	r := &runner{c: c, cfg: config{mode: policy.Audit, threshold: 100, window: time.Minute, debounce: debounce,
		folders: []folder{{path: root, registerID: "PI-5"}}},
		roots: map[string]*rootState{root: {folder: folder{path: root, registerID: "PI-5"}, watched: true}},
		reads: map[readKey]*readAgg{}, recent: map[string][]access{}, seen: map[string]bool{},
		offline: map[string]window{}, store: d}
	w, err := fswatch.New(fswatch.Options{Debounce: debounce, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	defer w.Close()
	ctx := context.Background()
	if err := r.addRoot(ctx, root, false); err != nil {
		t.Fatal(err)
	}
	next := func() fswatch.Change {
		t.Helper()
		select {
		case ch := <-w.Changes():
			return ch
		case <-time.After(10 * time.Second):
			t.Fatal("no change from the watcher")
		}
		panic("unreachable")
	}

	d.setFull(true)
	f := filepath.Join(root, "名簿.csv")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.change(ctx, next()) // refused
	if refused, _ := d.refusedEvents(); find(refused, TypeCreated, f) == nil {
		t.Fatalf("refused %v", refused)
	}
	d.setFull(false)
	clk.Advance(time.Second)
	r.resync(ctx)
	if evs, _ := sp.Peek(100); len(evs) != 0 {
		t.Fatalf("resync before checkInterval: %v", evs)
	}
	clk.Advance(checkInterval)
	r.resync(ctx)
	r.change(ctx, next())
	evs, err := sp.Peek(100)
	if err != nil {
		t.Fatal(err)
	}
	e := find(evs, TypeCreated, f)
	if e == nil || len(evs) != 1 {
		t.Fatalf("events %v; want the created file", evs)
	}
	if e.Attrs["attribution_source"] != sourceNotRecorded || e.RegisterID != "PI-5" ||
		e.Attrs["window_from"] != t0.Add(-20*debounce).Format(time.RFC3339Nano) ||
		e.Attrs["window_to"] != t0.Add(time.Second+checkInterval).Format(time.RFC3339Nano) {
		t.Fatalf("created %v; want not_recorded from %v to %v", e.Attrs, t0.Add(-20*debounce), t0.Add(time.Second+checkInterval))
	}
	if len(r.behind) != 0 {
		t.Fatalf("still behind: %v", r.behind)
	}

	g := filepath.Join(root, "live.csv")
	if err := os.WriteFile(g, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.change(ctx, next())
	evs, _ = sp.Peek(100)
	if e := find(evs, TypeCreated, g); e == nil || e.Attrs["attribution_source"] != nil {
		t.Fatalf("events %v; want %s created live", evs, g)
	}
}
