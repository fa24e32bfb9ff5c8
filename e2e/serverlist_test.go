package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tcpFront forwards TCP connections to a server (TLS passes through): a
// second address for the same server that the test can take down.
type tcpFront struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newTCPFront(t *testing.T, to string) *tcpFront {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &tcpFront{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, s)
			f.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(f.down)
	return f
}

func (f *tcpFront) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

// down closes the address and every connection through it, as a server
// that dies does.
func (f *tcpFront) down() {
	f.ln.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// TestAgentShipsWhileFirstServerDown: a real agent with two server URLs
// ships through the first; when the first goes away mid-stream (its
// connections cut, its port closed), the agent goes on through the second,
// every event arrives once and the chain has no gap.
func TestAgentShipsWhileFirstServerDown(t *testing.T) {
	srvBin, agentBin := binaries(t)
	port := freePort(t)
	s := startServer(t, srvBin, filepath.Join(t.TempDir(), "server"), port)
	front := newTCPFront(t, fmt.Sprintf("127.0.0.1:%d", port))
	first := fmt.Sprintf("https://127.0.0.1:%d", front.port()) // the server's certificate names 127.0.0.1
	dir := filepath.Join(t.TempDir(), "agent-state")
	out, err := exec.Command(agentBin, "configure", "--server", first+","+s.url, "--token", s.token,
		"--ca-hash", s.caHash, "--state-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("configure: %v\n%s", err, out)
	}
	a := &agent{bin: agentBin, dir: dir}
	p := a.start(t, 50)
	waitFor(t, 60*time.Second, "the agent to enroll through the first URL", func() bool {
		_, err := os.Stat(filepath.Join(dir, "agent.json"))
		return err == nil
	})
	b, err := os.ReadFile(filepath.Join(dir, "agent.json"))
	var id struct {
		AgentID string `json:"agent_id"`
	}
	if err != nil || json.Unmarshal(b, &id) != nil || id.AgentID == "" {
		t.Fatalf("agent.json: %v %s", err, b)
	}
	a.id = id.AgentID
	waitFor(t, 60*time.Second, "events through the first URL", func() bool {
		return countType(s.events(t, a.id), "agent.test") >= 100
	})
	front.down()
	atDown := maxSeq(s.events(t, a.id))
	waitFor(t, 60*time.Second, "events through the second URL while the first is down", func() bool {
		return maxSeq(s.events(t, a.id)) >= atDown+250 // 5 s of events at 50/s
	})
	p.stop(t, syscall.SIGTERM)
	checkContiguous(t, s.events(t, a.id))
}
