package fswatch

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestRootSwappedForLink: a root renamed away and a symbolic link to it put
// at its path is lost (Deleted of the root, Was the folder, Now the link),
// not a Modified of the link, and nothing written through the folder's new
// path is reported under the root; AddFrom refuses the link; the folder
// moved back is added again and only what changed meanwhile is reported,
// Prior.
func TestRootSwappedForLink(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "watched")
	os.MkdirAll(filepath.Join(root, "d"), 0o755)
	write(t, filepath.Join(root, "a.txt"), "a")
	write(t, filepath.Join(root, "d", "b.txt"), "b")
	w := newTestWatcher(t, Options{})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	was := w.RootIdentity(root)
	real := filepath.Join(parent, "watched.real")
	if err := os.Rename(root, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, root); err != nil {
		if runtime.GOOS == "windows" {
			t.Skip("no symlink privilege:", err)
		}
		t.Fatal(err)
	}
	if _, err := os.Lstat(root); err != nil && runtime.GOOS == "windows" {
		t.Skip("the link made is not seen by Lstat (Wine):", err)
	}
	write(t, filepath.Join(real, "d", "b.txt"), "b changed")
	cs := collect(t, w, 4*testDebounce)
	if runtime.GOOS == "windows" && len(cs) == 0 {
		cs = w.CheckRoots() // the OS did not report the root's rename
	}
	if len(cs) != 1 || cs[0].Op != Deleted || cs[0].Path != root || cs[0].Contents != 3 ||
		cs[0].Was != was || cs[0].Now.Kind != KindSymlink || cs[0].Now.Target != real {
		t.Fatalf("swapped: %+v", cs)
	}
	if w.Roots()[root] {
		t.Fatal("still watched through the link")
	}
	var nf *NotFolderError
	if err := w.Add(root); !errors.As(err, &nf) || !errors.Is(err, ErrNotFolder) || nf.Now.Kind != KindSymlink {
		t.Fatalf("Add of the link: %v", err)
	}
	write(t, filepath.Join(real, "new.txt"), "new")
	os.Remove(root)
	if err := os.Rename(real, root); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	cs = collect(t, w, 2*testDebounce)
	got := describe(root, cs)
	equal(t, got, []string{"created new.txt", "modified d/b.txt"})
	for _, c := range cs {
		if !c.Prior {
			t.Errorf("not Prior: %+v", c)
		}
	}
}

// TestCheckRootsFindsReplacedFolder: another folder put at a root's path
// (the OS reports nothing: the parent is not watched) is found by
// CheckRoots, with both identities, and the new folder compared with what
// the old one held when it is added.
func TestCheckRootsFindsReplacedFolder(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "watched")
	os.MkdirAll(root, 0o755)
	write(t, filepath.Join(root, "a.txt"), "a")
	w := newTestWatcher(t, Options{})
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	if cs := w.CheckRoots(); len(cs) != 0 {
		t.Fatalf("unchanged root lost: %+v", cs)
	}
	was := w.RootIdentity(root)
	// Hold the lock so the watcher's own resolution cannot go first; the
	// periodic check must work alone.
	w.mu.Lock()
	if err := os.Rename(root, filepath.Join(parent, "old")); err != nil {
		w.mu.Unlock()
		t.Fatal(err)
	}
	os.Mkdir(root, 0o755)
	write(t, filepath.Join(root, "x.txt"), "x")
	w.mu.Unlock()
	cs := w.CheckRoots()
	if len(cs) != 1 || cs[0].Path != root || cs[0].Was != was || cs[0].Now.Kind != KindDir ||
		cs[0].Now.Same(was) && was.ID() != "" {
		t.Fatalf("replaced: %+v", cs)
	}
	collect(t, w, 2*testDebounce) // the OS's own report of the rename, if any, finds it lost already
	if err := w.Add(root); err != nil {
		t.Fatal(err)
	}
	equal(t, describe(root, collect(t, w, 2*testDebounce)), []string{"created x.txt", "deleted a.txt"})
}
