// Package e2e runs the real mamori-server and mamori-agent programs against
// each other on loopback: enrollment, shipping, a server outage and an agent
// killed with SIGKILL, compliance, register folders watched and logged, and
// removable media blocked or allowed by a carry-out window (the agent's
// media probe on a fixture sysfs tree via MAMORI_HOST_ROOT), checked
// through the admin API.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
	"github.com/mamori/mamori/shared/wire"
)

var (
	binDir   string
	buildErr error
	buildMu  sync.Once
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mamori-e2e-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaries builds both programs once per test binary.
func binaries(t testing.TB) (server, agent string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("e2e runs the programs as local processes with signals; Windows is covered by unit tests under Wine")
	}
	server, agent = filepath.Join(binDir, "mamori-server"), filepath.Join(binDir, "mamori-agent")
	buildMu.Do(func() {
		for _, b := range [][2]string{{server, "../server"}, {agent, "../agent"}} {
			out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return server, agent
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a running program with its output kept for failure messages.
type proc struct {
	cmd *exec.Cmd
	out *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (p *proc) stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-done
		t.Errorf("%s did not stop within 30s after %v", p.cmd.Path, sig)
	}
}

// dashboardRE finds the URL in the start banner.
var dashboardRE = regexp.MustCompile(`dashboard:\s+(https://\S+)`)

var enrollRE = regexp.MustCompile(`mamori-agent enroll --server (https://\S+) --token (\S+) --ca-hash (sha256:[0-9a-f]{64})`)

// server is a mamori-server process with what it printed.
type server struct {
	*proc
	dir, url, token, caHash string
	admin                   *http.Client
	adminToken              string
}

func startServer(t testing.TB, bin, dir string, port int) *server {
	t.Helper()
	return startServerCmd(t, exec.Command(bin, serverArgs(dir, port)...), dir)
}

func serverArgs(dir string, port int) []string {
	return []string{"serve", "--data-dir", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--hostname", "127.0.0.1,localhost", "--log-level", "warn"}
}

// startServerCmd starts the server with cmd (which runs serverArgs).
func startServerCmd(t testing.TB, cmd *exec.Cmd, dir string) *server {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: &syncBuf{}}
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t, syscall.SIGTERM) })
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		dashboard := ""
		for sc.Scan() {
			p.out.Write(append(sc.Bytes(), '\n'))
			if m := dashboardRE.FindStringSubmatch(sc.Text()); m != nil {
				dashboard = m[1]
			}
			if m := enrollRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			} else if strings.Contains(sc.Text(), "shown on the first start only") {
				found <- []string{"", dashboard, "", ""} // a restart: read them from the data dir
			}
		}
	}()
	var m []string
	select {
	case m = <-found:
	case <-time.After(90 * time.Second):
		t.Fatalf("server printed no enroll command; output:\n%s", p.out.String())
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if m[2] == "" {
		// The bootstrap token is printed on the first start only; later
		// starts leave it in its file.
		tok, err := os.ReadFile(filepath.Join(dir, "enroll-token"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(ca)
		if blk == nil {
			t.Fatal("ca.pem holds no certificate")
		}
		sum := sha256.Sum256(blk.Bytes)
		m[2], m[3] = strings.TrimSpace(string(tok)), "sha256:"+hex.EncodeToString(sum[:])
	}
	s := &server{proc: p, dir: dir, url: strings.TrimSuffix(m[1], "/"), token: m[2], caHash: m[3]}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	s.admin = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	tok, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	s.adminToken = strings.TrimSpace(string(tok))
	return s
}

// metrics returns the server's /metrics page.
func (s *server) metrics(t testing.TB) []byte {
	t.Helper()
	resp, err := s.admin.Get(s.url + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %d %v", resp.StatusCode, err)
	}
	return b
}

// events returns every stored event of the agent, following cursors.
func (s *server) events(t testing.TB, agent string) []event.Event {
	t.Helper()
	return s.query(t, url.Values{"agent": {agent}})
}

// query returns every event GET /api/v1/events finds for filter,
// following cursors.
func (s *server) query(t testing.TB, filter url.Values) []event.Event {
	t.Helper()
	var all []event.Event
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		for k, v := range filter {
			q[k] = v
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		req, _ := http.NewRequest("GET", s.url+"/api/v1/events?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+s.adminToken)
		resp, err := s.admin.Do(req)
		if err != nil {
			t.Fatalf("list events: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("list events: %s: %s", resp.Status, b)
		}
		var page struct {
			Events []event.Event `json:"events"`
			Next   string        `json:"next"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatalf("list events: %v", err)
		}
		all = append(all, page.Events...)
		if page.Next == "" || len(page.Events) == 0 {
			return all
		}
		cursor = page.Next
	}
}

// agent drives the mamori-agent program in one state dir.
type agent struct {
	bin, dir string
	id       string
}

func enroll(t testing.TB, bin string, s *server) *agent {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "agent-state")
	out, err := exec.Command(bin, "enroll", "--server", s.url, "--token", s.token, "--ca-hash", s.caHash,
		"--state-dir", dir, "--department", "総務部").CombinedOutput()
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	var st struct {
		AgentID string `json:"agent_id"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil || st.AgentID == "" {
		t.Fatalf("agent.json: %v %s", err, b)
	}
	return &agent{bin: bin, dir: dir, id: st.AgentID}
}

func (a *agent) start(t testing.TB, rate int) *proc {
	t.Helper()
	return a.startEnv(t, rate)
}

// startEnv starts the agent with extra environment (KEY=VALUE).
func (a *agent) startEnv(t testing.TB, rate int, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(a.bin, "run", "--state-dir", a.dir)
	cmd.Env = append(append(os.Environ(), fmt.Sprintf("MAMORI_TEST_EMIT_RATE=%d", rate)), env...)
	p := &proc{cmd: cmd, out: &syncBuf{}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t, syscall.SIGTERM) })
	return p
}

// status runs `mamori-agent status`.
func (a *agent) status(t testing.TB) map[string]any {
	t.Helper()
	out, err := exec.Command(a.bin, "status", "--state-dir", a.dir).Output()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	return m
}

// appliedPolicy is the policy the agent applied and saved last (nil before
// the first): policy.json is written only after every control took it.
func (a *agent) appliedPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.dir, "policy.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var pr wire.PolicyResponse
	if err := json.Unmarshal(b, &pr); err != nil {
		t.Fatalf("policy.json: %v", err)
	}
	p, err := policy.ParseJSON(pr.Policy)
	if err != nil {
		t.Fatalf("policy.json: %v", err)
	}
	return p
}

// waitFor polls cond every 250ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkContiguous asserts seqs 1..N each once, in order, chained, and
// agent.test events numbered without gap within each agent run.
func checkContiguous(t testing.TB, evs []event.Event) {
	t.Helper()
	seen := map[uint64]bool{}
	for i, e := range evs {
		if seen[e.Seq] {
			t.Fatalf("seq %d stored twice", e.Seq)
		}
		seen[e.Seq] = true
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: gap or reordering", i, e.Seq)
		}
		if i > 0 && e.Prev != evs[i-1].Hash {
			t.Fatalf("seq %d does not chain to seq %d", e.Seq, evs[i-1].Seq)
		}
	}
	if _, err := event.VerifyChain(evs[0].Agent, 0, "", evs); err != nil {
		t.Fatalf("chain: %v", err)
	}
}

func maxSeq(evs []event.Event) uint64 {
	var m uint64
	for _, e := range evs {
		m = max(m, e.Seq)
	}
	return m
}

func countType(evs []event.Event, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// lastSeq reads the agent's newest spooled seq from status.json.
func lastSeq(t testing.TB, a *agent) uint64 {
	m := a.status(t)
	v, _ := m["last_seq"].(float64)
	return uint64(v)
}

func TestEnrollRunEventsArrive(t *testing.T) {
	srvBin, agentBin := binaries(t)
	s := startServer(t, srvBin, filepath.Join(t.TempDir(), "data"), freePort(t))
	a := enroll(t, agentBin, s)
	if fi, err := os.Stat(filepath.Join(a.dir, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v %v", err, fi)
	}
	if fi, _ := os.Stat(a.dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v", fi.Mode().Perm())
	}
	p := a.start(t, 20)
	var evs []event.Event
	waitFor(t, 60*time.Second, "40 test events on the server", func() bool {
		evs = s.events(t, a.id)
		return countType(evs, "agent.test") >= 40
	})
	for _, typ := range []string{"agent.started", "agent.inventory"} {
		if countType(evs, typ) == 0 {
			t.Errorf("no %s event on the server", typ)
		}
	}
	if countType(evs, "agent.policy_applied") == 0 {
		waitFor(t, 30*time.Second, "agent.policy_applied", func() bool {
			return countType(s.events(t, a.id), "agent.policy_applied") > 0
		})
	}
	checkContiguous(t, s.events(t, a.id))
	// The first batch is gzip; once the server has said it takes zstd, the
	// agent's batches are zstd.
	waitFor(t, 30*time.Second, "a zstd batch acked", func() bool {
		return regexp.MustCompile(`(?m)^mamori_batches_acked_total\{encoding="zstd"\} [1-9]`).Match(s.metrics(t))
	})
	var st map[string]any
	waitFor(t, 10*time.Second, "status with a policy version", func() bool {
		st = a.status(t)
		return st["policy_version"] != "" && st["policy_version"] != nil
	})
	if st["enrolled"] != true || st["running"] != true || st["agent_id"] != a.id {
		t.Errorf("status: %v", st)
	}
	p.stop(t, syscall.SIGTERM)
	if st := a.status(t); st["running"] != false {
		t.Errorf("status after stop: running=%v", st["running"])
	}
	if _, err := os.Stat(filepath.Join(a.dir, "policy.json")); err != nil {
		t.Errorf("policy not saved: %v", err)
	}
}

// TestServerOutage stops the server for 30 s while the agent keeps producing
// events; after the restart every event arrives once, in order, no gap.
func TestServerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s outage")
	}
	srvBin, agentBin := binaries(t)
	dataDir, port := filepath.Join(t.TempDir(), "data"), freePort(t)
	s := startServer(t, srvBin, dataDir, port)
	a := enroll(t, agentBin, s)
	ag := a.start(t, 50)
	waitFor(t, 60*time.Second, "first events", func() bool { return countType(s.events(t, a.id), "agent.test") >= 50 })
	s.stop(t, syscall.SIGTERM)
	down := time.Now()
	time.Sleep(30 * time.Second)
	during := lastSeq(t, a)
	s2 := startServer(t, srvBin, dataDir, port)
	t.Logf("server down %v; agent spooled up to seq %d meanwhile", time.Since(down).Round(time.Second), during)
	waitFor(t, 90*time.Second, "catch-up after the outage", func() bool { return maxSeq(s2.events(t, a.id)) >= during })
	ag.stop(t, syscall.SIGTERM)
	evs := s2.events(t, a.id)
	checkContiguous(t, evs)
	n := 0
	for _, e := range evs {
		if e.Type == "agent.test" && e.Time.After(down) && e.Time.Before(down.Add(30*time.Second)) {
			n++
		}
	}
	if n < 30*50/2 {
		t.Errorf("only %d events produced during the outage arrived", n)
	}
	if !strings.Contains(ag.out.String(), "shipping failing") || !strings.Contains(ag.out.String(), "shipping recovered") {
		t.Errorf("agent log lacks the failure/recovery lines:\n%s", ag.out.String())
	}
	if c := strings.Count(ag.out.String(), "shipping failing"); c > 3 {
		t.Errorf("%d failure lines for one outage; want one per kind", c)
	}
}

// TestAgentSIGKILL kills the agent while it ships; after a restart nothing
// is lost and nothing is stored twice.
func TestAgentSIGKILL(t *testing.T) {
	srvBin, agentBin := binaries(t)
	s := startServer(t, srvBin, filepath.Join(t.TempDir(), "data"), freePort(t))
	a := enroll(t, agentBin, s)
	for round := range 3 {
		p := a.start(t, 500)
		time.Sleep(time.Duration(1500+round*700) * time.Millisecond)
		p.stop(t, syscall.SIGKILL)
	}
	p := a.start(t, 0)
	var spooled uint64
	waitFor(t, 30*time.Second, "status after restart", func() bool { spooled = lastSeq(t, a); return spooled > 0 })
	waitFor(t, 60*time.Second, "all spooled events on the server", func() bool { return maxSeq(s.events(t, a.id)) >= spooled })
	p.stop(t, syscall.SIGTERM)
	evs := s.events(t, a.id)
	checkContiguous(t, evs)
	if countType(evs, "agent.test") < 500 {
		t.Errorf("only %d test events", countType(evs, "agent.test"))
	}
	t.Logf("%d events, seqs 1..%d contiguous and unique after 3 SIGKILLs", len(evs), maxSeq(evs))
}
