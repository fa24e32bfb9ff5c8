package fileaccess

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/controlstest"
	"github.com/mamori/mamori/agent/internal/fswatch"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// TestMain lets the test binary act as another process that writes or reads
// a file, so fanotify attribution can be checked against a known PID and
// executable (the probe ignores the agent's own PID).
func TestMain(m *testing.M) {
	if p := os.Getenv("MAMORI_FA_WRITE"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			f.WriteString("written by the helper\n")
			f.Close()
		}
		io.Copy(io.Discard, os.Stdin) // live until the test has seen the access
		os.Exit(0)
	}
	if p := os.Getenv("MAMORI_FA_READ"); p != "" {
		os.ReadFile(p)
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper runs the test binary as another process that accesses a file and
// then lives until release is called: a process that exits within a
// millisecond can be gone before its PID is resolved (documented limit), an
// office application holding a file is not.
func helper(t *testing.T, env string) (pid int, release func()) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	release = func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	return cmd.Process.Pid, release
}

func TestFanotifyAttribution(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs root (CAP_SYS_ADMIN); run the tests as root to cover attribution")
	}
	root := t.TempDir()
	h := start(t, newProbe(controlsEnvForProbe()), pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	st := h.waitStatus(controls.Pass, "")
	if st.Attrs["attribution"] != "fanotify" {
		t.Skipf("fanotify unavailable here: %v", st.Attrs["attribution"])
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	me, _ := user.Current()

	f := filepath.Join(root, "sub", "名簿.csv")
	os.Mkdir(filepath.Dir(f), 0o755)
	pid, release := helper(t, "MAMORI_FA_WRITE="+f)
	e := h.waitEvent(TypeCreated, f)
	release()
	if e.User != me.Username || e.Process != exe || num(e.Attrs["pid"]) != int64(pid) {
		t.Fatalf("created %+v; want user %s process %s pid %d", e, me.Username, exe, pid)
	}
	pid, release = helper(t, "MAMORI_FA_READ="+f)
	e = h.waitEvent(TypeRead, f)
	release()
	if e.User != me.Username || e.Process != exe || num(e.Attrs["pid"]) != int64(pid) {
		t.Fatalf("read %+v; want pid %d", e, pid)
	}
	// The agent's own accesses are not attributed (and its reads not logged).
	own := filepath.Join(root, "own.txt")
	os.WriteFile(own, []byte("x"), 0o644)
	e = h.waitEvent(TypeCreated, own)
	if e.User != "" || e.Process != "" {
		t.Fatalf("own write attributed: %+v", e)
	}
}

func controlsEnvForProbe() controls.Env {
	return controls.Env{Clock: controls.RealClock{}, Log: zerolog.Nop()}
}

// gatedRecorder blocks Emit while the gate is shut, as a slow disk would.
type gatedRecorder struct {
	controlstest.Recorder
	mu   sync.Mutex
	gate chan struct{}
}

func (g *gatedRecorder) shut() { g.mu.Lock(); g.gate = make(chan struct{}); g.mu.Unlock() }
func (g *gatedRecorder) open() { g.mu.Lock(); close(g.gate); g.gate = nil; g.mu.Unlock() }

func (g *gatedRecorder) Emit(ctx context.Context, e event.Event) error {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return g.Recorder.Emit(ctx, e)
}

// TestRealOverflowThroughControl stalls the control (its event sink blocks)
// while files are created, with small queues, so the kernel drops inotify
// notifications; afterwards every file is recorded exactly once and a
// fileaccess.overflow warning says events may have been merged.
func TestRealOverflowThroughControl(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to lower " + maxQueuedEvents)
	}
	orig, err := os.ReadFile(maxQueuedEvents)
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.WriteFile(maxQueuedEvents, orig, 0o644) })
	root := t.TempDir()
	rec := &gatedRecorder{}
	env := controls.Env{Emit: rec, Clock: controls.RealClock{}, Log: zerolog.Nop(), StateDir: t.TempDir()}
	c := newControl(env, &fakeProbe{})
	c.tuneWatch = func(o *fswatch.Options) {
		o.EventBuffer, o.Buffer = 1, 1
		// The kernel queue size is taken when the inotify instance is made.
		if err := os.WriteFile(maxQueuedEvents, []byte("32\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
	if err := c.Apply(context.Background(), pol(func(f *policy.FileAccess) { f.Paths = []string{root}; f.BulkThreshold = 100000 })); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	h := &harness{t: t, c: c, rec: &rec.Recorder}
	h.waitStatus(controls.Pass, "")
	os.WriteFile(maxQueuedEvents, orig, 0o644)

	rec.shut()
	const n = 400
	os.WriteFile(filepath.Join(root, "first"), []byte("x"), 0o644) // occupies the control, then blocks it
	time.Sleep(300 * time.Millisecond)
	// Changes past the watcher's buffer: once their debounce ends the
	// watcher's loop waits for the blocked control and stops reading the
	// kernel queue, however fast or slow this machine is; only then come
	// the changes that must overflow it.
	const pre = 5
	for i := 0; i < pre; i++ {
		os.WriteFile(filepath.Join(root, fmt.Sprintf("pre%d", i)), []byte("x"), 0o644)
	}
	time.Sleep(500 * time.Millisecond) // 5x the debounce
	for i := 0; i < n; i++ {
		os.WriteFile(filepath.Join(root, fmt.Sprintf("f%03d", i)), []byte("x"), 0o644)
	}
	rec.open()
	h.waitEvent(TypeOverflow, root)
	evs := h.waitFor("all files", func(evs []event.Event) bool {
		k := 0
		for _, e := range evs {
			if e.Type == TypeCreated {
				k++
			}
		}
		return k >= n+pre+1
	})
	time.Sleep(500 * time.Millisecond)
	seen := map[string]int{}
	for _, e := range h.rec.OfType(TypeCreated) {
		seen[filepath.Base(e.Object)]++
	}
	for i := 0; i < n; i++ {
		if k := seen[fmt.Sprintf("f%03d", i)]; k != 1 {
			t.Fatalf("f%03d recorded %d times", i, k)
		}
	}
	if len(seen) != n+pre+1 {
		t.Fatalf("%d distinct files recorded, want %d", len(seen), n+pre+1)
	}
	ov := find(evs, TypeOverflow, root)
	if ov.Severity != event.Warning || num(ov.Attrs["reconciled"]) < 1 {
		t.Fatalf("overflow event %+v", ov)
	}
}

const maxQueuedEvents = "/proc/sys/fs/inotify/max_queued_events"
