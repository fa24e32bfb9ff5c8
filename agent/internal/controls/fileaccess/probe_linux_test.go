package fileaccess

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/policy"
)

// TestMain lets the test binary act as another process that writes or reads
// a file, so fanotify attribution can be checked against a known PID and
// executable (the probe ignores the agent's own PID).
func TestMain(m *testing.M) {
	if p := os.Getenv("MAMORI_FA_WRITE"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			f.WriteString("written by the helper\n")
			f.Close()
		}
		os.Exit(0)
	}
	if p := os.Getenv("MAMORI_FA_READ"); p != "" {
		os.ReadFile(p)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(t *testing.T, env string) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestFanotifyAttribution(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs root (CAP_SYS_ADMIN); run the tests as root to cover attribution")
	}
	root := t.TempDir()
	h := start(t, newProbe(controlsEnvForProbe()), pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	st := h.waitStatus(controls.Pass, "")
	if st.Attrs["attribution"] != "fanotify" {
		t.Skipf("fanotify unavailable here: %v", st.Attrs["attribution"])
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	me, _ := user.Current()

	f := filepath.Join(root, "sub", "名簿.csv")
	os.Mkdir(filepath.Dir(f), 0o755)
	pid := helper(t, "MAMORI_FA_WRITE="+f)
	e := h.waitEvent(TypeCreated, f)
	if e.User != me.Username || e.Process != exe || num(e.Attrs["pid"]) != int64(pid) {
		t.Fatalf("created %+v; want user %s process %s pid %d", e, me.Username, exe, pid)
	}
	pid = helper(t, "MAMORI_FA_READ="+f)
	e = h.waitEvent(TypeRead, f)
	if e.User != me.Username || e.Process != exe || num(e.Attrs["pid"]) != int64(pid) {
		t.Fatalf("read %+v; want pid %d", e, pid)
	}
	// The agent's own accesses are not attributed (and its reads not logged).
	own := filepath.Join(root, "own.txt")
	os.WriteFile(own, []byte("x"), 0o644)
	e = h.waitEvent(TypeCreated, own)
	if e.User != "" || e.Process != "" {
		t.Fatalf("own write attributed: %+v", e)
	}
}

func controlsEnvForProbe() controls.Env {
	return controls.Env{Clock: controls.RealClock{}, Log: zerolog.Nop()}
}
