package fileaccess

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/controlstest"
	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// runOnSpool runs the control on a real spool at path until the returned
// stop is called; stop closes the spool and returns every stored event.
func runOnSpool(t *testing.T, path string, pol *policy.Policy) (sp *spool.Spool, stop func() []event.Event) {
	t.Helper()
	sp, _, stop = runControlOnSpool(t, path, pol)
	return sp, stop
}

// runControlOnSpool is runOnSpool that also gives the control, for a test
// that applies another policy while it runs.
func runControlOnSpool(t *testing.T, path string, pol *policy.Policy) (sp *spool.Spool, c *Control, stop func() []event.Event) {
	t.Helper()
	sp, err := spool.Open(path, spool.Options{Agent: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	env := controls.Env{Emit: sp, Clock: controls.RealClock{}, Log: zerolog.Nop(), StateDir: t.TempDir()}
	c = newControl(env, &fakeProbe{err: fmt.Errorf("none: %w", errors.ErrUnsupported)})
	if err := c.Apply(context.Background(), pol); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return sp, c, func() []event.Event {
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
}

func waitSpool(t *testing.T, sp *spool.Spool, what string, ok func([]event.Event) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs, err := sp.Peek(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		if ok(evs) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The folders' snapshot is saved with the events: what changes while the
// control is not running is reported at the next start, once per change,
// marked while_agent_stopped with the window from the last stored event to
// the comparison; what was recorded before the stop is not reported again.
func TestChangesWhileStoppedReportedAtStart(t *testing.T) {
	root := t.TempDir()
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	p := pol(func(f *policy.FileAccess) { f.Folders = []policy.Folder{{Path: root, RegisterID: "PI-1"}} })
	keep, gone, mod := filepath.Join(root, "keep.csv"), filepath.Join(root, "gone.csv"), filepath.Join(root, "mod.csv")
	for _, f := range []string{keep, gone, mod} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sp, stop := runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs, "fileaccess.status", "") != nil })
	live := filepath.Join(root, "live.csv")
	os.WriteFile(live, []byte("live"), 0o644)
	waitSpool(t, sp, "live create", func(evs []event.Event) bool { return find(evs, TypeCreated, live) != nil })
	first := stop()
	lastBefore := first[len(first)-1].Time

	// Stopped: create (in a new folder too), modify, delete.
	time.Sleep(20 * time.Millisecond)
	sub := filepath.Join(root, "sub")
	os.Mkdir(sub, 0o755)
	made := filepath.Join(sub, "made.csv")
	os.WriteFile(made, []byte("new"), 0o644)
	os.WriteFile(mod, []byte("longer"), 0o644)
	os.Remove(gone)

	sp, stop = runOnSpool(t, dbPath, p)
	if prev := sp.Previous(); !prev.Time.Equal(lastBefore) {
		t.Fatalf("previous %+v, last event before the stop at %v", prev, lastBefore)
	}
	want := []string{TypeCreated + " " + sub, TypeCreated + " " + made, TypeModified + " " + mod, TypeDeleted + " " + gone}
	sort.Strings(want)
	var got []string
	waitSpool(t, sp, "changes while stopped", func(evs []event.Event) bool {
		got = got[:0]
		for _, e := range evs[len(first):] {
			if e.Control == Name && strings.HasPrefix(e.Type, "file.") {
				got = append(got, e.Type+" "+e.Object)
			}
		}
		sort.Strings(got)
		return len(got) >= len(want)
	})
	time.Sleep(300 * time.Millisecond) // nothing else may follow
	evs := stop()
	got = got[:0]
	for _, e := range evs[len(first):] {
		if e.Control != Name || !strings.HasPrefix(e.Type, "file.") {
			continue
		}
		got = append(got, e.Type+" "+e.Object)
		if e.Attrs["attribution_source"] != sourceWhileStopped || e.Attrs["reconciled"] != true || e.User != "" {
			t.Fatalf("not marked: %+v", e)
		}
		from, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(e.Attrs["window_from"]))
		to, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(e.Attrs["window_to"]))
		if !from.Equal(lastBefore) || !to.After(from) || e.RegisterID != "PI-1" {
			t.Fatalf("window %v..%v (last before %v): %+v", from, to, lastBefore, e)
		}
	}
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after restart:\n got  %q\n want %q", got, want)
	}

	// A third start with nothing changed reports nothing.
	n := len(evs)
	sp, stop = runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs[n:], "fileaccess.status", "") != nil })
	time.Sleep(300 * time.Millisecond)
	for _, e := range stop()[n:] {
		if strings.HasPrefix(e.Type, "file.") {
			t.Fatalf("unchanged folder reported %+v", e)
		}
	}
}

