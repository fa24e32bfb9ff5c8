package fswatch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

const testDebounce = 150 * time.Millisecond

func newTestWatcher(t *testing.T, opt Options) *Watcher {
	t.Helper()
	if opt.Debounce == 0 {
		opt.Debounce = testDebounce
	}
	w, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// collect reads changes until none arrive for quiet.
func collect(t *testing.T, w *Watcher, quiet time.Duration) []Change {
	t.Helper()
	var out []Change
	deadline := time.After(60 * time.Second)
	for {
		select {
		case c := <-w.Changes():
			out = append(out, c)
		case <-time.After(quiet):
			return out
		case <-deadline:
			t.Fatal("changes never went quiet")
		}
	}
}

func describe(root string, cs []Change) []string {
	var s []string
	for _, c := range cs {
		rel := func(p string) string {
			r, err := filepath.Rel(root, p)
			if err != nil {
				return p
			}
			return filepath.ToSlash(r)
		}
		d := string(c.Op) + " " + rel(c.Path)
		if c.OldPath != "" {
			d += " from " + rel(c.OldPath)
		}
		s = append(s, d)
	}
	sort.Strings(s)
	return s
}

func equal(t *testing.T, got, want []string) {
	t.Helper()
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes:\n got  %q\n want %q", got, want)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNestedTreeCreatedAfterWatch(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "existing.txt"), "baseline")
	w := newTestWatcher(t, Options{})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	// Nested folders created after the watch started; the file in the deepest
	// folder is written before its watch can possibly be in place.
	deep := filepath.Join(root, "顧客", "2026", "11")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(deep, "名簿.csv")
	write(t, f, "id,name\n1,山田\n")
	equal(t, describe(root, collect(t, w, 3*testDebounce)), []string{
		"created 顧客", "created 顧客/2026", "created 顧客/2026/11", "created 顧客/2026/11/名簿.csv",
	})

	fh, err := os.OpenFile(f, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(fh, "2,佐藤")
	fh.Close()
	cs := collect(t, w, 3*testDebounce)
	equal(t, describe(root, cs), []string{"modified 顧客/2026/11/名簿.csv"})
	if cs[0].Size != int64(len("id,name\n1,山田\n2,佐藤\n")) || cs[0].Root != root {
		t.Fatalf("modified change: %+v", cs[0])
	}

	g := filepath.Join(deep, "名簿-old.csv")
	if err := os.Rename(f, g); err != nil {
		t.Fatal(err)
	}
	equal(t, describe(root, collect(t, w, 4*testDebounce)),
		[]string{"renamed 顧客/2026/11/名簿-old.csv from 顧客/2026/11/名簿.csv"})

	if err := os.Remove(g); err != nil {
		t.Fatal(err)
	}
	equal(t, describe(root, collect(t, w, 3*testDebounce)), []string{"deleted 顧客/2026/11/名簿-old.csv"})

	// A folder renamed: one renamed change; its files are not reported again.
	if err := os.Rename(filepath.Join(root, "顧客", "2026"), filepath.Join(root, "顧客", "FY2026")); err != nil {
		t.Fatal(err)
	}
	got := describe(root, collect(t, w, 4*testDebounce))
	if runtime.GOOS == "linux" {
		equal(t, got, []string{"renamed 顧客/FY2026 from 顧客/2026"})
	} else if len(got) == 0 {
		t.Fatal("no change for a renamed folder")
	}
	// The renamed folder is still watched.
	write(t, filepath.Join(root, "顧客", "FY2026", "11", "new.txt"), "x")
	equal(t, describe(root, collect(t, w, 3*testDebounce)), []string{"created 顧客/FY2026/11/new.txt"})

	if runtime.GOOS == "windows" {
		// Wine refuses to delete a directory while a watch handle is open on
		// it (real Windows opens it with FILE_SHARE_DELETE); covered on Linux.
		return
	}
	if err := os.RemoveAll(filepath.Join(root, "顧客")); err != nil {
		t.Fatal(err)
	}
	equal(t, describe(root, collect(t, w, 3*testDebounce)), []string{
		"deleted 顧客", "deleted 顧客/FY2026", "deleted 顧客/FY2026/11", "deleted 顧客/FY2026/11/new.txt",
	})
}

func TestDebounceBurstIsOneChange(t *testing.T) {
	root := t.TempDir()
	w := newTestWatcher(t, Options{Exclude: []string{"~$*", "*.tmp"}})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	// An editor's save: lock file, temp file written in pieces, renamed over
	// the document, lock file removed.
	doc := filepath.Join(root, "report.docx")
	lock := filepath.Join(root, "~$report.docx")
	write(t, lock, "lock")
	tmp := filepath.Join(root, "report.docx.sav")
	fh, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		fmt.Fprintf(fh, "chunk %d\n", i)
		fh.Sync()
	}
	fh.Close()
	if err := os.Rename(tmp, doc); err != nil {
		t.Fatal(err)
	}
	os.Remove(lock)
	write(t, filepath.Join(root, "scratch.tmp"), "ignored")
	cs := collect(t, w, 4*testDebounce)
	equal(t, describe(root, cs), []string{"created report.docx"})
	c := cs[0]
	if c.Count < 3 || c.Raw.Create < 2 || c.Raw.Write < 1 || c.Raw.Rename != 1 || c.Count != c.Raw.Total() {
		t.Fatalf("burst counts: %+v", c.Raw)
	}

	// Saving again over the existing document is a modification.
	write(t, tmp, "second version, longer")
	if err := os.Rename(tmp, doc); err != nil {
		t.Fatal(err)
	}
	cs = collect(t, w, 4*testDebounce)
	equal(t, describe(root, cs), []string{"modified report.docx"})
	if cs[0].Size != int64(len("second version, longer")) {
		t.Fatalf("size %d", cs[0].Size)
	}
}

func TestOverflowReconcilesExactly(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "a")
	os.Mkdir(sub, 0o755)
	keep := filepath.Join(sub, "keep.txt")
	mod := filepath.Join(sub, "mod.txt")
	del := filepath.Join(root, "del.txt")
	write(t, keep, "same")
	write(t, mod, "v1")
	write(t, del, "bye")
	w := newTestWatcher(t, Options{})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	// The kernel drops notifications (as a full queue does) ...
	w.mu.Lock()
	w.drop = true
	w.mu.Unlock()
	write(t, mod, "v2, changed")
	os.Remove(del)
	os.MkdirAll(filepath.Join(root, "b", "c"), 0o755)
	write(t, filepath.Join(root, "b", "c", "new.txt"), "new")
	time.Sleep(2 * testDebounce)
	if cs := collect(t, w, testDebounce); len(cs) != 0 {
		t.Fatalf("dropped notifications produced changes: %v", describe(root, cs))
	}
	w.mu.Lock()
	w.drop = false
	w.mu.Unlock()
	// ... and says so.
	w.inject <- fsnotify.ErrEventOverflow
	cs := collect(t, w, 3*testDebounce)
	equal(t, describe(root, cs), []string{
		"modified a/mod.txt", "deleted del.txt", "created b", "created b/c", "created b/c/new.txt",
		"overflow .",
	})
	for _, c := range cs {
		if c.Op == Overflow && c.Count != 5 {
			t.Fatalf("overflow count %d, want 5", c.Count)
		}
		if c.Op != Overflow && !c.Reconciled {
			t.Fatalf("%+v not marked reconciled", c)
		}
	}
	// The new folder found by the rescan is watched from now on.
	write(t, filepath.Join(root, "b", "c", "later.txt"), "x")
	equal(t, describe(root, collect(t, w, 3*testDebounce)), []string{"created b/c/later.txt"})
}

