package fswatch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const maxQueued = "/proc/sys/fs/inotify/max_queued_events"

// TestRealInotifyOverflow shrinks the kernel queue for one inotify instance,
// stalls the reader while files are created so the kernel really drops
// notifications (IN_Q_OVERFLOW), and checks that the reconciliation
// reports every file exactly once.
func TestRealInotifyOverflow(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to lower " + maxQueued)
	}
	orig, err := os.ReadFile(maxQueued)
	if err != nil {
		t.Skipf("cannot read %s: %v", maxQueued, err)
	}
	restore := func() { _ = os.WriteFile(maxQueued, orig, 0o644) }
	t.Cleanup(restore)
	if err := os.WriteFile(maxQueued, []byte("32\n"), 0o644); err != nil {
		t.Skipf("cannot lower %s: %v", maxQueued, err)
	}
	// The queue size is fixed when the inotify instance is created, so the
	// global value can go back at once.
	w := newTestWatcher(t, Options{EventBuffer: 1})
	restore()

	root := t.TempDir()
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	const n = 500
	w.mu.Lock() // stall the event loop: the kernel queue fills up
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%03d", i)), []byte("x"), 0o644); err != nil {
			w.mu.Unlock()
			t.Fatal(err)
		}
	}
	w.mu.Unlock()

	created := map[string]int{}
	overflows := 0
	for _, c := range collect(t, w, 4*testDebounce) {
		switch c.Op {
		case Created:
			created[filepath.Base(c.Path)]++
		case Overflow:
			overflows++
		default:
			t.Fatalf("unexpected change %+v", c)
		}
	}
	if overflows == 0 {
		t.Fatal("the kernel queue did not overflow")
	}
	var bad []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("f%03d", i)
		if created[name] != 1 {
			bad = append(bad, fmt.Sprintf("%s:%d", name, created[name]))
		}
	}
	if len(bad) > 0 || len(created) != n {
		t.Fatalf("each file must be created exactly once; got %d files, wrong: %s", len(created), strings.Join(bad, " "))
	}
	if s := w.Stats(); s.Overflows == 0 {
		t.Fatalf("stats %+v", s)
	}
}
