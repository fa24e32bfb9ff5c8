package fileaccess

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// TestMovedInIsObserved: a file moved into a watched folder from outside is
// file.created (file.modified when it replaced a file of that name); when
// the OS reported the move (fanotify FID: the rename under its new name, by
// the mover) it is that process's, observed, not a guess. A rename away from
// a path does not observe a later create there: that stays last_writer.
func TestMovedInIsObserved(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	fp := &fakeProbe{out: make(chan access, 16)}
	h := start(t, fp, pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	h.waitStatus(controls.Pass, "")

	src, dst := filepath.Join(outside, "名簿.csv"), filepath.Join(root, "名簿.csv")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// As the FID probe hands it out: the old name is outside the roots and dropped.
	fp.out <- access{Path: dst, Time: time.Now(), PID: 40, User: "sato", Process: "/usr/bin/mv",
		Rename: true, NewName: true, Mask: fanRename}
	if err := os.Rename(src, dst); err != nil {
		t.Fatal(err)
	}
	e := h.waitEvent(TypeCreated, dst)
	if e.Attrs["attribution_source"] != sourceObserved || num(e.Attrs["pid"]) != 40 || e.User != "sato" || e.Process != "/usr/bin/mv" {
		t.Fatalf("moved in: %+v; want observed, by sato's mv (pid 40)", e)
	}
	// Moved in onto that name: the move replaced its content.
	if err := os.WriteFile(src, []byte("newer"), 0o644); err != nil {
		t.Fatal(err)
	}
	fp.out <- access{Path: dst, Time: time.Now(), PID: 41, User: "sato", Process: "/usr/bin/mv",
		Rename: true, NewName: true, Mask: fanRename}
	if err := os.Rename(src, dst); err != nil {
		t.Fatal(err)
	}
	if e := h.waitEvent(TypeModified, dst); e.Attrs["attribution_source"] != sourceObserved || num(e.Attrs["pid"]) != 41 {
		t.Fatalf("moved in onto an existing name: %+v; want observed, pid 41", e)
	}

	// old.csv renamed away (by 50), then a new old.csv written by nobody the OS named.
	old, gone := filepath.Join(root, "old.csv"), filepath.Join(outside, "old.csv")
	if err := os.WriteFile(old, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(TypeCreated, old)
	fp.out <- access{Path: old, Time: time.Now(), PID: 50, User: "suzuki", Process: "/usr/bin/mv", Rename: true, MovedTo: gone, Mask: fanRename}
	os.Rename(old, gone)
	h.waitEvent(TypeDeleted, old)
	fp.out <- access{Path: old, Time: time.Now(), PID: 50, User: "suzuki", Process: "/usr/bin/mv", Rename: true, Mask: fanMovedFrom}
	os.WriteFile(old, []byte("new"), 0o644)
	evs := h.waitFor("created again", func(evs []event.Event) bool { return len(createdOf(evs, old)) == 2 })
	if e := createdOf(evs, old)[1]; e.Attrs["attribution_source"] != sourceLastWriter {
		t.Fatalf("created after a rename away: %+v; want last_writer", e)
	}
}

func createdOf(evs []event.Event, path string) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if e.Type == TypeCreated && e.Object == path {
			out = append(out, e)
		}
	}
	return out
}