func TestAddRemoveRoots(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	w := newTestWatcher(t, Options{})
	if err := w.Add(filepath.Join(a, "missing")); err == nil {
		t.Fatal("Add of a missing root succeeded")
	}
	f := filepath.Join(a, "file")
	write(t, f, "x")
	if err := w.Add(f); err == nil {
		t.Fatal("Add of a file succeeded")
	}
	if len(w.Roots()) != 0 {
		t.Fatalf("failed Adds left roots: %v", w.Roots())
	}
	if err := w.Add(a); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := w.Remove(a); err == nil {
		t.Fatal("second Remove succeeded")
	}
	write(t, filepath.Join(a, "ignored"), "x")
	write(t, filepath.Join(b, "seen"), "x")
	cs := collect(t, w, 3*testDebounce)
	if len(cs) != 1 || cs[0].Root != b || cs[0].Op != Created {
		t.Fatalf("changes %+v", cs)
	}
	if runtime.GOOS == "windows" {
		// ReadDirectoryChangesW does not report the watched directory's own
		// deletion; the fileaccess control notices missing roots by stat.
		return
	}
	// The root itself deleted: reported, and the root is marked unwatched.
	os.RemoveAll(b)
	cs = collect(t, w, 3*testDebounce)
	if d := describe(b, cs); len(d) != 2 || d[0] != "deleted ." || d[1] != "deleted seen" {
		t.Fatalf("changes %v", d)
	}
	if w.Roots()[b] {
		t.Fatal("deleted root still marked watched")
	}
	// Re-adding after it reappears reports nothing for files it already knew.
	os.Mkdir(b, 0o755)
	if err := w.Add(b); err != nil {
		t.Fatal(err)
	}
	if !w.Roots()[b] {
		t.Fatal("root not watched after re-Add")
	}
}

