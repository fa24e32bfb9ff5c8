package fswatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// applySnap applies the snapshot edits of changes to m, as a caller
// persisting the snapshot does.
func applySnap(m map[string]Entry, cs []Change) {
	for _, c := range cs {
		for p, e := range c.Snap {
			if e == nil {
				delete(m, p)
			} else {
				m[p] = *e
			}
		}
	}
}

func sameSnap(t *testing.T, got, want map[string]Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("snapshot has %d paths, want %d:\n got %v\n want %v", len(got), len(want), got, want)
	}
	for p, e := range want {
		g, ok := got[p]
		if !ok || g.Dir != e.Dir || (!e.Dir && (g.Size != e.Size || !g.MTime.Equal(e.MTime))) {
			t.Fatalf("%s: got %+v (%v), want %+v", p, g, ok, e)
		}
	}
}

// A snapshot saved by one watcher and given to the next one's AddFrom
// reports exactly what changed in between (marked Prior), and the edits the
// changes carry turn the saved snapshot into the new one, also across
// renames of files and folders seen live.
func TestAddFromPriorAndSnapEdits(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "a.csv"), "a")
	write(t, filepath.Join(root, "b.csv"), "b")
	if err := os.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "d", "c.csv"), "c")

	w := newTestWatcher(t, Options{})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	saved := w.Snapshot(root)
	if len(saved) != 5 { // root, a, b, d, d/c
		t.Fatalf("baseline %v", saved)
	}
	// Live changes: their edits keep the saved copy in step.
	if err := os.Rename(filepath.Join(root, "d"), filepath.Join(root, "e")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "a.csv"), filepath.Join(root, "a2.csv")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "new.csv"), "n")
	cs := collect(t, w, 4*testDebounce)
	applySnap(saved, cs)
	sameSnap(t, saved, w.Snapshot(root))
	w.Close()

	// While nothing watches: modify, delete, create.
	time.Sleep(10 * time.Millisecond)
	write(t, filepath.Join(root, "b.csv"), "bbbb")
	if err := os.Remove(filepath.Join(root, "a2.csv")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "e", "late.csv"), "l")
	write(t, filepath.Join(root, "~$lock.csv"), "x") // excluded

	w2 := newTestWatcher(t, Options{Exclude: []string{"~$*"}})
	if err := w2.AddFrom(root, saved); err != nil {
		t.Fatal(err)
	}
	cs = collect(t, w2, 3*testDebounce)
	equal(t, describe(root, cs), []string{"modified b.csv", "deleted a2.csv", "created e/late.csv"})
	for _, c := range cs {
		if !c.Prior || !c.Reconciled {
			t.Fatalf("%+v not marked prior", c)
		}
	}
	applySnap(saved, cs)
	sameSnap(t, saved, w2.Snapshot(root))
}
