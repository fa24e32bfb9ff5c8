package fileaccess

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/policy"
)

// TestFanotifyReadOfReplacedFile: a file read through a descriptor whose
// file was replaced meanwhile (sed -i: the original is read, the output
// renamed over it, then the original closed) is a file.read of the path
// with unlinked: true, not of "path (deleted)", the name Linux shows in
// /proc/self/fd for an unlinked file. A real file of that name keeps it.
func TestFanotifyReadOfReplacedFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs root (CAP_SYS_ADMIN); run the tests as root to cover reads")
	}
	root := t.TempDir()
	h := start(t, newProbe(controlsEnvForProbe()), pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	st := h.waitStatus(controls.Pass, "")
	if m, _ := st.Attrs["attribution"].(string); !strings.HasPrefix(m, "fanotify") {
		t.Skipf("fanotify unavailable here: %v", st.Attrs["attribution"])
	}
	f := filepath.Join(root, "顧客名簿.csv")
	real := filepath.Join(root, "名簿.csv (deleted)")
	for _, p := range []string{f, real} {
		if err := os.WriteFile(p, []byte("A,a\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "MAMORI_FA_READHOLD="+f)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "read\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	tmp := filepath.Join(root, "sedAbc123")
	if err := os.WriteFile(tmp, []byte("B,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f); err != nil { // the original is unlinked, still open in the helper
		t.Fatal(err)
	}
	in.Write([]byte("\n")) // close it now
	e := h.waitEvent(TypeRead, f)
	if e.Attrs["unlinked"] != true || num(e.Attrs["pid"]) != int64(cmd.Process.Pid) {
		t.Fatalf("read %+v; want unlinked: true by pid %d", e, cmd.Process.Pid)
	}

	_, release := helper(t, "MAMORI_FA_READ="+real)
	e = h.waitEvent(TypeRead, real)
	release()
	if e.Attrs["unlinked"] != nil {
		t.Fatalf("read of a real file named %q: %+v", filepath.Base(real), e)
	}
	if x := find(h.rec.Events(), TypeRead, f+" (deleted)"); x != nil {
		t.Fatalf("read logged under an invented path: %+v", x)
	}
}
