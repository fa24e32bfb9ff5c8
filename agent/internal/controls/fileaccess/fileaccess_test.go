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
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// fakeProbe delivers accesses the test makes up, like fanotify or 4663 would.
type fakeProbe struct {
	out   chan access
	delay time.Duration
	err   error

	mu     sync.Mutex
	roots  []string
	acked  uint64
	onAck  func(rec uint64) // runs in the control's goroutine
	cursor recordCursor     // what a real probe would persist
}

func (p *fakeProbe) setRoots(_ context.Context, roots []string, _ bool) (string, error) {
	p.mu.Lock()
	p.roots = roots
	p.mu.Unlock()
	return "fake", p.err
}
func (p *fakeProbe) accesses() <-chan access  { return p.out }
func (p *fakeProbe) joinDelay() time.Duration { return p.delay }
func (p *fakeProbe) close() error             { return nil }

func (p *fakeProbe) ack(rec uint64) {
	p.cursor.ack(rec)
	p.mu.Lock()
	if rec < p.acked {
		panic(fmt.Sprintf("ack went back from %d to %d", p.acked, rec))
	}
	p.acked = rec
	f := p.onAck
	p.mu.Unlock()
	if f != nil {
		f(rec)
	}
}

// send hands an access out as a Security-log probe does: noted in flight first.
func (p *fakeProbe) send(a access) {
	p.cursor.handOut(a.Record)
	p.out <- a
}

func (p *fakeProbe) ackedUpTo() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked
}

type harness struct {
	t    *testing.T
	c    *Control
	rec  *controlstest.Recorder
	stop func()
}

func start(t *testing.T, p probe, pol *policy.Policy) *harness {
	t.Helper()
	return startTuned(t, p, pol, func(*Control) {})
}

// startTuned is start with the control adjusted before it runs.
func startTuned(t *testing.T, p probe, pol *policy.Policy, tune func(*Control)) *harness {
	t.Helper()
	rec := &controlstest.Recorder{}
	env := controls.Env{Emit: rec, Clock: controls.RealClock{}, Log: zerolog.Nop(), StateDir: t.TempDir()}
	c := newControl(env, p)
	tune(c)
	if err := c.Apply(context.Background(), pol); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	h := &harness{t: t, c: c, rec: rec}
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() {
		if h.stop != nil {
			h.stop()
			h.stop = nil
		}
	})
	return h
}

func pol(mut func(*policy.FileAccess)) *policy.Policy {
	p := &policy.Policy{APIVersion: policy.APIVersion, Kind: policy.Kind, Name: "t"}
	p.Controls.FileAccess = policy.FileAccess{Mode: policy.Audit, Debounce: policy.Duration(100 * time.Millisecond)}
	if mut != nil {
		mut(&p.Controls.FileAccess)
	}
	p.Normalize()
	return p
}

