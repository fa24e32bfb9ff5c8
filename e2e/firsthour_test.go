package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A second serve on a data dir a running server holds refuses at once,
// naming the process, instead of hanging on embedded etcd's lock; the
// running server is not disturbed.
func TestServeRefusesHeldDataDir(t *testing.T) {
	srvBin, _ := binaries(t)
	dir := filepath.Join(t.TempDir(), "server")
	s := startServer(t, srvBin, dir, freePort(t))
	start := time.Now()
	cmd := exec.Command(srvBin, "serve", "--data-dir", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("second serve still running after 10 s:\n%s", out)
	}
	took := time.Since(start)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("second serve: %v, want a non-zero exit\n%s", err, out)
	}
	want := "pid " + strconv.Itoa(s.cmd.Process.Pid)
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "stop that server") {
		t.Fatalf("refusal does not name the holder (%s):\n%s", want, out)
	}
	if took > 3*time.Second { // a second, plus process start on a loaded 2-core machine
		t.Errorf("refusal took %s", took)
	}
	if s.cmd.ProcessState != nil {
		t.Fatal("the running server stopped")
	}
	resp, err := s.admin.Get(s.url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("running server after the refusal: %v %v", resp, err)
	}
	resp.Body.Close()
}

// A first serve that cannot listen leaves no half-made data dir behind.
func TestServeCannotListenLeavesNoDataDir(t *testing.T) {
	srvBin, _ := binaries(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := filepath.Join(t.TempDir(), "server")
	out, err := exec.Command(srvBin, "serve", "--data-dir", dir, "--listen", l.Addr().String()).CombinedOutput()
	if err == nil {
		t.Fatalf("serve on a taken port succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "listen") {
		t.Errorf("message does not say it could not listen:\n%s", out)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		t.Fatalf("half-made data dir left: %v %v", err, entries)
	}
}

// The start banner says where the admin password is.
func TestServeBannerNamesPasswordFile(t *testing.T) {
	srvBin, _ := binaries(t)
	dir := filepath.Join(t.TempDir(), "server")
	s := startServer(t, srvBin, dir, freePort(t))
	defer s.stop(t, syscall.SIGTERM)
	waitFor(t, 10*time.Second, "the banner", func() bool { return strings.Contains(s.out.String(), "admin login") })
	if !strings.Contains(s.out.String(), filepath.Join(dir, "initial-admin-password")) {
		t.Fatalf("banner does not name the password file:\n%s", s.out.String())
	}
}
