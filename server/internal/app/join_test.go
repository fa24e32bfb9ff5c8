package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/keyring"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/evidence"
)

// siteEtcd is a real embedded etcd standing in for a site's cluster.
func siteEtcd(t *testing.T) (endpoint string, cli *clientv3.Client) {
	t.Helper()
	st, err := state.Open(context.Background(), state.Config{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.Endpoint(), st.Client()
}

func testKEK(t *testing.T) *keyring.KEK {
	t.Helper()
	k, err := keyring.ParseKEK(keyring.NewKEKText())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func nodeConfig(t *testing.T, dir, ep, eventsDSN, host string, kek *keyring.KEK) app.Config {
	return app.Config{DataDir: dir, Listen: "127.0.0.1:0", Hostnames: []string{host, "127.0.0.1"},
		EtcdEndpoints: []string{ep}, KEK: kek, EventsDSN: eventsDSN,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
}

type checkpointAnswer struct {
	Size       int64  `json:"size"`
	Checkpoint string `json:"checkpoint"`
}

// waitCheckpoint polls the signed checkpoint until it covers size events.
func waitCheckpoint(t *testing.T, base, token string, caPEM []byte, size int64) checkpointAnswer {
	t.Helper()
	var cp checkpointAnswer
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st := adminGet(t, base, token, caPEM, "/api/v1/checkpoint", nil, &cp)
		if st == 200 && cp.Size >= size {
			return cp
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint: %d %+v, want size %d", st, cp, size)
		}
	}
}

// A second server added with --join and the KEK, with nothing copied from
// the first one's data dir, serves the first one's agents (same CA) and
// signs checkpoints that the first one's log key verifies, extending the
// same log. The two run one after the other on the shared store (a SQLite
// file, and PostgreSQL where the harness has one): running both at once
// needs the writer election.
func TestJoinedServerSharesKeys(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { joinedServerSharesKeys(t, "sqlite:"+filepath.Join(t.TempDir(), "events.db")) })
	t.Run("postgres", func(t *testing.T) { joinedServerSharesKeys(t, pgtest.Start(t).Schema(t)) })
}

func joinedServerSharesKeys(t *testing.T, events string) {
	ep, _ := siteEtcd(t)
	kek := testKEK(t)
	dir1, dir2 := t.TempDir(), t.TempDir()

	c1 := nodeConfig(t, dir1, ep, events, "node1.test", kek)
	c1.ServiceName = "localhost" // the load balancer's name; resolvable in a test
	n1, err := app.Start(context.Background(), c1)
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Close()
	if !strings.HasPrefix(n1.URL(), "https://localhost:") {
		t.Errorf("URL %s: want the service name", n1.URL())
	}
	caPEM, adminToken := n1.CAPEM(), n1.AdminToken()
	a := enroll(t, n1.URL(), n1.EnrollToken(), n1.CAFingerprint(), caPEM, "pc-soumu-01")
	if acked, err := a.send(a.events(20)); err != nil || acked != 20 {
		t.Fatalf("node 1: acked %d, %v", acked, err)
	}
	cp1 := waitCheckpoint(t, n1.URL(), adminToken, caPEM, 20)
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}

	c2 := nodeConfig(t, dir2, ep, events, "node2.test", kek)
	c2.Join = true
	n2, err := app.Start(context.Background(), c2)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if n2.CAFingerprint() != n1.CAFingerprint() || n2.LogVerifierKey() != n1.LogVerifierKey() {
		t.Fatal("the joined server has other keys")
	}
	for _, f := range []string{pki.CAKeyFile, app.FileLogKey, app.FileEnrollToken, app.FileAdminToken, app.FileAdminPassword} {
		if _, err := os.Stat(filepath.Join(dir2, f)); err == nil {
			t.Errorf("the joined server's data dir has %s", f)
		}
	}
	// Its certificate names the service and itself, under the one CA.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, name := range []string{"localhost", "node2.test"} {
		conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n2.Port())),
			&tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS13})
		if err != nil {
			t.Errorf("TLS to node 2 as %s: %v", name, err)
			continue
		}
		if names := conn.ConnectionState().PeerCertificates[0].DNSNames; slices.Contains(names, "node1.test") {
			t.Errorf("node 2's certificate names node 1: %q", names)
		}
		conn.Close()
	}

	// The agent enrolled on node 1 ships to node 2 with the same
	// certificate, trusting node 2 by the CA it pinned.
	a.base = n2.URL()
	if acked, err := a.send(a.events(20)); err != nil || acked != 40 {
		t.Fatalf("node 2: acked %d, %v", acked, err)
	}
	// node 1's admin token is the site's (in etcd).
	cp2 := waitCheckpoint(t, n2.URL(), adminToken, caPEM, 40)
	v, err := note.NewVerifier(strings.TrimSpace(string(readFile(t, filepath.Join(dir1, app.FileLogKeyPub)))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.Open([]byte(cp2.Checkpoint), v); err != nil {
		t.Fatalf("node 2's checkpoint does not verify with node 1's log-key.pub: %v", err)
	}
	if got := readFile(t, filepath.Join(dir2, app.FileLogKeyPub)); string(got) != string(readFile(t, filepath.Join(dir1, app.FileLogKeyPub))) {
		t.Error("the two data dirs' log-key.pub differ")
	}
	// One log: node 2's bundle proves it extends node 1's checkpoint.
	st, bundle := adminDownloadAt(t, n2.URL(), adminToken, caPEM, a.id, cp1.Size)
	if st != 200 {
		t.Fatalf("export: %d", st)
	}
	if rep := verifyBundle(t, dir1, bundle, []byte(cp1.Checkpoint)); !rep.OK() {
		t.Fatalf("bundle across the two servers: %+v", rep)
	}
}

// A join with a wrong KEK, or against an etcd without a site, is refused
// with a clear message and writes nothing into the shared etcd.
func TestJoinRefusalsWriteNothing(t *testing.T) {
	ep, cli := siteEtcd(t)
	kek := testKEK(t)
	events := "sqlite:" + filepath.Join(t.TempDir(), "events.db")
	n1, err := app.Start(context.Background(), nodeConfig(t, t.TempDir(), ep, events, "node1.test", kek))
	if err != nil {
		t.Fatal(err)
	}
	n1.Close()

	emptyEP, emptyCli := siteEtcd(t)
	for _, tc := range []struct {
		name string
		ep   string
		cli  *clientv3.Client
		kek  *keyring.KEK
		want string
	}{
		{"wrong KEK", ep, cli, testKEK(t), "this node's key-encryption key does not match the cluster's"},
		{"no site", emptyEP, emptyCli, kek, "no cluster keys in etcd"},
	} {
		before := etcdKeys(t, tc.cli)
		c := nodeConfig(t, t.TempDir(), tc.ep, events, "node2.test", tc.kek)
		c.Join = true
		srv, err := app.Start(context.Background(), c)
		if err == nil {
			srv.Close()
			t.Fatalf("%s: started", tc.name)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if after := etcdKeys(t, tc.cli); !slices.Equal(before, after) {
			t.Errorf("%s: etcd changed:\nbefore %q\nafter  %q", tc.name, before, after)
		}
	}
}

// etcdKeys lists every key with its mod revision.
func etcdKeys(t *testing.T, cli *clientv3.Client) []string {
	t.Helper()
	resp, err := cli.Get(context.Background(), "", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key)+"@"+strconv.FormatInt(kv.ModRevision, 10))
	}
	return out
}

// adminDownloadAt exports one agent's evidence bundle from base, with the
// consistency proof from the checkpoint of size since.
func adminDownloadAt(t *testing.T, base, token string, caPEM []byte, agent string, since int64) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v1/export?"+url.Values{"format": {"bundle"}, "agent": {agent}, "since": {strconv.FormatInt(since, 10)}}.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpsClient(caPEM, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
