package fileaccess

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFanotifyMovedIn: a helper moves a file from a folder nobody watches
// into the watched one, another moves one onto that name. The kernel
// reports each rename under its new name only (the old folder has no mark);
// that is the mover's operation, so the file.created and the file.modified
// are attributed to the helpers as observed, not last_writer.
func TestFanotifyMovedIn(t *testing.T) {
	root, h, method := fidHarness(t, true)
	if method != "fanotify+fid" {
		t.Skipf("no fanotify FID here: attribution %q", method)
	}
	src := filepath.Join(t.TempDir(), "名簿.csv")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(root, "名簿.csv")
	pid, release := helper(t, "MAMORI_FA_RENAME="+src, "MAMORI_FA_TO="+dst)
	e := h.waitEvent(TypeCreated, dst)
	release()
	wantBy(t, e, pid, sourceObserved)

	src2 := filepath.Join(t.TempDir(), "名簿-新.csv")
	if err := os.WriteFile(src2, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	pid, release = helper(t, "MAMORI_FA_RENAME="+src2, "MAMORI_FA_TO="+dst)
	e = h.waitEvent(TypeModified, dst)
	release()
	wantBy(t, e, pid, sourceObserved)
}

// TestFIDNewNameAccess: the FID group's rename records say which name is the
// new one, on both kernel generations: FAN_RENAME (>= 5.17; a move in from an
// unmarked folder has the new name only) and FAN_MOVED_FROM / FAN_MOVED_TO
// (5.9-5.16, which this machine's kernel does not use). Events built to the
// kernel's layout; root for open_by_handle_at.
func TestFIDNewNameAccess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("open_by_handle_at needs root (CAP_DAC_READ_SEARCH)")
	}
	root := t.TempDir()
	p, fsid := fidProbeOn(t, root)
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, root, 0)
	if err != nil {
		t.Skipf("no file handles here: %v", err)
	}
	rec := func(typ uint8, name string) []byte { return fidInfoBytes(typ, fsid, fh.Type(), fh.Bytes(), name) }
	pid := int32(os.Getppid())
	in, out := filepath.Join(root, "in.csv"), filepath.Join(root, "out.csv")
	for _, c := range []struct {
		name string
		ev   []byte
		want map[string]bool // path -> NewName
	}{
		{"FAN_RENAME, new name only", fidEventBytes(fanRename, pid, rec(fanInfoNewDFIDName, "in.csv")), map[string]bool{in: true}},
		{"FAN_RENAME, both names", fidEventBytes(fanRename, pid, rec(fanInfoOldDFIDName, "out.csv"), rec(fanInfoNewDFIDName, "in.csv")),
			map[string]bool{out: false, in: true}},
		{"FAN_MOVED_TO", fidEventBytes(fanMovedTo, pid, rec(fanInfoDFIDName, "in.csv")), map[string]bool{in: true}},
		{"FAN_MOVED_FROM", fidEventBytes(fanMovedFrom, pid, rec(fanInfoDFIDName, "out.csv")), map[string]bool{out: false}},
	} {
		evs, err := parseFanotifyFID(c.ev)
		if err != nil {
			t.Fatal(err)
		}
		if carry := p.handleFID(p.fid, map[string]string{}, nil, time.Time{}, evs, time.Now()); len(carry) != 0 {
			t.Fatalf("%s: %d unresolved", c.name, len(carry))
		}
		got := map[string]bool{}
		for len(p.out) > 0 {
			a := <-p.out
			if !a.Rename {
				t.Fatalf("%s: %+v not a rename", c.name, a)
			}
			got[a.Path] = a.NewName
		}
		if len(got) != len(c.want) {
			t.Fatalf("%s: accesses %v, want %v", c.name, got, c.want)
		}
		for k, v := range c.want {
			if nn, ok := got[k]; !ok || nn != v {
				t.Fatalf("%s: accesses (path: new name) %v, want %v", c.name, got, c.want)
			}
		}
	}
}
