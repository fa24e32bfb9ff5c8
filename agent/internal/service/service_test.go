package service

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/agent/internal/uplink"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

func TestFlagErrorsExit2AndChangeNothing(t *testing.T) {
	cases := [][]string{
		{},
		{"bogus"},
		{"enroll"},
		{"enroll", "--server", "https://127.0.0.1:1", "--token", "t"},
		{"enroll", "--server", "http://x:1", "--token", "t", "--ca-hash", "sha256:" + strings.Repeat("a", 64)},
		{"enroll", "--server", "https://x:1", "--token", "t", "--ca-hash", "md5:abc"},
		{"enroll", "--nope"},
		{"run", "--log-level", "loud"},
		{"run", "extra"},
		{"status", "--state-dir"},
		{"install", "now"},
		{"configure"},
		{"configure", "--server", "https://a:1"},
		{"configure", "--server", "https://a:1,http://b:2", "--ca-hash", "sha256:" + strings.Repeat("a", 64)},
		{"configure", "--server", "https://a:1", "--ca-hash", "sha256:" + strings.Repeat("a", 64), "--proxy", "socks://p"},
		{"configure", "--server", "https://a:1", "--ca-hash", "sha256:zz", "--token", "t"},
		{"configure", "--env-file", "/nonexistent/agent.env"},
	}
	for _, args := range cases {
		dir := filepath.Join(t.TempDir(), "state")
		full := append(append([]string(nil), args...), "--state-dir", dir)
		if len(args) == 0 || args[0] == "bogus" || args[0] == "status" {
			full = args
		}
		var out, errb bytes.Buffer
		if code := Main(full, nil, &out, &errb); code != exitUsage {
			t.Errorf("%q: exit %d, want 2; stderr %s", full, code, errb.String())
		}
		if errb.Len() == 0 {
			t.Errorf("%q: no message", full)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%q: created %s", full, dir)
		}
	}
}

// status on a dir that was never enrolled (and has no installed config to
// enroll from) exits 1 with a message saying so, still printing its JSON.
func TestStatusNotEnrolled(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"status", "--state-dir", t.TempDir()}, nil, &out, &errb); code != exitError ||
		!strings.Contains(errb.String(), "not enrolled") {
		t.Fatalf("exit %d, want %d: %s", code, exitError, errb.String())
	}
	var s Status
	if err := json.Unmarshal(out.Bytes(), &s); err != nil || s.Enrolled {
		t.Fatalf("%v %s", err, out.String())
	}
}

