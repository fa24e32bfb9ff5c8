package fileaccess

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// startFIDAt watches root with the real probe (root, FID group) and the
// tester's bulk threshold.
func startFIDAt(t *testing.T, root string, threshold int) *harness {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs root (CAP_SYS_ADMIN)")
	}
	h := start(t, newProbe(controlsEnvForProbe()), pol(func(f *policy.FileAccess) {
		f.Paths = []string{root}
		f.BulkThreshold = threshold
	}))
	st := h.waitStatus(controls.Pass, "")
	if st.Attrs["attribution"] != "fanotify+fid" {
		t.Skipf("no fanotify FID here: attribution %v", st.Attrs["attribution"])
	}
	return h
}

func sh(t *testing.T, dir, script string) {
	t.Helper()
	cmd := exec.Command("/bin/bash", "-ec", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v %s", script, err, out)
	}
}

// TestFanotifyMoveOutAfterBurst (defects 1 and 3, as the tester did it):
// cp -r of 300 files into the folder, then mv of a folder of personal data
// out of it: the folder and each file in it are file.deleted by mv with
// moved_to under the destination, not counts in the bulk summary, not
// blamed on whoever wrote them.
func TestFanotifyMoveOutAfterBurst(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "顧客")
	os.Mkdir(root, 0o755)
	src := filepath.Join(parent, "src300")
	os.Mkdir(src, 0o755)
	for i := range 300 {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d.csv", i)), []byte("x\n"), 0o644)
	}
	h := startFIDAt(t, root, 200)
	sh(t, root, `mkdir -p 深い/サブ; echo a > 深い/サブ/a.txt; echo b > 深い/b.txt`)
	h.waitEvent(TypeCreated, filepath.Join(root, "深い", "b.txt"))
	time.Sleep(time.Second)
	out := filepath.Join(parent, "moved-out")
	sh(t, parent, `cp -r src300 顧客/一括コピー; sleep 1; mv 顧客/深い moved-out`)
	mv, _ := exec.LookPath("mv")
	mv, _ = filepath.EvalSymlinks(mv)
	deep := filepath.Join(root, "深い")
	for _, rel := range []string{"", "サブ", "サブ/a.txt", "b.txt"} {
		p, to := filepath.Join(deep, rel), filepath.Join(out, rel)
		e := h.waitEvent(TypeDeleted, p)
		if e.Attrs["moved_to"] != to || (e.Process != mv && e.Process != "mv") || e.Attrs["attribution_source"] != sourceObserved {
			t.Errorf("%s: want moved to %s by %s, got\n%s", p, to, mv, describeEvents([]event.Event{e}))
		}
	}
	b := h.waitEvent(TypeBulk, root)
	t.Logf("summary: %v", b.Attrs)
}

// TestFanotifyWatchedFolderMoved (defect 2): mv of the watched folder
// itself is one file.deleted of the folder by mv, with its destination
// (FAN_MOVE_SELF on the folder's own mark), not a deletion of each file.
func TestFanotifyWatchedFolderMoved(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "顧客")
	for i := range 30 {
		d := filepath.Join(root, fmt.Sprintf("d%d", i%3))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, fmt.Sprintf("f%02d.csv", i)), []byte("x"), 0o644)
	}
	h := startFIDAt(t, root, 10)
	dest := filepath.Join(parent, "顧客_moved")
	pid, release := helper(t, "MAMORI_FA_RENAME="+root, "MAMORI_FA_TO="+dest)
	h.waitStatus(controls.Fail, "fileaccess.root_missing")
	time.Sleep(time.Second)
	release()
	evs := changeEvents(h.rec.Events())
	if len(evs) != 1 || evs[0].Object != root || evs[0].Type != TypeDeleted {
		t.Fatalf("want one event for the watched folder, got %d:\n%s", len(evs), describeEvents(evs))
	}
	e := evs[0]
	if e.Attrs["moved_to"] != dest || num(e.Attrs["contents"]) != 33 || e.Attrs["watched_folder"] != true {
		t.Fatalf("watched folder moved: %s", describeEvents(evs))
	}
	wantBy(t, e, pid, sourceObserved)
}

// TestFanotifyWatchedFolderRemoved: rm -r of the watched folder: each file
// is rm's deletion, and the folder's own too (FAN_DELETE_SELF). The
// folder's own is unattributed when the agent had a folder of it open at
// that instant (the kernel then reports the removal when the agent closes
// it, as the agent's: README), a few runs in a hundred here; so up to
// three tries, one of which must be attributed.
func TestFanotifyWatchedFolderRemoved(t *testing.T) {
	for try := 1; ; try++ {
		if removeWatchedFolder(t) {
			return
		}
		if try == 3 {
			t.Fatal("three tries, none fully attributed")
		}
	}
}

func removeWatchedFolder(t *testing.T) (attributed bool) {
	parent := t.TempDir()
	root := filepath.Join(parent, "顧客")
	os.MkdirAll(filepath.Join(root, "d"), 0o755)
	os.WriteFile(filepath.Join(root, "d", "a.csv"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "b.csv"), []byte("x"), 0o644)
	h := startFIDAt(t, root, 10)
	defer func() { h.stop(); h.stop = nil }()
	pid, release := helper(t, "MAMORI_FA_REMOVE="+root)
	h.waitStatus(controls.Fail, "fileaccess.root_missing")
	time.Sleep(time.Second)
	release()
	attributed = true
	for _, p := range []string{filepath.Join(root, "d", "a.csv"), filepath.Join(root, "d"), filepath.Join(root, "b.csv"), root} {
		e := h.waitEvent(TypeDeleted, p)
		if e.Attrs["moved_to"] != nil || e.Attrs["moved_with"] != nil || (p == root) != (e.Attrs["watched_folder"] == true) {
			t.Errorf("removed, not moved: %s", describeEvents([]event.Event{e}))
		}
		if e.User == "" && e.Process == "" && e.Attrs["pid"] == nil {
			t.Logf("%s: removal unattributed (the races in the README)", p)
			attributed = false
			continue
		}
		wantBy(t, e, pid, sourceObserved)
	}
	return attributed
}
