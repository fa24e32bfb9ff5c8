package fileaccess

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
