package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/wire"
)

// testEtcdEnv names an etcd binary (Debian's etcd-server, 3.4): the
// 3-member clusters of these tests then run it as processes instead of
// embedded members (.ci/run does both).
const testEtcdEnv = "MAMORI_TEST_ETCD"

// etcdMember is one member of a test cluster on loopback TCP; it can be
// stopped and started again on the same ports and data.
type etcdMember struct {
	cfg *embed.Config
	e   *embed.Etcd // embedded member, while running
	bin string      // etcd binary: run as a process instead
	cmd *exec.Cmd   // the process, while running
}

func (m *etcdMember) start(t *testing.T) {
	t.Helper()
	if m.bin == "" {
		e, err := embed.StartEtcd(m.cfg)
		if err != nil {
			t.Fatalf("etcd %s: %v", m.cfg.Name, err)
		}
		m.e = e
		return
	}
	c := m.cfg
	m.cmd = exec.Command(m.bin, "--name", c.Name, "--data-dir", c.Dir,
		"--listen-client-urls", c.ListenClientUrls[0].String(), "--advertise-client-urls", c.AdvertiseClientUrls[0].String(),
		"--listen-peer-urls", c.ListenPeerUrls[0].String(), "--initial-advertise-peer-urls", c.AdvertisePeerUrls[0].String(),
		"--initial-cluster", c.InitialCluster, "--initial-cluster-token", c.InitialClusterToken,
		"--initial-cluster-state", "new", "--log-level", "error")
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("etcd %s (%s): %v", c.Name, m.bin, err)
	}
}

func (m *etcdMember) stop() {
	if m.e != nil {
		m.e.Close()
		m.e = nil
	}
	if m.cmd != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
		m.cmd = nil
	}
}

// status asks the member itself for its view (leader, member id).
func (m *etcdMember) status(ctx context.Context) (*clientv3.StatusResponse, error) {
	ep := m.cfg.AdvertiseClientUrls[0].String()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return cli.Status(ctx, ep)
}

func loopbackURL(t *testing.T) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

// etcdCluster starts three members (embedded, or processes of the binary
// MAMORI_TEST_ETCD names) and waits until they serve.
func etcdCluster(t *testing.T) ([]*etcdMember, []string) {
	t.Helper()
	var (
		ms        []*etcdMember
		initial   []string
		endpoints []string
	)
	bin := os.Getenv(testEtcdEnv)
	if bin != "" {
		t.Logf("etcd cluster: 3 processes of %s", bin)
	}
	for i := range 3 {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(t.TempDir(), cfg.Name)
		c, p := loopbackURL(t), loopbackURL(t)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{c}, []url.URL{c}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{p}, []url.URL{p}
		cfg.InitialClusterToken = "mamori-outage-test"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop()) // members stopping on purpose
		cfg.ListenMetricsUrls = nil
		ms = append(ms, &etcdMember{cfg: cfg, bin: bin})
		initial = append(initial, cfg.Name+"="+p.String())
		endpoints = append(endpoints, c.String())
	}
	for _, m := range ms {
		m.cfg.InitialCluster = strings.Join(initial, ",")
		m.start(t)
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.stop()
		}
	})
	for _, m := range ms {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if st, err := m.status(context.Background()); err == nil && st.Leader != 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("etcd cluster not ready")
			}
		}
	}
	return ms, endpoints
}

// serverOnCluster starts a 3-member etcd cluster and one server on it.
func serverOnCluster(t *testing.T) ([]*etcdMember, string, *app.Server) {
	t.Helper()
	ms, endpoints := etcdCluster(t)
	dir := t.TempDir()
	srv, err := app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1"}, EtcdEndpoints: endpoints,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return ms, dir, srv
}

