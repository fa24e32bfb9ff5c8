package fswatch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestRealSaveViaRename: an Office-style save (temp written, original to a
// backup name, temp onto the original name, backup deleted) seen through
// real inotify, with the backup name sorting before and after the
// original: the saved file is modified, then the backup name deleted.
func TestRealSaveViaRename(t *testing.T) {
	for _, bak := range []string{"~$文書.tmp", "文書.xlsx~"} {
		t.Run(bak, func(t *testing.T) {
			root := t.TempDir()
			doc, tmp := filepath.Join(root, "文書.xlsx"), filepath.Join(root, "~wrl0001.tmp")
			write(t, doc, "v1")
			// A long window: the four calls below fall in one on a busy machine.
			w := newTestWatcher(t, Options{Debounce: time.Second})
			if err := w.Add(root); err != nil {
				t.Fatal(err)
			}
			write(t, tmp, "v2, the new content")
			for _, err := range []error{os.Rename(doc, filepath.Join(root, bak)), os.Rename(tmp, doc),
				os.Remove(filepath.Join(root, bak))} {
				if err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for _, c := range collect(t, w, 3*time.Second) {
				got = append(got, string(c.Op)+" "+filepath.Base(c.Path))
			}
			want := []string{"modified 文書.xlsx", "deleted " + bak}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("changes:\n got  %q\n want %q", got, want)
			}
		})
	}
}

// TestFolderMovedOutAndRootMoved: the files of a folder moved out of the
// tree have no notification of their own; they are Deleted With the
// folder. A root moved away is one Deleted of the root with the number of
// entries that went with it (Contents) and their snapshot edits, not a
// Change per entry; entries unlinked one by one before (rm -r) keep theirs.
func TestFolderMovedOutAndRootMoved(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "顧客")
	dir := filepath.Join(root, "持出")
	for _, d := range []string{filepath.Join(dir, "サブ"), filepath.Join(root, "残り")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(dir, "サブ", "a.txt"), "a")
	write(t, filepath.Join(dir, "b.txt"), "b")
	write(t, filepath.Join(root, "残り", "c.txt"), "c")
	write(t, filepath.Join(root, "d.txt"), "d")
	w := newTestWatcher(t, Options{})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, filepath.Join(parent, "moved-out")); err != nil {
		t.Fatal(err)
	}
	cs := collect(t, w, 4*testDebounce)
	with := map[string]string{}
	for _, c := range cs {
		if c.Op != Deleted {
			t.Fatalf("unexpected %+v", c)
		}
		with[c.Path] = c.With
	}
	want := map[string]string{dir: "", filepath.Join(dir, "サブ"): dir, filepath.Join(dir, "サブ", "a.txt"): dir, filepath.Join(dir, "b.txt"): dir}
	if fmt.Sprint(with) != fmt.Sprint(want) {
		t.Fatalf("deleted (path: with) %v, want %v", with, want)
	}

	os.Remove(filepath.Join(root, "d.txt")) // unlinked: a Change of its own
	if err := os.Rename(root, filepath.Join(parent, "顧客_moved")); err != nil {
		t.Fatal(err)
	}
	cs = collect(t, w, 4*testDebounce)
	if len(cs) != 2 || cs[0].Path != filepath.Join(root, "d.txt") || cs[0].With != "" ||
		cs[1].Op != Deleted || cs[1].Path != root || cs[1].Contents != 2 || len(cs[1].Snap) != 0 ||
		cs[1].Was.Kind != KindDir || cs[1].Now.Kind != "" {
		t.Fatalf("root moved: %+v", cs)
	}
	if w.Roots()[root] {
		t.Fatal("moved root still watched")
	}
	// What went with it is the baseline when it is back: only what changed
	// meanwhile is reported, as Prior.
	write(t, filepath.Join(parent, "顧客_moved", "残り", "c.txt"), "changed")
	if err := os.Rename(filepath.Join(parent, "顧客_moved"), root); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	cs = collect(t, w, 2*testDebounce)
	if len(cs) != 1 || cs[0].Op != Modified || cs[0].Path != filepath.Join(root, "残り", "c.txt") || !cs[0].Prior {
		t.Fatalf("back: %+v", cs)
	}
}