// A saved snapshot that cannot be read (a damaged or edited entry) is not
// compared with the disk, since that would invent changes; but the log says
// that changes made while the agent was stopped cannot be reported for that
// folder, with the window, instead of only the agent's local log. The new
// baseline then works as before.
func TestUnusableSnapshotIsReported(t *testing.T) {
	root := t.TempDir()
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	p := pol(func(f *policy.FileAccess) { f.Folders = []policy.Folder{{Path: root, RegisterID: "PI-2"}} })
	f := filepath.Join(root, "名簿.csv")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sp, stop := runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs, "fileaccess.status", "") != nil })
	first := stop()
	lastBefore := first[len(first)-1].Time

	sp, err := spool.Open(dbPath, spool.Options{Agent: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.SaveState(spool.State{Bucket: bucketSnapshot, Puts: map[string][]byte{f: []byte("damaged")}}); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	os.WriteFile(f, []byte("changed while stopped"), 0o644)

	sp, stop = runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "the unusable snapshot reported", func(evs []event.Event) bool {
		return find(evs[len(first):], TypeError, root) != nil
	})
	time.Sleep(300 * time.Millisecond) // nothing invented may follow
	evs := stop()
	n := len(evs)
	e := find(evs[len(first):], TypeError, root)
	from, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(e.Attrs["window_from"]))
	if e.Severity != event.Warning || e.RegisterID != "PI-2" || !from.Equal(lastBefore) ||
		!strings.Contains(fmt.Sprint(e.Attrs["error"]), "saved snapshot") || e.Attrs["window_to"] == nil {
		t.Fatalf("error event %+v (last event before the stop %v)", e, lastBefore)
	}
	for _, e := range evs[len(first):] {
		if strings.HasPrefix(e.Type, "file.") {
			t.Fatalf("reported from an unusable snapshot: %+v", e)
		}
	}

	// The new baseline is saved: the next stop's changes are found.
	os.Remove(f)
	sp, stop = runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "delete while stopped", func(evs []event.Event) bool { return find(evs[n:], TypeDeleted, f) != nil })
	stop()
}

// TestRootAppearingLaterReportsItsFiles: a watched folder that does not
// exist when the policy arrives and is made later holds nothing known, so
// the files written into it before the control notices it (the 30 s check;
// here a policy applied again) are reported as file.created, reconciled,
// not taken silently as the baseline. With a spool each file's entry is
// saved with its event: a restart reports nothing.
func TestRootAppearingLaterReportsItsFiles(t *testing.T) {
	for _, spooled := range []bool{false, true} {
		t.Run(fmt.Sprintf("spool=%v", spooled), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "data")
			dbPath := filepath.Join(t.TempDir(), "spool.db")
			p := pol(func(f *policy.FileAccess) { f.Paths = []string{root} })
			rec := &controlstest.Recorder{}
			var emit controls.Emitter = rec
			var sp *spool.Spool
			if spooled {
				var err error
				if sp, err = spool.Open(dbPath, spool.Options{Agent: "agent-1"}); err != nil {
					t.Fatal(err)
				}
				emit = sp
			}
			events := func() []event.Event {
				if sp == nil {
					return rec.Events()
				}
				evs, err := sp.Peek(1 << 20)
				if err != nil {
					t.Fatal(err)
				}
				return evs
			}
			wait := func(what string, ok func([]event.Event) bool) []event.Event {
				t.Helper()
				for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					if evs := events(); ok(evs) {
						return evs
					} else if time.Now().After(deadline) {
						t.Fatalf("timed out waiting for %s: %v", what, evs)
					}
				}
			}
			env := controls.Env{Emit: emit, Clock: controls.RealClock{}, Log: zerolog.Nop(), StateDir: t.TempDir()}
			c := newControl(env, &fakeProbe{err: fmt.Errorf("none: %w", errors.ErrUnsupported)})
			if err := c.Apply(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			wait("root_missing", func(evs []event.Event) bool {
				e := find(evs, "fileaccess.status", "")
				return e != nil && e.Attrs["reason"] == "fileaccess.root_missing"
			})

			sub := filepath.Join(root, "2026")
			early := filepath.Join(sub, "名簿.csv")
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(early, []byte("氏名\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := c.Apply(context.Background(), p); err != nil { // as the periodic check would
				t.Fatal(err)
			}
			evs := wait("created", func(evs []event.Event) bool {
				return find(evs, TypeCreated, early) != nil && find(evs, TypeCreated, sub) != nil
			})
			if e := find(evs, TypeCreated, early); e.Attrs["reconciled"] != true || e.Attrs["attribution_source"] != nil {
				t.Fatalf("created %+v; want reconciled, not while_agent_stopped", e)
			}
			late := filepath.Join(root, "late.csv")
			os.WriteFile(late, []byte("x"), 0o644)
			wait("late", func(evs []event.Event) bool { return find(evs, TypeCreated, late) != nil })
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if sp == nil {
				return
			}
			n := len(events())
			sp.Close()
			sp, stop := runOnSpool(t, dbPath, p)
			waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs[n:], "fileaccess.status", "") != nil })
			time.Sleep(300 * time.Millisecond)
			for _, e := range stop()[n:] {
				if strings.HasPrefix(e.Type, "file.") {
					t.Fatalf("after a restart: %s %s %v", e.Type, e.Object, e.Attrs)
				}
			}
		})
	}
}