// TestEtcdOutage: a server on a 3-member etcd cluster. One member stopped:
// ingest and admin reads go on. A second stopped (no quorum): the writer's
// lease ends but it stays the writer and acks an enrolled agent's batches,
// admin reads of agents and events answer 200 from the cache and the store,
// a policy PUT answers 503 saying etcd is unavailable. Both members back:
// writes work again, the server is still the writer, and a checkpoint from
// before the outage is consistent with one after it.
func TestEtcdOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-member etcd cluster")
	}
	ms, dir, srv := serverOnCluster(t)
	verifier, err := note.NewVerifier(strings.TrimSpace(string(readFile(t, filepath.Join(dir, app.FileLogKeyPub)))))
	if err != nil {
		t.Fatal(err)
	}
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-outage")
	acked := uint64(0)
	ship := func(when string) {
		t.Helper()
		got, err := a.send(a.events(20))
		if err != nil {
			t.Fatalf("%s: batch: %v", when, err)
		}
		if got != a.seq {
			t.Fatalf("%s: acked %d, sent up to %d", when, got, a.seq)
		}
		acked = got
	}
	reads := func(when string) {
		t.Helper()
		var agents any
		if st := adminGet(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/api/v1/agents", nil, &agents); st != 200 {
			t.Fatalf("%s: GET agents: %d", when, st)
		}
		if !strings.Contains(fmt.Sprint(agents), a.id) {
			t.Fatalf("%s: GET agents does not list %s: %v", when, a.id, agents)
		}
		if n := uint64(len(allEvents(t, srv, a.id))); n != acked {
			t.Fatalf("%s: %d events stored, %d acked", when, n, acked)
		}
	}
	policy := func(version string) (int, string) {
		return adminDo(t, srv, "PUT", "/api/v1/policies/outage",
			"apiVersion: mamori/v1\nkind: Policy\nname: outage\ndescription: "+version+"\n")
	}
	ship("all members up")
	reads("all members up")
	if st, body := policy("v1"); st != 200 {
		t.Fatalf("policy PUT, all members up: %d %s", st, body)
	}
	before := signedCheckpoint(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), verifier, int64(acked))

	// One member down (the leader: the harder case): nothing visible.
	leader := leaderOf(t, ms)
	ms[leader].stop()
	ship("one member down")
	reads("one member down")

	// A second down: no quorum.
	other := (leader + 1) % 3
	ms[other].stop()
	ship("no quorum")
	reads("no quorum")
	// The lease ends within its TTL; the writer must stay the writer.
	for deadline := time.Now().Add(30 * time.Second); !srv.InEtcdOutage() && srv.Role() == "writer"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer's lease did not end without quorum")
		}
	}
	if srv.Role() != "writer" {
		t.Fatalf("role %q once the lease ended without quorum", srv.Role())
	}
	ship("no quorum, lease ended")
	reads("no quorum, lease ended")
	st, body := policy("v2")
	if st != 503 || !strings.Contains(body, "etcd is unavailable") || !strings.Contains(body, "quorum") {
		t.Fatalf("policy PUT without quorum: %d %s", st, body)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("policy PUT without quorum: not a JSON error: %s", body)
	}

	// Quorum back.
	ms[leader].start(t)
	ms[other].start(t)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st, _ := policy("v3"); st == 200 {
			break
		}
		if time.Now().After(deadline) {
			st, body := policy("v3")
			t.Fatalf("policy PUT after quorum returned: %d %s", st, body)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); srv.InEtcdOutage(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not take its term up again")
		}
	}
	if srv.Role() != "writer" {
		t.Fatalf("role %q after the outage", srv.Role())
	}
	ship("quorum back")
	reads("quorum back")
	after := signedCheckpoint(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), verifier, before.Size+1)
	proof, err := tlog.ProveTree(after.Size, before.Size, srv.Store())
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(proof, after.Size, after.Root, before.Size, before.Root); err != nil {
		t.Fatalf("checkpoint %d -> %d across the outage: %v", before.Size, after.Size, err)
	}
}

// leaderOf returns the index of the member that leads the cluster.
func leaderOf(t *testing.T, ms []*etcdMember) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for i, m := range ms {
			if m.e == nil && m.cmd == nil {
				continue
			}
			if st, err := m.status(context.Background()); err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return i
			}
		}
	}
	t.Fatal("no etcd leader")
	return 0
}

// TestEtcdOutageFencedWriter: a writer riding out an etcd outage whose store
// is claimed meanwhile by a newer writer (elected where etcd still had a
// quorum; here a second handle on the store claims it) acks nothing more:
// the batch fails by the fence, and the writer steps down.
func TestEtcdOutageFencedWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-member etcd cluster")
	}
	ms, dir, srv := serverOnCluster(t)
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-fenced")
	if _, err := a.send(a.events(5)); err != nil {
		t.Fatal(err)
	}
	allEvents(t, srv, a.id) // the admin token is checked once while etcd answers
	ms[0].stop()
	ms[1].stop()
	for deadline := time.Now().Add(30 * time.Second); !srv.InEtcdOutage() && srv.Role() == "writer"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer's lease did not end without quorum")
		}
	}
	if _, err := a.send(a.events(5)); err != nil {
		t.Fatalf("batch during the outage: %v", err)
	}
	ctx := context.Background()
	other, err := eventlog.OpenSQLite(ctx, filepath.Join(dir, app.FileEvents), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	epoch, err := other.StoredEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.ClaimEpoch(ctx, epoch+1); err != nil {
		t.Fatal(err)
	}
	fenced := a.events(5)
	body, _ := json.Marshal(wire.Batch{Events: fenced})
	if st, b, err := a.post(body, nil); err != nil || st == 200 {
		t.Fatalf("batch after another writer claimed the store: %d %s %v", st, b, err)
	}
	for deadline := time.Now().Add(10 * time.Second); srv.Role() == "writer"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fenced writer did not step down")
		}
	}
	if n := len(allEvents(t, srv, a.id)); n != 10 {
		t.Fatalf("%d events stored, want the 10 acked", n)
	}
}
