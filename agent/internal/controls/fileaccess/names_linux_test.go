package fileaccess

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// TestNonUTF8NameIsRecorded: a file named in Shift_JIS bytes (名簿 as
// 8c da 8b 71, not UTF-8) is in the log, its path escaped reversibly
// (\x8c for a byte that is not UTF-8), not refused by the spool.
func TestNonUTF8NameIsRecorded(t *testing.T) {
	root := t.TempDir()
	h := start(t, &fakeProbe{err: fmt.Errorf("none: %w", errors.ErrUnsupported)}, pol(func(f *policy.FileAccess) {
		f.Folders = []policy.Folder{{Path: root, RegisterID: "PI-0001"}}
	}))
	h.waitStatus(controls.Pass, "fileaccess.watching")
	raw := filepath.Join(root, "\x8c\xda\x8b\x71.csv")
	if err := os.WriteFile(raw, []byte("a,b\n"), 0o644); errors.Is(err, syscall.EILSEQ) {
		t.Skipf("this file system takes UTF-8 names only: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	// \xda\x8b happens to be valid UTF-8 (U+068B): only \x8c is escaped.
	want := root + `/\x8c` + "\u068bq.csv"
	evs := h.waitFor("file.created of the csv", func(evs []event.Event) bool {
		for _, e := range evs {
			if e.Type == TypeCreated && strings.HasSuffix(e.Object, "q.csv") {
				return true
			}
		}
		return false
	})
	var e event.Event
	for _, x := range evs {
		if x.Type == TypeCreated && strings.HasSuffix(x.Object, "q.csv") {
			e = x
		}
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("the spool would refuse %q: %v", e.Object, err)
	}
	if e.Object != want || e.Attrs["path_encoding"] != "escaped" || e.RegisterID != "PI-0001" {
		t.Fatalf("created: object %q attrs %v register %q, want object %q", e.Object, e.Attrs, e.RegisterID, want)
	}

	// A rename to another Shift_JIS name (あ.csv): both names escaped.
	raw2 := filepath.Join(root, "\x82\xa0.csv")
	if err := os.Rename(raw, raw2); err != nil {
		t.Fatal(err)
	}
	r := h.waitEvent(TypeRenamed, root+`/\x82\xa0.csv`)
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.Attrs["old_path"] != want || r.Attrs["path_encoding"] != "escaped" {
		t.Fatalf("renamed attrs %v", r.Attrs)
	}
	// A valid name next to it is as it was: no escaping, no attr.
	ok := filepath.Join(root, `名簿\a.csv`)
	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if c := h.waitEvent(TypeCreated, ok); c.Attrs["path_encoding"] != nil {
		t.Fatalf("valid name escaped: %v", c.Attrs)
	}
}
