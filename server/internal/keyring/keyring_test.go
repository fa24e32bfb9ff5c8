package keyring_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mamori/mamori/server/internal/keyring"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/server/internal/state"
)

// etcd starts a real embedded etcd and returns its client.
func etcd(t *testing.T) *clientv3.Client {
	t.Helper()
	st, err := state.Open(context.Background(), state.Config{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.Client()
}

func newKEK(t *testing.T) *keyring.KEK {
	t.Helper()
	k, err := keyring.ParseKEK(keyring.NewKEKText())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func cfg(cli *clientv3.Client, k *keyring.KEK, dir string, host string) keyring.Config {
	return keyring.Config{DataDir: dir, Hostnames: []string{host, "127.0.0.1"}, KEK: k, Etcd: cli, Log: zerolog.Nop()}
}

// revision is etcd's store revision: it moves with every write, so an
// unchanged revision proves nothing was written at all.
func revision(t *testing.T, cli *clientv3.Client) (rev, keys int64) {
	t.Helper()
	resp, err := cli.Get(context.Background(), "", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision, resp.Count
}

func leaf(t *testing.T, k *keyring.Keys) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(k.CA.ServerTLS().Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func TestFirstServerPublishesAndJoinerAdopts(t *testing.T) {
	ctx := context.Background()
	cli, kek := etcd(t), newKEK(t)
	dir1, dir2 := t.TempDir(), t.TempDir()
	c1 := cfg(cli, kek, dir1, "node1.example.jp")
	c1.ServiceName = "mamori.example.jp"
	k1, err := keyring.Open(ctx, c1)
	if err != nil {
		t.Fatal(err)
	}
	if k1.Names[0] != "mamori.example.jp" {
		t.Errorf("names %q: want the service name first", k1.Names)
	}
	// The secrets are in etcd only; the public copies are on disk.
	for _, f := range []string{pki.CAKeyFile, keyring.FileLogKey} {
		if exists(filepath.Join(dir1, f)) {
			t.Errorf("%s written to the data dir although a KEK seals it in etcd", f)
		}
	}
	for _, f := range []string{pki.CAFile, keyring.FileLogKeyPub} {
		if !exists(filepath.Join(dir1, f)) {
			t.Errorf("%s missing", f)
		}
	}
	resp, err := cli.Get(ctx, keyring.EtcdKey)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("sealed keys in etcd: %v %v", resp, err)
	}
	stored := string(resp.Kvs[0].Value)
	if strings.Contains(stored, "PRIVATE") || strings.Contains(stored, k1.LogSigner) {
		t.Fatal("the value in etcd holds a key in the clear")
	}

	c2 := cfg(cli, kek, dir2, "node2.example.jp")
	c2.Join = true // no --service-name: taken from etcd
	k2, err := keyring.Open(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	if k2.CA.Fingerprint() != k1.CA.Fingerprint() || k2.LogVerifier != k1.LogVerifier || k2.LogSigner != k1.LogSigner {
		t.Fatal("the joined node has other keys than the first")
	}
	if k2.ServiceName != "mamori.example.jp" {
		t.Errorf("service name %q, want the recorded one", k2.ServiceName)
	}
	c := leaf(t, k2)
	for _, n := range []string{"mamori.example.jp", "node2.example.jp"} {
		if !slices.Contains(c.DNSNames, n) {
			t.Errorf("node 2's certificate names %q, lacks %s", c.DNSNames, n)
		}
	}
	if slices.Contains(c.DNSNames, "node1.example.jp") {
		t.Errorf("node 2's certificate names node 1: %q", c.DNSNames)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: k1.CA.Pool(), DNSName: "mamori.example.jp"}); err != nil {
		t.Errorf("node 2's certificate does not verify under node 1's CA for the service name: %v", err)
	}
	// Each node's TLS key is its own.
	if k1.CA.ServerTLS().Certificates[0].PrivateKey.(interface{ Equal(crypto.PrivateKey) bool }).Equal(k2.CA.ServerTLS().Certificates[0].PrivateKey) {
		t.Error("the two nodes share a TLS server key")
	}
	// A restart of either node keeps everything.
	again, err := keyring.Open(ctx, c2)
	if err != nil || again.CA.Fingerprint() != k1.CA.Fingerprint() {
		t.Fatalf("restart: %v", err)
	}
}

func TestWrongKEKRefusedAndWritesNothing(t *testing.T) {
	ctx := context.Background()
	cli := etcd(t)
	if _, err := keyring.Open(ctx, cfg(cli, newKEK(t), t.TempDir(), "node1")); err != nil {
		t.Fatal(err)
	}
	other := newKEK(t)
	for _, join := range []bool{true, false} {
		rev, n := revision(t, cli)
		dir := t.TempDir()
		c := cfg(cli, other, dir, "node2")
		c.Join = join
		_, err := keyring.Open(ctx, c)
		if !errors.Is(err, keyring.ErrWrongKEK) || !strings.Contains(err.Error(), "this node's key-encryption key does not match the cluster's") {
			t.Fatalf("join=%v: err %v, want the clear wrong-KEK message", join, err)
		}
		if r2, n2 := revision(t, cli); r2 != rev || n2 != n {
			t.Errorf("join=%v: etcd changed: revision %d->%d, keys %d->%d", join, rev, r2, n, n2)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("join=%v: data dir got %d entries", join, len(ents))
		}
	}
}

func TestJoinWithoutClusterRefusedAndWritesNothing(t *testing.T) {
	cli := etcd(t)
	rev, n := revision(t, cli)
	c := cfg(cli, newKEK(t), t.TempDir(), "node2")
	c.Join = true
	if _, err := keyring.Open(context.Background(), c); !errors.Is(err, keyring.ErrNoCluster) {
		t.Fatalf("err %v, want ErrNoCluster", err)
	}
	if r2, n2 := revision(t, cli); r2 != rev || n2 != n {
		t.Errorf("etcd changed: revision %d->%d, keys %d->%d", rev, r2, n, n2)
	}
	c.KEK = nil
	if _, err := keyring.Open(context.Background(), c); err == nil || !strings.Contains(err.Error(), "key-encryption key") {
		t.Fatalf("join without a KEK: %v", err)
	}
}

// A server started without the KEK on a site's etcd is refused rather than
// making a CA of its own in its data dir.
func TestNoKEKOnASiteRefused(t *testing.T) {
	cli := etcd(t)
	if _, err := keyring.Open(context.Background(), cfg(cli, newKEK(t), t.TempDir(), "node1")); err != nil {
		t.Fatal(err)
	}
	rev, _ := revision(t, cli)
	dir := t.TempDir()
	if _, err := keyring.Open(context.Background(), cfg(cli, nil, dir, "node2")); err == nil || !strings.Contains(err.Error(), "give this server that key") {
		t.Fatalf("err %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("data dir got %d entries", len(ents))
	}
	if r2, _ := revision(t, cli); r2 != rev {
		t.Error("etcd changed")
	}
}

// Two first servers starting at once publish one CA: the losers adopt it.
func TestConcurrentFirstServersAgreeOnOneCA(t *testing.T) {
	cli, kek := etcd(t), newKEK(t)
	const n = 6
	got := make([]*keyring.Keys, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = keyring.Open(context.Background(), cfg(cli, kek, t.TempDir(), "node"))
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i].CA.Fingerprint() != got[0].CA.Fingerprint() || got[i].LogSigner != got[0].LogSigner {
			t.Fatalf("server %d has other keys than server 0", i)
		}
	}
}

// A server that ran without a KEK publishes its own CA and log key when it
// is given one, so enrolled agents and auditors' pinned keys stay valid.
func TestKEKAddedLaterPublishesTheDataDirKeys(t *testing.T) {
	ctx := context.Background()
	cli, kek := etcd(t), newKEK(t)
	dir := t.TempDir()
	disk, err := keyring.Open(ctx, cfg(nil, nil, dir, "node1"))
	if err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(dir, pki.CAKeyFile)) || !exists(filepath.Join(dir, keyring.FileLogKey)) {
		t.Fatal("without a KEK the keys belong in the data dir")
	}
	if resp, _ := cli.Get(ctx, keyring.EtcdKey); len(resp.Kvs) != 0 {
		t.Fatal("without a KEK nothing goes to etcd")
	}
	withKEK, err := keyring.Open(ctx, cfg(cli, kek, dir, "node1"))
	if err != nil {
		t.Fatal(err)
	}
	if withKEK.CA.Fingerprint() != disk.CA.Fingerprint() || withKEK.LogVerifier != disk.LogVerifier {
		t.Fatal("adding a KEK changed the CA or the log key")
	}
	c := cfg(cli, kek, t.TempDir(), "node2")
	c.Join = true
	joined, err := keyring.Open(ctx, c)
	if err != nil || joined.CA.Fingerprint() != disk.CA.Fingerprint() {
		t.Fatalf("join after migration: %v", err)
	}

	// A data dir of another CA is refused, and not published over.
	foreign := t.TempDir()
	if _, err := keyring.Open(ctx, cfg(nil, nil, foreign, "node3")); err != nil {
		t.Fatal(err)
	}
	rev, _ := revision(t, cli)
	if _, err := keyring.Open(ctx, cfg(cli, kek, foreign, "node3")); err == nil || !strings.Contains(err.Error(), "another CA") {
		t.Fatalf("foreign data dir: %v", err)
	}
	if r2, _ := revision(t, cli); r2 != rev {
		t.Error("a refused start wrote to etcd")
	}
}

// A first server whose data dir keeps another site's public log key is
// refused before it publishes anything: auditors would get the wrong key.
func TestStaleLogKeyPubRefusedBeforePublishing(t *testing.T) {
	cli := etcd(t)
	dir := t.TempDir()
	stale := t.TempDir()
	old, err := keyring.Open(context.Background(), cfg(nil, nil, stale, "old"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, keyring.FileLogKeyPub), []byte(old.LogVerifier+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rev, _ := revision(t, cli)
	if _, err := keyring.Open(context.Background(), cfg(cli, newKEK(t), dir, "node1")); err == nil || !strings.Contains(err.Error(), keyring.FileLogKeyPub) {
		t.Fatalf("err %v", err)
	}
	if r2, _ := revision(t, cli); r2 != rev {
		t.Error("a refused first start published keys")
	}
}

// A changed value in etcd is an error naming damage, never a garbled key.
func TestAlteredValueRefused(t *testing.T) {
	ctx := context.Background()
	cli, kek := etcd(t), newKEK(t)
	c := cfg(cli, kek, t.TempDir(), "node1")
	c.ServiceName = "mamori.example.jp"
	if _, err := keyring.Open(ctx, c); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, keyring.EtcdKey)
	if err != nil {
		t.Fatal(err)
	}
	orig := resp.Kvs[0].Value
	for name, edit := range map[string]func(m map[string]any){
		"sealed byte":  func(m map[string]any) { b := []byte(m["sealed"].(string)); b[3] ^= 1; m["sealed"] = string(b) },
		"service name": func(m map[string]any) { m["service_name"] = "evil.example.jp" },
		"format":       func(m map[string]any) { m["format"] = 2 },
	} {
		var m map[string]any
		if err := json.Unmarshal(orig, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ := json.Marshal(m)
		if _, err := cli.Put(ctx, keyring.EtcdKey, string(b)); err != nil {
			t.Fatal(err)
		}
		j := cfg(cli, kek, t.TempDir(), "node2")
		j.Join = true
		_, err := keyring.Open(ctx, j)
		if err == nil || errors.Is(err, keyring.ErrWrongKEK) {
			t.Errorf("%s: err %v, want a refusal that is not 'wrong KEK'", name, err)
		}
	}
}

func TestServiceNameMustMatchTheCluster(t *testing.T) {
	ctx := context.Background()
	cli, kek := etcd(t), newKEK(t)
	c := cfg(cli, kek, t.TempDir(), "node1")
	c.ServiceName = "mamori.example.jp"
	if _, err := keyring.Open(ctx, c); err != nil {
		t.Fatal(err)
	}
	j := cfg(cli, kek, t.TempDir(), "node2")
	j.Join, j.ServiceName = true, "other.example.jp"
	if _, err := keyring.Open(ctx, j); err == nil || !strings.Contains(err.Error(), "mamori.example.jp") {
		t.Fatalf("err %v", err)
	}
}

func TestKEKInput(t *testing.T) {
	for _, bad := range []string{"", "short", "AAAA", strings.Repeat("A", 44) + "!", "////////////////////////////////////////////////////////"} {
		if _, err := keyring.ParseKEK(bad); err == nil {
			t.Errorf("ParseKEK(%q) accepted", bad)
		}
	}
	text := keyring.NewKEKText()
	a, err := keyring.ParseKEK(text + "\n")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := keyring.ParseKEK(text)
	if a.ID() != b.ID() || a.ID() == newKEK(t).ID() {
		t.Error("key ids: same key must give the same id, another key another")
	}
	if strings.Contains(text, a.ID()) {
		t.Error("the id shows the key")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "kek")
	if err := os.WriteFile(p, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := keyring.ReadKEKFile(p); err != nil || k.ID() != a.ID() {
		t.Fatalf("0600 file: %v", err)
	}
	if runtime.GOOS != "windows" {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := keyring.ReadKEKFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("0644 file: %v", err)
		}
		os.Chmod(p, 0o600)
	}
	if _, err := keyring.LoadKEK(p, text); err == nil {
		t.Error("file and environment at once accepted")
	}
	if k, err := keyring.LoadKEK("", text); err != nil || k.ID() != a.ID() {
		t.Errorf("environment: %v", err)
	}
	if k, err := keyring.LoadKEK("", ""); k != nil || err != nil {
		t.Errorf("none: %v %v", k, err)
	}
}

// A data dir whose log key was lost keeps its public key: checkpoints and
// auditors' copies were signed with it. A new key would overwrite
// log-key.pub with one nothing was signed with, so the start is refused,
// naming the file to restore, and writes nothing.
func TestLostLogKeyRefused(t *testing.T) {
	dir := t.TempDir()
	k, err := keyring.Open(context.Background(), cfg(nil, nil, dir, "node1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, keyring.FileLogKey)); err != nil {
		t.Fatal(err)
	}
	_, err = keyring.Open(context.Background(), cfg(nil, nil, dir, "node1"))
	if err == nil || !strings.Contains(err.Error(), keyring.FileLogKey+" is missing") {
		t.Fatalf("start without the log key: %v", err)
	}
	if pub, _ := os.ReadFile(filepath.Join(dir, keyring.FileLogKeyPub)); strings.TrimSpace(string(pub)) != k.LogVerifier {
		t.Errorf("log-key.pub changed to %q", pub)
	}
	if _, err := os.Stat(filepath.Join(dir, keyring.FileLogKey)); err == nil {
		t.Error("a new log key was written")
	}
}
