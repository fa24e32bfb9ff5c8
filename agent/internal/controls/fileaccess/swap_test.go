package fileaccess

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// TestWatchedFolderReplacedByAnotherFolder: the watched folder moved away
// and a new folder made at its path (fake probe, any OS): a warning with
// both identities, and the new folder watched at once and compared with
// what the old one held (while_unwatched, with the window), live changes
// in it recorded.
func TestWatchedFolderReplacedByAnotherFolder(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "顧客")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "a.csv"), []byte("a"), 0o644)
	fp := &fakeProbe{out: make(chan access, 16)}
	h := start(t, fp, pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	h.waitStatus(controls.Pass, "")
	swapped := time.Now()
	if err := os.Rename(root, filepath.Join(parent, "old")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(root, 0o755)
	os.WriteFile(filepath.Join(root, "b.csv"), []byte("b"), 0o644)
	e := h.waitEvent(TypeDeleted, root)
	if e.Severity != event.Warning || e.Attrs["watched_folder"] != true || e.Attrs["replaced_by"] != "directory" ||
		e.Attrs["folder_id"] == nil {
		t.Errorf("replaced: %s", describeEvents([]event.Event{e}))
	}
	if e.Attrs["now_id"] != nil && e.Attrs["now_id"] == e.Attrs["folder_id"] {
		t.Errorf("same identity: %s", describeEvents([]event.Event{e}))
	}
	for _, c := range []struct{ typ, name string }{{TypeDeleted, "a.csv"}, {TypeCreated, "b.csv"}} {
		ev := h.waitEvent(c.typ, filepath.Join(root, c.name))
		from, _ := time.Parse(time.RFC3339Nano, str(ev.Attrs["window_from"]))
		if ev.Attrs["attribution_source"] != sourceWhileUnwatched || from.Before(swapped.Add(-time.Second)) || ev.Attrs["window_to"] == nil {
			t.Errorf("%s: %s", c.name, describeEvents([]event.Event{ev}))
		}
	}
	h.waitStatus(controls.Pass, "")
	os.WriteFile(filepath.Join(root, "c.csv"), []byte("c"), 0o644)
	if ev := h.waitEvent(TypeCreated, filepath.Join(root, "c.csv")); ev.Attrs["attribution_source"] != nil {
		t.Errorf("live: %s", describeEvents([]event.Event{ev}))
	}
}

// TestSymlinkAtConfiguredPathIsNotFollowed: a policy folder that is a
// symbolic link at start is not watched through the link: the status says
// so, naming the folder, and one fileaccess.error says what is there.
func TestSymlinkAtConfiguredPathIsNotFollowed(t *testing.T) {
	parent := t.TempDir()
	real := filepath.Join(parent, "real")
	os.Mkdir(real, 0o755)
	root := filepath.Join(parent, "link")
	if err := os.Symlink(real, root); err != nil {
		t.Skip("no symlinks:", err)
	}
	linkSeen(t, root)
	fp := &fakeProbe{out: make(chan access, 16)}
	h := start(t, fp, pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	st := h.waitStatus(controls.Fail, "fileaccess.root_replaced")
	if !strings.Contains(str(st.Attrs["reason_en"]), root) || !strings.Contains(str(st.Attrs["reason_ja"]), root) {
		t.Errorf("status: %v", st.Attrs)
	}
	e := h.waitEvent(TypeError, root)
	if e.Attrs["replaced_by"] != "symlink" || e.Attrs["link_target"] != real {
		t.Errorf("error: %s", describeEvents([]event.Event{e}))
	}
	os.WriteFile(filepath.Join(real, "x.csv"), []byte("x"), 0o644)
	time.Sleep(2*rootCheckInterval + 500*time.Millisecond)
	if n := len(changeEvents(h.rec.Events())); n != 0 || len(h.rec.OfType(TypeError)) != 1 {
		t.Errorf("followed the link or repeated itself:\n%s", describeEvents(h.rec.Events()))
	}
	// A folder at the path: watched.
	os.Remove(root)
	os.Mkdir(root, 0o755)
	h.waitStatus(controls.Pass, "")
}

func str(v any) string { s, _ := v.(string); return s }

// TestSwapOnSpoolKeepsTheBaseline: with the real spool, a watched folder
// swapped for a link, changed through its new path and moved back is
// compared with what it held (while_unwatched); the saved snapshot then
// matches the disk, so the next start reports nothing.
func TestSwapOnSpoolKeepsTheBaseline(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "顧客")
	os.Mkdir(root, 0o755)
	os.WriteFile(filepath.Join(root, "a.csv"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(root, "keep.csv"), []byte("k"), 0o644)
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	p := pol(func(f *policy.FileAccess) { f.Paths = []string{root} })
	sp, stop := runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs, "fileaccess.status", "") != nil })
	real := filepath.Join(parent, "real")
	if err := os.Rename(root, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, root); err != nil {
		t.Skip("no symlinks:", err)
	}
	if fi, err := os.Lstat(root); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		stop()
		linkSeen(t, root)
	}
	waitSpool(t, sp, "the swap", func(evs []event.Event) bool {
		e := find(evs, TypeDeleted, root)
		return e != nil && e.Attrs["replaced_by"] == "symlink"
	})
	os.WriteFile(filepath.Join(real, "a.csv"), []byte("a changed"), 0o644)
	os.WriteFile(filepath.Join(real, "b.csv"), []byte("b"), 0o644)
	os.Remove(root)
	if err := os.Rename(real, root); err != nil {
		t.Fatal(err)
	}
	waitSpool(t, sp, "the comparison", func(evs []event.Event) bool {
		m, c := find(evs, TypeModified, filepath.Join(root, "a.csv")), find(evs, TypeCreated, filepath.Join(root, "b.csv"))
		return m != nil && c != nil && m.Attrs["attribution_source"] == sourceWhileUnwatched &&
			c.Attrs["attribution_source"] == sourceWhileUnwatched
	})
	time.Sleep(300 * time.Millisecond)
	first := stop()
	for _, e := range first {
		if strings.HasPrefix(e.Type, "file.") && e.Object == filepath.Join(root, "keep.csv") {
			t.Errorf("unchanged file reported: %+v", e)
		}
	}
	sp, stop = runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return len(evs) > len(first) })
	time.Sleep(time.Second)
	for _, e := range stop()[len(first):] {
		if strings.HasPrefix(e.Type, "file.") {
			t.Errorf("reported again at the next start: %+v", e)
		}
	}
}

// linkSeen skips where a symbolic link just made is not seen by Lstat
// (Wine makes it, then says the path does not exist).
func linkSeen(t *testing.T, p string) {
	t.Helper()
	if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Skipf("the link is not seen by Lstat here (Wine): %v", err)
	}
}
