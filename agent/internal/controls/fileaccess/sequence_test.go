package fileaccess

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// fastSequence modifies (creating it first when create) a, renames it to
// b, reads b and deletes it, all within 200 ms; it fails the test if the
// sequence took longer.
func fastSequence(t *testing.T, a, b string, create bool) {
	t.Helper()
	start := time.Now()
	if create {
		if err := os.WriteFile(a, []byte("氏名\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(a, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("山田 太郎\n")
	f.Close()
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(b); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("sequence took %v, over 200 ms", d)
	}
}

// checkSequence asserts the one deleted event of a fast sequence names both
// names and says the file was modified.
func checkSequence(t *testing.T, e event.Event, object, a, b string, transient bool) {
	t.Helper()
	names, _ := e.Attrs["names"].([]any)
	if e.Object != object || len(names) != 2 || names[0] != a || names[1] != b || e.Attrs["modified"] != true ||
		(e.Attrs["transient"] == true) != transient {
		t.Fatalf("deleted event %s %v; want names [%s %s], modified, transient %v", e.Object, e.Attrs, a, b, transient)
	}
	if object == a && e.Attrs["deleted_as"] != b {
		t.Fatalf("deleted_as %v, want %s", e.Attrs["deleted_as"], b)
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("event does not validate: %v", err)
	}
}

// TestFastSequenceKeepsNamesAndModification: modify, rename to list2.csv,
// read and delete within 200 ms, inside one debounce window, of a file
// that existed before and of one created in the same window: the stored
// event names both names and says the file was modified, instead of one
// file.deleted of the old name (or, for the new file, nothing at all).
func TestFastSequenceKeepsNamesAndModification(t *testing.T) {
	root := t.TempDir()
	old := filepath.Join(root, "list.csv")
	if err := os.WriteFile(old, []byte("氏名\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, &fakeProbe{err: fmt.Errorf("none: %w", errors.ErrUnsupported)}, pol(func(f *policy.FileAccess) {
		f.Paths = []string{root}
		f.Debounce = policy.Duration(300 * time.Millisecond)
	}))
	h.waitStatus(controls.Pass, "fileaccess.watching")
	renamed := filepath.Join(root, "list2.csv")
	fastSequence(t, old, renamed, false)
	checkSequence(t, h.waitEvent(TypeDeleted, old), old, old, renamed, false)

	a, b := filepath.Join(root, "new.csv"), filepath.Join(root, "new2.csv")
	fastSequence(t, a, b, true)
	checkSequence(t, h.waitEvent(TypeDeleted, b), b, a, b, true)
	for _, e := range h.rec.Events() {
		if e.Type == TypeRenamed || e.Type == TypeCreated {
			t.Fatalf("unexpected %s %s", e.Type, e.Object)
		}
	}
}

// saveViaRename saves dir/name the way Office and most editors do: the new
// content written to a temp file, the original renamed to a backup name,
// the temp file renamed onto the original name, the backup deleted.
func saveViaRename(t *testing.T, dir, name, backup string) {
	t.Helper()
	tmp := filepath.Join(dir, "T1.tmp")
	if err := os.WriteFile(tmp, []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, backup)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, backup)); err != nil {
		t.Fatal(err)
	}
}

// checkSaveViaRename asserts the events of saveViaRename (in stored order):
// the saved path's one event is file.modified (it existed before the save),
// then the old content's deletion under the backup name it was deleted as,
// naming both names.
func checkSaveViaRename(t *testing.T, evs []event.Event, saved, backup string) {
	t.Helper()
	var del *event.Event
	var list, ofSaved []string
	for i, e := range evs {
		if e.Control != Name || !strings.HasPrefix(e.Type, "file.") {
			continue
		}
		list = append(list, fmt.Sprintf("%s %s %v", e.Type, e.Object, e.Attrs))
		if e.Object == saved && del == nil {
			ofSaved = append(ofSaved, e.Type)
		}
		if names, _ := e.Attrs["names"].([]any); e.Type == TypeDeleted && len(names) == 2 && names[1] == backup {
			del = &evs[i]
		}
	}
	switch {
	case len(ofSaved) != 1 || ofSaved[0] != TypeModified:
		t.Fatalf("want one file.modified of %s before the deletion; events:\n%s", saved, strings.Join(list, "\n"))
	case del == nil || del.Object != backup || del.Attrs["names"].([]any)[0] != saved:
		t.Fatalf("want file.deleted of %s with names [%s %s]; events:\n%s", backup, saved, backup, strings.Join(list, "\n"))
	}
	if err := del.Validate(); err != nil {
		t.Fatalf("event does not validate: %v", err)
	}
}

// TestSaveViaRenameEndsWithNewContent: a save via rename within one
// debounce window is file.modified of the saved path, then file.deleted of
// the backup name (sorting after or before the saved name), never
// file.created or file.deleted of the path that existed all along; the
// saved snapshot keeps the file, so a restart reports nothing for it.
func TestSaveViaRenameEndsWithNewContent(t *testing.T) {
	for _, bak := range []string{"文書1~RF.TMP", "#文書1.xlsx#"} {
		t.Run(bak, func(t *testing.T) { testSaveViaRename(t, bak) })
	}
}

func testSaveViaRename(t *testing.T, bak string) {
	root := t.TempDir()
	saved, backup := filepath.Join(root, "文書1.xlsx"), filepath.Join(root, bak)
	if err := os.WriteFile(saved, []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spoolPath := filepath.Join(t.TempDir(), "spool.db")
	p := pol(func(f *policy.FileAccess) {
		f.Paths = []string{root}
		f.Debounce = policy.Duration(300 * time.Millisecond)
	})
	sp, stop := runOnSpool(t, spoolPath, p)
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs, "fileaccess.status", "") != nil })
	saveViaRename(t, root, "文書1.xlsx", bak)
	waitSpool(t, sp, "the deletion", func(evs []event.Event) bool { return find(evs, TypeDeleted, "") != nil })
	time.Sleep(700 * time.Millisecond) // the rest of the window, however it is ordered
	evs := stop()
	checkSaveViaRename(t, evs, saved, backup)

	// The saved snapshot still holds the saved file: a restart reports nothing.
	n := len(evs)
	sp, stop = runOnSpool(t, spoolPath, p)
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs[n:], "fileaccess.status", "") != nil })
	time.Sleep(300 * time.Millisecond)
	for _, e := range stop()[n:] {
		if strings.HasPrefix(e.Type, "file.") {
			t.Fatalf("after a restart: %s %s %v", e.Type, e.Object, e.Attrs)
		}
	}
}
