package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSelfEnrollAfterServerOutage is what an MSI or .deb install does: the
// installer only writes the config (`mamori-agent configure`, never
// contacting the server), and the agent started from that config with no
// enrollment enrolls itself. The server is down for its first attempts and
// the list's first URL never answers; the agent keeps retrying with backoff,
// enrolls through the second URL once the server is back, removes the token
// from its config and ships its events.
func TestSelfEnrollAfterServerOutage(t *testing.T) {
	srvBin, agentBin := binaries(t)
	port := freePort(t)
	dataDir := filepath.Join(t.TempDir(), "server")
	first := startServer(t, srvBin, dataDir, port) // creates the CA and the token
	token, caHash, url := first.token, first.caHash, first.url
	first.stop(t, syscall.SIGTERM)

	dir := filepath.Join(t.TempDir(), "agent-state")
	dead := fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
	out, err := exec.Command(agentBin, "configure", "--server", dead+","+url, "--token", token,
		"--ca-hash", caHash, "--department", "総務部", "--state-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("configure: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "enrolls itself") {
		t.Errorf("configure said %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "agent.json")); err == nil {
		t.Fatal("configure enrolled (it must never contact the server)")
	}

	a := &agent{bin: agentBin, dir: dir}
	p := a.start(t, 0)
	waitFor(t, 30*time.Second, "two failed enrollment attempts while the server is down", func() bool {
		return strings.Count(p.out.String(), "enrollment failed") >= 2
	})
	if p.cmd.ProcessState != nil {
		t.Fatalf("agent exited while the server was down:\n%s", p.out.String())
	}
	st := a.status(t)
	if st["enrolled"] != false {
		t.Fatalf("status while not enrolled: %v", st)
	}

	s := startServer(t, srvBin, dataDir, port)
	waitFor(t, 60*time.Second, "the agent to enroll itself", func() bool {
		_, err := os.Stat(filepath.Join(dir, "agent.json"))
		return err == nil
	})
	b, err := os.ReadFile(filepath.Join(dir, "agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	var id struct {
		AgentID    string `json:"agent_id"`
		Server     string `json:"server"`
		Department string `json:"department"`
	}
	if err := json.Unmarshal(b, &id); err != nil || id.AgentID == "" || id.Server != url || id.Department != "総務部" {
		t.Fatalf("agent.json %s: %v (want server %s, the second of the list)", b, err, url)
	}
	a.id = id.AgentID
	waitFor(t, 30*time.Second, "agent.started to arrive at the server", func() bool {
		return countType(s.events(t, a.id), "agent.started") >= 1
	})
	waitFor(t, 10*time.Second, "the token to leave the config", func() bool {
		c, err := os.ReadFile(filepath.Join(dir, "config.json"))
		return err == nil && !strings.Contains(string(c), token) && strings.Contains(string(c), url)
	})
	if strings.Contains(p.out.String(), token) {
		t.Fatal("the agent logged its enrollment token")
	}
	if fi, err := os.Stat(filepath.Join(dir, "config.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.json mode: %v %v", fi.Mode(), err)
	}

	// A service stop (as on uninstall) ships what is spooled before it
	// exits, within a bounded time: agent.stopping is on the server with no
	// restart of the agent.
	p.stop(t, syscall.SIGTERM)
	if n := countType(s.events(t, a.id), "agent.stopping"); n != 1 {
		t.Fatalf("agent.stopping stored %d times after the stop, want 1; agent output:\n%s", n, p.out.String())
	}
	if !strings.Contains(p.out.String(), "every event shipped") {
		t.Errorf("the agent did not say it shipped everything:\n%s", p.out.String())
	}
}
