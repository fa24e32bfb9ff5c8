package fileaccess

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
)

// TestWatchedFolderSwappedForSymlink (insider test, root): the watched
// folder renamed away and a symbolic link to it put at its path. The swap is
// a warning naming the old and new identity, the status is not pass while the
// path is a link (the link is not followed, nor recorded as a file), writes
// through the real path are not silently taken for watched ones; moved back,
// the watch resumes at once and what changed meanwhile is reported with the
// window from the swap to the return, not as while_agent_stopped.
func TestWatchedFolderSwappedForSymlink(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "watched")
	os.MkdirAll(filepath.Join(root, "d"), 0o755)
	os.WriteFile(filepath.Join(root, "a.csv"), []byte("a\n"), 0o644)
	os.WriteFile(filepath.Join(root, "d", "b.csv"), []byte("b\n"), 0o644)
	h := startFIDAt(t, root, 100)
	real := filepath.Join(parent, "watched.real")
	swapped := time.Now()
	sh(t, parent, `mv watched watched.real; ln -s `+real+` watched`)
	st := h.waitStatus(controls.Fail, "fileaccess.root_replaced")
	if en, _ := st.Attrs["reason_en"].(string); !strings.Contains(en, root) {
		t.Errorf("reason does not name the folder: %v", st.Attrs)
	}
	e := h.waitEvent(TypeDeleted, root)
	if e.Severity != event.Warning || e.Attrs["watched_folder"] != true || e.Attrs["replaced_by"] != "symlink" ||
		e.Attrs["link_target"] != real || e.Attrs["folder_id"] == nil || e.Attrs["folder_id"] == e.Attrs["now_id"] {
		t.Errorf("swap event: %s", describeEvents([]event.Event{e}))
	}
	// Through the real path while the link stands.
	os.WriteFile(filepath.Join(real, "new.csv"), []byte("new\n"), 0o644)
	os.WriteFile(filepath.Join(real, "a.csv"), []byte("a changed\n"), 0o644)
	os.WriteFile(filepath.Join(real, "d", "b.csv"), []byte("b changed too\n"), 0o644)
	time.Sleep(1500 * time.Millisecond)
	for _, ev := range changeEvents(h.rec.Events()) {
		if ev.Type == TypeModified && ev.Object == root {
			t.Errorf("the link recorded as a file: %s", describeEvents([]event.Event{ev}))
		}
	}
	if s := h.waitStatus(controls.Fail, ""); s.Attrs["reason"] != "fileaccess.root_replaced" {
		t.Errorf("status while the link stands: %v", s.Attrs)
	}
	back := time.Now()
	sh(t, parent, `rm watched; mv watched.real watched`)
	h.waitStatus(controls.Pass, "")
	for _, p := range []string{filepath.Join(root, "new.csv"), filepath.Join(root, "a.csv"), filepath.Join(root, "d", "b.csv")} {
		typ := TypeModified
		if strings.HasSuffix(p, "new.csv") {
			typ = TypeCreated
		}
		ev := h.waitEvent(typ, p)
		from, _ := time.Parse(time.RFC3339Nano, str(ev.Attrs["window_from"]))
		to, _ := time.Parse(time.RFC3339Nano, str(ev.Attrs["window_to"]))
		if ev.Attrs["attribution_source"] != sourceWhileUnwatched || from.Before(swapped.Add(-time.Second)) ||
			from.After(back) || to.Before(back) || to.After(back.Add(10*time.Second)) {
			t.Errorf("change while unwatched: %s (swap %s, back %s)", describeEvents([]event.Event{ev}), swapped, back)
		}
	}
	// Watched again, live, without a restart.
	sh(t, root, `echo live > live.csv`)
	ev := h.waitEvent(TypeCreated, filepath.Join(root, "live.csv"))
	if ev.Attrs["attribution_source"] != sourceObserved {
		t.Errorf("live write after the return: %s", describeEvents([]event.Event{ev}))
	}
	for _, ev := range h.rec.Events() {
		if ev.Attrs["attribution_source"] == sourceWhileStopped {
			t.Errorf("misdated as while the agent was stopped: %s", describeEvents([]event.Event{ev}))
		}
	}
	// A plain mv away afterwards is the folder's own event again.
	sh(t, parent, `mv watched elsewhere`)
	h.waitStatus(controls.Fail, "fileaccess.root_missing")
	var moved []event.Event
	for _, ev := range changeEvents(h.rec.Events()) {
		if ev.Type == TypeDeleted && ev.Object == root {
			moved = append(moved, ev)
		}
	}
	if len(moved) != 2 || moved[1].Attrs["moved_to"] != filepath.Join(parent, "elsewhere") || moved[1].Attrs["replaced_by"] != nil {
		t.Errorf("moved away after the return: %s", describeEvents(moved))
	}
	t.Logf("events:\n%s", describeEvents(h.rec.Events()))
}
