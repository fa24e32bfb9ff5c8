package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestConnectionFloodDoesNotStopServer runs the server with a descriptor
// limit of 1024 (as a small unit file would) and opens 1,600 TLS
// connections to it without credentials, each sending GET /healthz and then
// held open. Before the connection cap the descriptors ran out and the
// embedded etcd exited the server ("too many open files" while purging its
// WAL). Now the server sheds idle connections, keeps answering /healthz and
// keeps storing a real agent's events, contiguous.
func TestConnectionFloodDoesNotStopServer(t *testing.T) {
	srvBin, agentBin := binaries(t)
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh for ulimit")
	}
	dir, port := filepath.Join(t.TempDir(), "data"), freePort(t)
	cmd := exec.Command("sh", append([]string{"-c", `ulimit -n 1024 && exec "$0" "$@"`, srvBin}, serverArgs(dir, port)...)...)
	s := startServerCmd(t, cmd, dir)
	a := enroll(t, agentBin, s)
	a.start(t, 20)
	waitFor(t, 60*time.Second, "the agent's first events", func() bool { return len(s.events(t, a.id)) > 10 })

	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	const flood = 1600
	var (
		mu     sync.Mutex
		conns  []net.Conn
		opened atomic.Int64
		wg     sync.WaitGroup
		next   = make(chan int)
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
				if err != nil {
					continue // shed during the handshake: fine
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
				if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					opened.Add(1)
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	for i := range flood {
		next <- i
	}
	close(next)
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if s.cmd.ProcessState != nil || s.cmd.Process.Signal(syscall.Signal(0)) != nil {
		t.Fatalf("the server exited during the flood; output:\n%s", s.out.String())
	}
	if opened.Load() < flood/2 {
		t.Fatalf("only %d of %d connections got an answer to /healthz", opened.Load(), flood)
	}
	held := 0
	buf := make([]byte, 512)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		_, err := c.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			held++
		}
	}
	if held >= 1024 {
		t.Fatalf("%d connections still open with a descriptor limit of 1024", held)
	}
	// Still serving: /healthz on a fresh connection, and the agent's events.
	resp, err := s.admin.Get(s.url + "/healthz")
	if err != nil {
		t.Fatalf("/healthz after the flood: %v\n%s", err, s.out.String())
	}
	resp.Body.Close()
	before := len(s.events(t, a.id))
	waitFor(t, 60*time.Second, "more of the agent's events after the flood", func() bool {
		return len(s.events(t, a.id)) > before+20
	})
	checkContiguous(t, s.events(t, a.id))
	if out := s.out.String(); strings.Contains(out, "too many open files") {
		t.Errorf("the server ran out of descriptors:\n%s", out)
	}
	t.Logf("%d connections answered, %d still held at the end, server fine", opened.Load(), held)
}