func TestDefaultStateDir(t *testing.T) {
	d := DefaultStateDir()
	if !filepath.IsAbs(d) && !strings.Contains(d, `:\`) {
		t.Fatalf("default state dir %q is not absolute", d)
	}
}

// testCA is a self-signed CA valid for an hour around now.
func testCA() (*x509.Certificate, []byte, *ecdsa.PrivateKey) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caT, caT, caKey.Public(), caKey)
	ca, _ := x509.ParseCertificate(caDER)
	return ca, caDER, caKey
}

// writeIdentity makes an enrolled state dir by hand (a CA, a client cert)
// pointing at a server that is not there: the agent runs offline.
func writeIdentity(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "state")
	ca, caDER, caKey := testCA()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "agent-t"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	leafDER, _ := x509.CreateCertificate(rand.Reader, leafT, ca, key.Public(), caKey)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if err := uplink.MakeStateDir(dir); err != nil {
		t.Fatal(err)
	}
	st, _ := json.Marshal(uplink.State{AgentID: "agent-t", Server: "https://" + addr})
	for name, b := range map[string][]byte{
		uplink.FileKey:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		uplink.FileCert:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		uplink.FileCA:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		uplink.FileAgent: st,
	} {
		if err := uplink.WriteFileAtomic(filepath.Join(dir, name), b); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fakeControl records what the runtime does with it. It refuses policies
// whose name is "refuse" and fails its first runs when failRuns > 0.
type fakeControl struct {
	env      controls.Env
	mu       sync.Mutex
	applied  []string
	runs     atomic.Int32
	failRuns int32
}

func (c *fakeControl) Name() string { return "fake" }
func (c *fakeControl) Apply(_ context.Context, p *policy.Policy) error {
	if p.Name == "refuse" {
		return errors.New("cannot use this")
	}
	c.mu.Lock()
	c.applied = append(c.applied, p.Name)
	c.mu.Unlock()
	return nil
}
func (c *fakeControl) Run(ctx context.Context) error {
	if c.runs.Add(1) <= c.failRuns {
		return errors.New("probe broke")
	}
	<-ctx.Done()
	return nil
}
func (c *fakeControl) Status() controls.Status {
	return controls.Status{State: controls.Pass, Since: time.Unix(0, 0)}
}

func (c *fakeControl) appliedNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.applied...)
}

func mustPolicy(t *testing.T, name string) (*policy.Policy, []byte) {
	p, err := policy.Parse([]byte("apiVersion: mamori/v1\nkind: Policy\nname: " + name + "\ncontrols:\n  agent: {heartbeat: 10m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(p)
	return p, raw
}

// TestRuntimeOffline runs the agent against an unreachable server: the saved
// policy is applied at boot, a failing control is restarted and reported,
// a refused policy keeps the previous one, status.json is written, and the
// stop names the events it leaves in the spool.
func TestRuntimeOffline(t *testing.T) {
	dir := writeIdentity(t)
	saved, raw := mustPolicy(t, "saved")
	if err := uplink.SavePolicy(dir, saved.Version(), raw); err != nil {
		t.Fatal(err)
	}
	fc := &fakeControl{failRuns: 1}
	var rt *Runtime
	factory := func(env controls.Env) controls.Control { fc.env = env; return fc }
	id, _ := uplink.LoadIdentity(dir)
	sp, err := spool.Open(filepath.Join(dir, FileSpool), spool.Options{Agent: id.State.AgentID})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncWriter
	rt = &Runtime{opt: Options{StateDir: dir, Log: zerolog.New(&logs), Factories: []controls.Factory{factory}},
		id: id, spool: sp, started: time.Now(), hbChanged: make(chan struct{}, 1)}
	rt.polVersion.Store("")
	rt.heartbeat.Store(int64(time.Hour))
	if err := rt.buildControls(); err != nil {
		t.Fatal(err)
	}
	if fc.env.StateDir != filepath.Join(dir, "controls", "fake") {
		t.Fatalf("control state dir %q", fc.env.StateDir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for fc.runs.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("failed control not restarted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := fc.appliedNames(); len(got) == 0 || got[0] != "saved" {
		t.Fatalf("applied at boot: %v", got)
	}
	bad, badRaw := mustPolicy(t, "refuse")
	if err := rt.applyPolicy(ctx, bad.Version(), bad, badRaw, true); err == nil {
		t.Fatal("refused policy reported as applied")
	}
	if v := rt.polVersion.Load().(string); v != saved.Version() {
		t.Fatalf("policy version %q after a refused policy, want the saved %q", v, saved.Version())
	}
	if v, _, _, _ := uplink.LoadPolicy(dir); v != saved.Version() {
		t.Fatal("refused policy saved")
	}
	next, nextRaw := mustPolicy(t, "next")
	if err := rt.applyPolicy(ctx, next.Version(), next, nextRaw, true); err != nil {
		t.Fatal(err)
	}
	if v, _, _, _ := uplink.LoadPolicy(dir); v != next.Version() {
		t.Fatal("applied policy not saved")
	}
	time.Sleep(50 * time.Millisecond)
	s, err := ReadStatus(dir)
	if err != nil || !s.Running || s.PolicyVersion != next.Version() || s.Controls["fake"].State != controls.Pass {
		t.Fatalf("status %+v %v", s, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	evs, err := sp.Peek(1000)
	if err != nil {
		t.Fatal(err)
	}
	sp.Close()
	types := map[string]int{}
	for _, e := range evs {
		types[e.Type]++
		if e.Type == "agent.policy_failed" && e.Attrs["version"] != bad.Version() {
			t.Errorf("policy_failed attrs %v", e.Attrs)
		}
		if e.Type == "agent.policy_applied" && (e.Attrs["version"] != next.Version() || e.Attrs["name"] != "next") {
			t.Errorf("policy_applied attrs %v", e.Attrs)
		}
	}
	for _, typ := range []string{"agent.started", "agent.control_failed", "agent.policy_failed", "agent.policy_applied", "agent.stopping"} {
		if types[typ] != 1 {
			t.Errorf("%d %s events, want 1 (all: %v)", types[typ], typ, types)
		}
	}
	if _, err := event.VerifyChain("agent-t", 0, "", evs); err != nil {
		t.Fatal(err)
	}
	// The stop (a service stop, an uninstall) says what it leaves behind.
	if want := fmt.Sprintf(`"unshipped":%d`, len(evs)); !strings.Contains(logs.String(), want) ||
		!strings.Contains(logs.String(), "they stay in the spool") {
		t.Errorf("stop with %d events unshipped did not say so (want %s):\n%s", len(evs), want, logs.String())
	}
	if s, _ := ReadStatus(dir); s.Running {
		t.Error("status says running after stop")
	}
}

// A policy with controls.agent.servers replaces the running agent's server
// list at once (the shipper and policy sync share it) and is saved, so it
// is the list after a restart; a policy without servers leaves it alone.
func TestPolicyServerListReachesRuntime(t *testing.T) {
	dir := writeIdentity(t)
	id, err := uplink.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, FileSpool), spool.Options{Agent: id.State.AgentID, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	r := &Runtime{opt: Options{StateDir: dir, Log: zerolog.Nop()}, id: id, spool: sp, started: time.Now(),
		hbChanged: make(chan struct{}, 1), servers: uplink.NewServerList([]string{id.State.Server})}
	r.polVersion.Store("")
	r.heartbeat.Store(int64(time.Hour))
	ctx := context.Background()

	list := []string{"https://b.example:8443", "https://c.example:8443"}
	p, err := policy.Parse([]byte("apiVersion: mamori/v1\nkind: Policy\nname: ha\ncontrols:\n  agent:\n    servers: [" +
		strings.Join(list, ", ") + "]\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(p)
	if err := r.applyPolicy(ctx, p.Version(), p, raw, true); err != nil {
		t.Fatal(err)
	}
	if got := r.servers.URLs(); strings.Join(got, ",") != strings.Join(list, ",") || r.servers.Current() != list[0] {
		t.Fatalf("running list %v (current %s), want %v", got, r.servers.Current(), list)
	}
	saved, err := uplink.ServersOf(dir, id.State)
	if err != nil || strings.Join(saved, ",") != strings.Join(append(list, id.State.Server), ",") {
		t.Fatalf("list after a restart %v %v, want %v then the enrolled server", saved, err, list)
	}

	other, otherRaw := mustPolicy(t, "other") // no servers in it
	if err := r.applyPolicy(ctx, other.Version(), other, otherRaw, true); err != nil {
		t.Fatal(err)
	}
	if got := r.servers.URLs(); strings.Join(got, ",") != strings.Join(list, ",") {
		t.Fatalf("a policy without servers changed the list to %v", got)
	}
}
