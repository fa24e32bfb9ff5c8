//go:build linux || darwin

package fswatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// hiddenEdit rewrites p with content of the same size and puts its mtime
// (and atime) back, as `printf 'D,b\n' > F; touch -r REF F` does: size and
// mtime match the snapshot, only the inode change time (which no user can
// set) moves.
func hiddenEdit(t *testing.T, p, content string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(content)) {
		t.Fatalf("content of %d bytes, file has %d", len(content), fi.Size())
	}
	time.Sleep(20 * time.Millisecond) // past the coarse kernel clock tick
	write(t, p, content)
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(fi.ModTime()) || after.Size() != fi.Size() {
		t.Fatal("size or mtime not restored")
	}
}

// TestTimesRestoredIsModified: an edit of the same size whose mtime is put
// back within the debounce window is Modified (TimesRestored: it was
// written), not taken for an attribute change.
func TestTimesRestoredIsModified(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "顧客名簿.csv")
	write(t, f, "A,a\n")
	w := newTestWatcher(t, Options{})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	hiddenEdit(t, f, "D,b\n")
	cs := collect(t, w, 3*testDebounce)
	equal(t, describe(root, cs), []string{"modified 顧客名簿.csv"})
	if !cs[0].TimesRestored || cs[0].CTimeOnly || cs[0].Snap[f] == nil || cs[0].Snap[f].CTime.IsZero() {
		t.Fatalf("change %+v; want TimesRestored with the new change time in Snap", cs[0])
	}
}

// TestChmodIsAttrib: a permission change alone (no write) moves only the
// change time: not Modified, but an Attrib change whose Snap carries the
// new change time, so a saved snapshot does not take it for an edit made
// while nothing watched.
func TestChmodIsAttrib(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "名簿.csv")
	write(t, f, "x")
	w := newTestWatcher(t, Options{})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	saved := w.Snapshot(root)
	time.Sleep(20 * time.Millisecond)
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	cs := collect(t, w, 3*testDebounce)
	if len(cs) != 1 || cs[0].Op != Attrib || cs[0].Path != f || cs[0].Snap[f] == nil {
		t.Fatalf("changes %+v; want one Attrib of %s", cs, f)
	}
	applySnap(saved, cs)
	if !saved[f].CTime.Equal(w.Snapshot(root)[f].CTime) {
		t.Fatal("the Attrib change does not bring the saved change time up to date")
	}
	w.Close()
	w2 := newTestWatcher(t, Options{})
	if err := w2.AddFrom(root, saved); err != nil {
		t.Fatal(err)
	}
	if cs := collect(t, w2, 3*testDebounce); len(cs) != 0 {
		t.Fatalf("after the chmod seen live, a start reports %+v", cs)
	}
}

// TestPriorTimesRestored: the same hidden edit while nothing watched is
// found by the comparison with the saved snapshot (CTimeOnly: a comparison
// cannot tell it from a chmod, so it says what it knows).
func TestPriorTimesRestored(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "顧客名簿.csv")
	write(t, f, "A,a\n")
	w := newTestWatcher(t, Options{})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	saved := w.Snapshot(root)
	w.Close()
	hiddenEdit(t, f, "D,b\n")
	w2 := newTestWatcher(t, Options{})
	if err := w2.AddFrom(root, saved); err != nil {
		t.Fatal(err)
	}
	cs := collect(t, w2, 3*testDebounce)
	equal(t, describe(root, cs), []string{"modified 顧客名簿.csv"})
	if !cs[0].Prior || !cs[0].CTimeOnly || cs[0].TimesRestored {
		t.Fatalf("change %+v; want Prior and CTimeOnly", cs[0])
	}
}

// TestPriorWithoutCTime: a snapshot saved before change times were kept
// (zero CTime) does not make every file look modified; the comparison
// hands the change times it learnt back in one Attrib change of the root,
// so the next comparison finds a hidden edit.
func TestPriorWithoutCTime(t *testing.T) {
	root := t.TempDir()
	f, g := filepath.Join(root, "a.csv"), filepath.Join(root, "b.csv")
	write(t, f, "A,a\n")
	write(t, g, "B,b\n")
	w := newTestWatcher(t, Options{})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	saved := w.Snapshot(root)
	w.Close()
	for p, e := range saved {
		e.CTime = time.Time{}
		saved[p] = e
	}
	time.Sleep(20 * time.Millisecond)
	if err := os.Chmod(g, 0o600); err != nil { // unknown before: not a change
		t.Fatal(err)
	}
	w2 := newTestWatcher(t, Options{})
	if err := w2.AddFrom(root, saved); err != nil {
		t.Fatal(err)
	}
	cs := collect(t, w2, 3*testDebounce)
	if len(cs) != 1 || cs[0].Op != Attrib || cs[0].Path != root || len(cs[0].Snap) != 3 {
		t.Fatalf("changes %+v; want one Attrib of the root with the 3 entries", cs)
	}
	applySnap(saved, cs)
	for p, e := range saved {
		if e.CTime.IsZero() {
			t.Fatalf("%s still without a change time", p)
		}
	}
	w2.Close()
	hiddenEdit(t, f, "D,d\n")
	w3 := newTestWatcher(t, Options{})
	if err := w3.AddFrom(root, saved); err != nil {
		t.Fatal(err)
	}
	equal(t, describe(root, collect(t, w3, 3*testDebounce)), []string{"modified a.csv"})
}
