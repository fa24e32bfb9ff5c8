//go:build unix

package e2e

import (
	"bufio"
	"context"
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

// TestDemoRunsAgain: make demo a second time reuses its folder and runs,
// and enrolls an agent whose state was removed. It used to find the CA's
// fingerprint in the server's banner, which only a first start prints, and
// so stopped with nothing but make's "Error 1" on every later run.
func TestDemoRunsAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the whole demo")
	}
	for _, tool := range []string{"bash", "curl", "base64"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	runDemo(t, root, dir, "enrolled as") // first start: enrolls
	runDemo(t, root, dir, "")            // again: the agent is enrolled
	if err := os.RemoveAll(filepath.Join(dir, "agent")); err != nil {
		t.Fatal(err)
	}
	runDemo(t, root, dir, "enrolled as") // a later start enrolls too
}

// runDemo runs scripts/demo.sh on dir until its agent runs, then stops it
// as Ctrl-C would. want, if set, must appear in its output first.
func runDemo(t *testing.T, root, dir, want string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "demo.sh"))
	cmd.Env = append(os.Environ(), "DEMO_PORT="+strconv.Itoa(port), "DEMO_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	found, running := want == "", false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		seen = append(seen, line)
		found = found || strings.Contains(line, want)
		if strings.Contains(line, "mamori-agent running") {
			running = true
			break
		}
	}
	// Ctrl-C reaches the whole foreground group: the agent, and the
	// script, whose trap stops the server.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	go func() {
		for sc.Scan() {
		}
	}()
	cmd.Wait()
	if !running || !found {
		t.Fatalf("demo on %s: agent running %v, %q seen %v; output:\n%s", dir, running, want, found, strings.Join(seen, "\n"))
	}
}