func TestBadExclude(t *testing.T) {
	if _, err := New(Options{Exclude: []string{"["}}); err == nil {
		t.Fatal("bad pattern accepted")
	}
}

func TestWatchLimitIsRecognised(t *testing.T) {
	err := wrapLimit(fmt.Errorf("inotify_add_watch: %w", syscall.ENOSPC))
	if !errors.Is(err, ErrWatchLimit) {
		t.Fatalf("%v does not wrap ErrWatchLimit", err)
	}
}

// The reader may call Rescan and Add itself, with more changes than Buffer,
// without blocking; Close hands over what was pending, then closes Changes.
func TestReaderCallsDoNotBlockAndCloseFlushes(t *testing.T) {
	root := t.TempDir()
	w, err := New(Options{Debounce: testDebounce, Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.drop = true
	w.mu.Unlock()
	for i := 0; i < 20; i++ {
		write(t, filepath.Join(root, fmt.Sprintf("f%02d", i)), "x")
	}
	time.Sleep(testDebounce)
	w.mu.Lock()
	w.drop = false
	w.mu.Unlock()
	done := make(chan struct{})
	go func() { w.Rescan(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Rescan blocked on a full Changes channel")
	}
	last := filepath.Join(root, "last")
	write(t, last, "x")
	time.Sleep(testDebounce / 3) // seen, but not yet quiet for Debounce
	go w.Close()
	var got []Change
	for c := range w.Changes() {
		got = append(got, c)
	}
	d := describe(root, got)
	if len(d) != 22 || d[len(d)-1] != "overflow ." || d[0] != "created f00" {
		t.Fatalf("changes %v", d)
	}
	found := false
	for _, s := range d {
		found = found || s == "created last"
	}
	if !found {
		t.Fatalf("pending change lost on Close: %v", d)
	}
}

func TestWithinAndExcluded(t *testing.T) {
	sep := string(filepath.Separator)
	d := sep + filepath.Join("data", "顧客")
	for _, c := range []struct {
		p, dir string
		want   bool
	}{
		{d, d, true}, {d + sep + "a.xlsx", d, true}, {d + "2" + sep + "a", d, false},
		{sep + "data", d, false}, {d + sep + "x", d + sep, true}, {sep + "other", sep, true},
	} {
		if got := Within(c.p, c.dir); got != c.want {
			t.Errorf("Within(%q, %q) = %v", c.p, c.dir, got)
		}
	}
	pats := []string{"~$*", "*.tmp"}
	for p, want := range map[string]bool{d + sep + "~$名簿.xlsx": true, d + sep + "x.tmp": true, d + sep + "名簿.xlsx": false} {
		if Excluded(pats, p) != want {
			t.Errorf("Excluded(%q) = %v", p, !want)
		}
	}
}