// waitFor polls until ok holds for the recorded events.
func (h *harness) waitFor(what string, ok func([]event.Event) bool) []event.Event {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs := h.rec.Events()
		if ok(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			var s []string
			for _, e := range evs {
				s = append(s, fmt.Sprintf("%s %s %v", e.Type, e.Object, e.Attrs))
			}
			h.t.Fatalf("timed out waiting for %s; events:\n%s", what, strings.Join(s, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func find(evs []event.Event, typ, object string) *event.Event {
	for i := range evs {
		if evs[i].Type == typ && (object == "" || evs[i].Object == object) {
			return &evs[i]
		}
	}
	return nil
}

func (h *harness) waitEvent(typ, object string) event.Event {
	h.t.Helper()
	evs := h.waitFor(typ+" "+object, func(evs []event.Event) bool { return find(evs, typ, object) != nil })
	return *find(evs, typ, object)
}

func (h *harness) waitStatus(state controls.State, reason string) event.Event {
	h.t.Helper()
	evs := h.waitFor("status "+string(state)+" "+reason, func(evs []event.Event) bool {
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Type == "fileaccess.status" {
				return evs[i].Attrs["status"] == string(state) && (reason == "" || evs[i].Attrs["reason"] == reason)
			}
		}
		return false
	})
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == "fileaccess.status" {
			return evs[i]
		}
	}
	panic("unreachable")
}

func num(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	}
	panic(fmt.Sprintf("not a number: %T %v", v, v))
}

func TestRecordsChangesInRegisteredFolder(t *testing.T) {
	root := t.TempDir()
	h := start(t, &fakeProbe{err: fmt.Errorf("none: %w", errors.ErrUnsupported)}, pol(func(f *policy.FileAccess) {
		f.Folders = []policy.Folder{{Path: root, RegisterID: "PI-0001"}}
	}))
	st := h.waitStatus(controls.Pass, "fileaccess.watching")
	if !strings.Contains(fmt.Sprint(st.Attrs["attribution"]), "unavailable") {
		t.Fatalf("status attrs %v", st.Attrs)
	}
	deep := filepath.Join(root, "営業", "2026")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(deep, "名簿.csv")
	os.WriteFile(f, []byte("a,b\n"), 0o644)
	e := h.waitEvent(TypeCreated, f)
	if e.RegisterID != "PI-0001" || e.Control != Name || num(e.Attrs["size"]) != 4 || num(e.Attrs["count"]) < 1 || e.Severity != event.Info {
		t.Fatalf("created event %+v", e)
	}
	h.waitEvent(TypeCreated, deep)

	os.WriteFile(f, []byte("a,b\nc,d\n"), 0o644)
	if e := h.waitEvent(TypeModified, f); num(e.Attrs["size"]) != 8 {
		t.Fatalf("modified %+v", e)
	}
	g := filepath.Join(deep, "名簿2.csv")
	os.Rename(f, g)
	if e := h.waitEvent(TypeRenamed, g); e.Attrs["old_path"] != f {
		t.Fatalf("renamed %+v", e)
	}
	os.Remove(g)
	h.waitEvent(TypeDeleted, g)

	// Excluded by default: Office lock files and *.tmp.
	os.WriteFile(filepath.Join(deep, "~$名簿.xlsx"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(deep, "a.tmp"), []byte("x"), 0o644)
	marker := filepath.Join(deep, "marker")
	os.WriteFile(marker, []byte("x"), 0o644)
	evs := h.waitFor("marker", func(evs []event.Event) bool { return find(evs, TypeCreated, marker) != nil })
	for _, e := range evs {
		if strings.Contains(e.Object, "~$") || strings.HasSuffix(e.Object, ".tmp") {
			t.Fatalf("excluded file recorded: %+v", e)
		}
	}
	for _, e := range evs {
		if err := e.Validate(); err != nil {
			t.Fatalf("invalid event %+v: %v", e, err)
		}
	}
}

func TestAttributionJoinAndReads(t *testing.T) {
	root := t.TempDir()
	fp := &fakeProbe{out: make(chan access, 16)}
	h := start(t, fp, pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	st := h.waitStatus(controls.Pass, "")
	if st.Attrs["attribution"] != "fake" {
		t.Fatalf("status attrs %v", st.Attrs)
	}
	f := filepath.Join(root, "顧客名簿.xlsx")
	// The OS reports the access (as fanotify does, before the debounced change).
	fp.out <- access{Path: f, Time: time.Now(), PID: 4242, User: `OFFICE\tanaka`, Process: `C:\EXCEL.EXE`, Mask: 0x2, Write: true}
	os.WriteFile(f, []byte("x"), 0o644)
	e := h.waitEvent(TypeCreated, f)
	if e.User != `OFFICE\tanaka` || e.Process != `C:\EXCEL.EXE` || num(e.Attrs["pid"]) != 4242 || e.Attrs["access_mask"] != "0x2" {
		t.Fatalf("attribution not joined: %+v", e)
	}
	// A read-only access with no change becomes file.read, merged.
	r := filepath.Join(root, "read-me.txt")
	os.WriteFile(r, []byte("hello"), 0o644)
	h.waitEvent(TypeCreated, r)
	for i := 0; i < 3; i++ {
		fp.out <- access{Path: r, Time: time.Now(), PID: 77, User: "suzuki", Process: "/usr/bin/cat", Mask: 0x10, Read: true}
	}
	e = h.waitEvent(TypeRead, r)
	if e.User != "suzuki" || e.Process != "/usr/bin/cat" || num(e.Attrs["count"]) != 3 || num(e.Attrs["size"]) != 5 {
		t.Fatalf("read %+v", e)
	}
	// Outside the roots: ignored.
	fp.out <- access{Path: "/elsewhere/x", Time: time.Now(), Read: true}
}

// TestJoinRecorded4663 joins the recorded Security events to changes as the
// Windows probe does, with the probe's join delay.
func TestJoinRecorded4663(t *testing.T) {
	root := t.TempDir()
	fp := &fakeProbe{out: make(chan access, 16), delay: 300 * time.Millisecond}
	h := start(t, fp, pol(func(f *policy.FileAccess) {
		f.Folders = []policy.Folder{{Path: root, RegisterID: "PI-7"}}
	}))
	h.waitStatus(controls.Pass, "")
	load := func(name, path string) access {
		ev, err := parse4663(fixture(t, name))
		if err != nil {
			t.Fatal(err)
		}
		ev.access.Path, ev.access.Time = path, time.Now()
		return ev.access
	}
	w := filepath.Join(root, "顧客名簿.xlsx")
	d := filepath.Join(root, "古い名簿.csv")
	rd := filepath.Join(root, "メモ.txt")
	os.WriteFile(d, []byte("old"), 0o644)
	os.WriteFile(rd, []byte("memo"), 0o644)
	h.waitEvent(TypeCreated, rd)
	h.waitEvent(TypeCreated, d)
	os.WriteFile(w, []byte("new"), 0o644)
	os.Remove(d)
	// The Security log is read a little after the change (joinDelay).
	time.Sleep(50 * time.Millisecond)
	fp.out <- load("4663_write_excel.xml", w)
	fp.out <- load("4663_delete_explorer.xml", d)
	fp.out <- load("4663_read_notepad.xml", rd)
	e := h.waitEvent(TypeCreated, w)
	if e.User != `OFFICE\tanaka` || !strings.HasSuffix(e.Process, "EXCEL.EXE") || e.Attrs["access_mask"] != "0x2" || e.RegisterID != "PI-7" {
		t.Fatalf("write join: %+v", e)
	}
	e = h.waitEvent(TypeDeleted, d)
	if e.User != `OFFICE\tanaka` || !strings.HasSuffix(e.Process, "explorer.exe") || e.Attrs["access_mask"] != "0x10000" {
		t.Fatalf("delete join: %+v", e)
	}
	e = h.waitEvent(TypeRead, rd)
	if e.User != `OFFICE\suzuki` || !strings.HasSuffix(e.Process, "notepad.exe") || e.Attrs["access_mask"] != "0x1" || e.RegisterID != "PI-7" {
		t.Fatalf("read: %+v", e)
	}
}

func TestBulkSummaryIsExact(t *testing.T) {
	root := t.TempDir()
	h := start(t, &fakeProbe{}, pol(func(f *policy.FileAccess) {
		f.Paths = []string{root}
		f.BulkThreshold = 10
		f.BulkWindow = policy.Duration(3 * time.Second)
	}))
	h.waitStatus(controls.Pass, "")
	const n = 150
	for i := 0; i < n; i++ {
		os.WriteFile(filepath.Join(root, fmt.Sprintf("f%03d.csv", i)), []byte("x"), 0o644)
	}
	evs := h.waitFor("bulk summary", func(evs []event.Event) bool { return find(evs, TypeBulk, root) != nil })
	b := find(evs, TypeBulk, root)
	individual := len(h.rec.OfType(TypeCreated))
	counts := b.Attrs["counts"].(event.Attrs)
	if individual != 10 || num(b.Attrs["suppressed"]) != n-10 || num(counts["created"]) != n-10 ||
		num(b.Attrs["total"]) != n || b.Severity != event.Warning {
		t.Fatalf("individual %d, bulk %+v", individual, b.Attrs)
	}
	if !strings.HasPrefix(fmt.Sprint(b.Attrs["summary"]), "150 files created in") {
		t.Fatalf("summary %q", b.Attrs["summary"])
	}
	// After the window, events go out one by one again.
	time.Sleep(3 * time.Second)
	late := filepath.Join(root, "late.csv")
	os.WriteFile(late, []byte("x"), 0o644)
	h.waitEvent(TypeCreated, late)
}

func TestApplyLiveAndStatus(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	missing := filepath.Join(b, "not-yet")
	h := start(t, &fakeProbe{}, pol(func(f *policy.FileAccess) { f.Paths = []string{a, missing} }))
	st := h.waitStatus(controls.Fail, "fileaccess.root_missing")
	if st.Severity != event.Violation || !strings.Contains(fmt.Sprint(st.Attrs["reason_en"]), missing) {
		t.Fatalf("status %+v", st)
	}
	if got := h.c.Status(); got.State != controls.Fail {
		t.Fatalf("Status() %+v", got)
	}
	// The folder appears and the policy is re-applied: watched, pass.
	os.Mkdir(missing, 0o755)
	if err := h.c.Apply(context.Background(), pol(func(f *policy.FileAccess) { f.Paths = []string{missing} })); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(controls.Pass, "fileaccess.watching")
	inB := filepath.Join(missing, "b.txt")
	os.WriteFile(filepath.Join(a, "a.txt"), []byte("x"), 0o644) // a is no longer watched
	os.WriteFile(inB, []byte("x"), 0o644)
	evs := h.waitFor("b.txt", func(evs []event.Event) bool { return find(evs, TypeCreated, inB) != nil })
	if find(evs, TypeCreated, filepath.Join(a, "a.txt")) != nil {
		t.Fatal("removed root still watched")
	}
	// Bad settings are refused and the previous ones kept.
	bad := pol(func(f *policy.FileAccess) { f.Paths = []string{"relative/path"} })
	if err := h.c.Apply(context.Background(), bad); err == nil {
		t.Fatal("relative path accepted")
	}
	bad = pol(func(f *policy.FileAccess) { f.Paths = []string{missing}; f.Exclude = []string{"["} })
	if err := h.c.Apply(context.Background(), bad); err == nil {
		t.Fatal("bad exclude accepted")
	}
	if err := h.c.Apply(context.Background(), nil); err == nil {
		t.Fatal("nil policy accepted")
	}
	again := filepath.Join(missing, "again.txt")
	os.WriteFile(again, []byte("x"), 0o644)
	h.waitEvent(TypeCreated, again)

	// Off: status off, nothing recorded.
	if err := h.c.Apply(context.Background(), pol(func(f *policy.FileAccess) { f.Mode = policy.Off; f.Paths = []string{missing} })); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(controls.Off, "control.off")
	n := len(h.rec.Events())
	os.WriteFile(filepath.Join(missing, "off.txt"), []byte("x"), 0o644)
	time.Sleep(400 * time.Millisecond)
	if len(h.rec.Events()) != n {
		t.Fatalf("events while off: %v", h.rec.Events()[n:])
	}
}

func TestNoFoldersIsUnknown(t *testing.T) {
	h := start(t, &fakeProbe{}, pol(nil))
	h.waitStatus(controls.Unknown, "fileaccess.no_folders")
}

func TestRootDeletedFailsStatus(t *testing.T) {
	if os.Getenv("WINEPREFIX") != "" || filepath.Separator == '\\' {
		t.Skip("Windows does not report a watched folder's own deletion (covered by the periodic check)")
	}
	parent := t.TempDir()
	root := filepath.Join(parent, "data")
	os.Mkdir(root, 0o755)
	h := start(t, &fakeProbe{}, pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	h.waitStatus(controls.Pass, "")
	os.RemoveAll(root)
	h.waitEvent(TypeDeleted, root)
	h.waitStatus(controls.Fail, "fileaccess.root_missing")
}

// TestAckFollowsEmit: the probe may persist its Security-log position past a
// record only once the event that record caused is durable (emitted), so a
// crash between reading and emitting repeats it instead of losing it. Reads
// wait for their merged file.read event, reads counted into a bulk window
// for the summary, write records for the end of their join window.
func TestAckFollowsEmit(t *testing.T) {
	root := t.TempDir()
	fp := &fakeProbe{out: make(chan access, 16)}
	fp.cursor.start(100)
	var rec *controlstest.Recorder
	var mu sync.Mutex
	var acks []uint64
	// Every record an ack covers must have its event recorded by then.
	needs := map[uint64]func([]event.Event) bool{}
	fp.onAck = func(upTo uint64) {
		mu.Lock()
		defer mu.Unlock()
		acks = append(acks, upTo)
		evs := rec.Events()
		for r, ok := range needs {
			if r <= upTo && !ok(evs) {
				t.Errorf("ack %d before the event of record %d was emitted", upTo, r)
			}
		}
	}
	// The files exist before: no file.created takes the one event the bulk
	// threshold lets through.
	a, b := filepath.Join(root, "a.csv"), filepath.Join(root, "b.csv")
	os.WriteFile(a, []byte("a"), 0o644)
	os.WriteFile(b, []byte("b"), 0o644)
	h := start(t, fp, pol(func(f *policy.FileAccess) {
		f.Paths = []string{root}
		f.BulkThreshold = 1
		f.BulkWindow = policy.Duration(1500 * time.Millisecond)
	}))
	rec = h.rec
	h.waitStatus(controls.Pass, "")
	readOf := func(p string) func([]event.Event) bool {
		return func(evs []event.Event) bool { return find(evs, TypeRead, p) != nil }
	}
	bulk := func(evs []event.Event) bool {
		e := find(evs, TypeBulk, root)
		return e != nil && num(e.Attrs["suppressed"]) >= 1
	}
	mu.Lock()
	needs[101], needs[104] = readOf(a), bulk
	mu.Unlock()
	now := time.Now()
	fp.send(access{Path: a, Time: now, User: `OFFICE\tanaka`, Read: true, Mask: maskReadData, Record: 101})
	fp.send(access{Path: "/elsewhere/x", Time: now, Read: true, Record: 102})                                                   // not ours
	fp.send(access{Path: filepath.Join(root, "~$a.csv"), Time: now, Read: true, Record: 103})                                   // excluded
	fp.send(access{Path: b, Time: now, User: `OFFICE\tanaka`, Read: true, Mask: maskReadData, Record: 104})                     // over the bulk threshold
	fp.send(access{Path: a, Time: now.Add(-time.Minute), User: `OFFICE\tanaka`, Write: true, Mask: maskWriteData, Record: 105}) // out of its join window at once

	// 101's read goes out after the debounce; 104 is held by the bulk window.
	h.waitEvent(TypeRead, a)
	deadline := time.Now().Add(10 * time.Second)
	for fp.ackedUpTo() < 103 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := fp.ackedUpTo(); got != 103 {
		t.Fatalf("acked up to %d while the bulk window holds 104, want 103", got)
	}
	if pos := fp.cursor.position(); pos != 103 {
		t.Fatalf("probe would persist %d, want 103", pos)
	}
	h.waitFor("bulk summary", bulk)
	for fp.ackedUpTo() < 105 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got, pos := fp.ackedUpTo(), fp.cursor.position(); got != 105 || pos != 105 {
		t.Fatalf("after the summary: acked %d, position %d, want 105", got, pos)
	}
	mu.Lock()
	t.Logf("acks %v", acks)
	mu.Unlock()
}

// TestUnconsumedAccessIsNotAcked: an access still queued to the control when
// it stops (the crash case) is never acked, so the probe keeps its position
// before it and reads it again.
func TestUnconsumedAccessIsNotAcked(t *testing.T) {
	root := t.TempDir()
	fp := &fakeProbe{out: make(chan access, 16)}
	fp.cursor.start(200)
	h := start(t, fp, pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	h.waitStatus(controls.Pass, "")
	f := filepath.Join(root, "c.csv")
	os.WriteFile(f, []byte("c"), 0o644)
	fp.send(access{Path: f, Time: time.Now(), Read: true, Mask: maskReadData, Record: 201})
	h.waitEvent(TypeRead, f)
	h.stop()
	h.stop = nil
	fp.send(access{Path: f, Time: time.Now(), Read: true, Mask: maskReadData, Record: 202}) // nobody reads it
	if got, pos := fp.ackedUpTo(), fp.cursor.position(); got != 201 || pos != 201 {
		t.Fatalf("acked %d, position %d, want 201", got, pos)
	}
}

// TestAttributionSourceObservedOrGuessed: a delete or rename the OS
// reported (fanotify FID, 4663 DELETE) is attributed to its process as
// "observed"; one the OS did not report is joined to the path's last writer
// and marked "last_writer", so an auditor can tell a guess from an observation.
func TestAttributionSourceObservedOrGuessed(t *testing.T) {
	root := t.TempDir()
	fp := &fakeProbe{out: make(chan access, 16)}
	h := start(t, fp, pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	h.waitStatus(controls.Pass, "")
	writer := access{PID: 10, User: "tanaka", Process: "/usr/bin/libreoffice", Write: true, Mask: 0x8}
	at := func(a access, path string) access { a.Path, a.Time = path, time.Now(); return a }

	guessed, seen, old, renamed := filepath.Join(root, "guessed.csv"), filepath.Join(root, "seen.csv"),
		filepath.Join(root, "old.csv"), filepath.Join(root, "new.csv")
	for _, p := range []string{guessed, seen, old} {
		fp.out <- at(writer, p)
		os.WriteFile(p, []byte("x"), 0o644)
	}
	for _, p := range []string{guessed, seen, old} {
		if e := h.waitEvent(TypeCreated, p); e.Attrs["attribution_source"] != sourceObserved || num(e.Attrs["pid"]) != 10 {
			t.Fatalf("created %+v", e)
		}
	}
	// Only the write is known: the delete goes to the writer, as a guess.
	fp.out <- at(writer, guessed)
	os.Remove(guessed)
	if e := h.waitEvent(TypeDeleted, guessed); e.Attrs["attribution_source"] != sourceLastWriter || num(e.Attrs["pid"]) != 10 || e.User != "tanaka" {
		t.Fatalf("guessed delete %+v", e)
	}
	// The OS reported the delete: that process, observed, though the writer came later.
	fp.out <- at(access{PID: 20, User: "suzuki", Process: "/usr/bin/rm", Delete: true, Mask: fanDelete}, seen)
	fp.out <- at(writer, seen)
	os.Remove(seen)
	if e := h.waitEvent(TypeDeleted, seen); e.Attrs["attribution_source"] != sourceObserved || num(e.Attrs["pid"]) != 20 ||
		e.User != "suzuki" || e.Process != "/usr/bin/rm" || e.Attrs["access_mask"] != "0x200" {
		t.Fatalf("observed delete %+v", e)
	}
	// A rename reported under both names.
	mv := access{PID: 30, User: "sato", Process: "/usr/bin/mv", Rename: true, Mask: fanRename}
	fp.out <- at(writer, old)
	fp.out <- at(mv, old)
	fp.out <- at(mv, renamed)
	os.Rename(old, renamed)
	if e := h.waitEvent(TypeRenamed, renamed); e.Attrs["attribution_source"] != sourceObserved || num(e.Attrs["pid"]) != 30 || e.Attrs["old_path"] != old {
		t.Fatalf("rename %+v", e)
	}
	// No access at all: no user, no source.
	bare := filepath.Join(root, "bare.csv")
	os.WriteFile(bare, nil, 0o644)
	if e := h.waitEvent(TypeCreated, bare); e.User != "" || e.Attrs["attribution_source"] != nil {
		t.Fatalf("unattributed %+v", e)
	}
}

// Every watched folder that is missing is named in the status, not only
// the first: the admin fixes them all in one go.
func TestStatusNamesEveryMissingFolder(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	m1, m2 := filepath.Join(b, "人事"), filepath.Join(b, "採用")
	h := start(t, &fakeProbe{}, pol(func(f *policy.FileAccess) { f.Paths = []string{a, m1, m2} }))
	st := h.waitStatus(controls.Fail, "fileaccess.root_missing")
	ja, en := fmt.Sprint(st.Attrs["reason_ja"]), fmt.Sprint(st.Attrs["reason_en"])
	if !strings.Contains(ja, m1) || !strings.Contains(ja, m2) || !strings.Contains(en, "watched folders do not exist") {
		t.Fatalf("status names %q / %q", ja, en)
	}
}
