package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// child runs mamori-server with args as a child process of the test binary.
func child(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(args, "\x1f"))
	return cmd
}

var serviceURLRE = regexp.MustCompile(`dashboard:\s+https://localhost:(\d+)/`)

// Processes: a first server with a KEK and its embedded etcd, then a
// `serve --join` with another KEK against that etcd, which exits non-zero
// with the clear message, leaves no data dir, and leaves etcd as it was;
// then one with the right KEK, which serves under the first one's CA.
func TestJoinProcesses(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("sends SIGTERM")
	}
	base := t.TempDir()
	dir1, dir2 := filepath.Join(base, "n1"), filepath.Join(base, "n2")
	kek1, kek2 := writeKEK(t), writeKEK(t)
	first := child("serve", "--data-dir", dir1, "--listen", "127.0.0.1:0", "--hostname", "127.0.0.1",
		"--service-name", "localhost", "--kek-file", kek1, "--log-level", "warn")
	out, err := first.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	first.Stderr = &stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	up := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := serviceURLRE.FindStringSubmatch(sc.Text()); m != nil {
				up <- m[1]
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case <-up: // the printed URL is the service name's
	case <-time.After(60 * time.Second):
		t.Fatalf("first server did not start; stderr: %s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir1, "ca-key.pem")); err == nil {
		t.Error("a server with a KEK wrote the CA key into its data dir")
	}

	ep := "unix://" + filepath.ToSlash(filepath.Join(dir1, "etcd", "client.sock"))
	if len(ep) > 100 {
		t.Skipf("data dir too long for the embedded etcd's socket to be inside it: %s", ep)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	keys := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		var ks []string
		for _, kv := range resp.Kvs {
			// The running first server signs checkpoints over its own
			// records (its start) on its own schedule: not the join's doing.
			if k := string(kv.Key); k == "/mamori/checkpoint" || k == "/mamori/verified-mark" {
				continue
			}
			ks = append(ks, string(kv.Key)+"@"+strconv.FormatInt(kv.ModRevision, 10))
		}
		return ks
	}
	before := keys()
	if !slices.ContainsFunc(before, func(k string) bool { return strings.HasPrefix(k, "/mamori/keyring@") }) {
		t.Fatalf("the first server published no keys: %q", before)
	}

	join := child("serve", "--join", "--data-dir", dir2, "--listen", "127.0.0.1:0", "--etcd-endpoints", ep,
		"--kek-file", kek2, "--events-dsn", "sqlite:"+filepath.Join(base, "events.db"), "--log-level", "warn")
	done := make(chan struct{})
	var joinOut []byte
	go func() { joinOut, err = join.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		join.Process.Kill()
		t.Fatal("serve --join with a wrong KEK did not exit")
	}
	if err == nil {
		t.Fatalf("serve --join with a wrong KEK exited 0:\n%s", joinOut)
	}
	if !strings.Contains(string(joinOut), "this node's key-encryption key does not match the cluster's") {
		t.Errorf("output lacks the clear message:\n%s", joinOut)
	}
	if _, err := os.Stat(dir2); err == nil {
		t.Error("the refused join left its data dir")
	}
	if after := keys(); !slices.Equal(before, after) {
		t.Errorf("etcd changed:\nbefore %q\nafter  %q", before, after)
	}
	// A store of its own (a new SQLite file, the operator's slip) would be
	// a second log signed with the site's key once elected: refused before
	// anything is opened.
	fresh := child("serve", "--join", "--data-dir", dir2, "--listen", "127.0.0.1:0", "--etcd-endpoints", ep,
		"--kek-file", kek1, "--events-dsn", filepath.Join(base, "n2-events.db"), "--log-level", "warn")
	if out, err := fresh.CombinedOutput(); err == nil || !strings.Contains(string(out), "holds no log") {
		t.Errorf("serve --join with a store of its own: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(base, "n2-events.db")); err == nil {
		t.Error("the refused join made its own event store")
	}
	if after := keys(); !slices.Equal(before, after) {
		t.Errorf("etcd changed by the refused join:\nbefore %q\nafter  %q", before, after)
	}

	// With the site's KEK the join starts, names the service, and answers
	// under the first server's CA. A site's servers share one store (here
	// the first server's SQLite file, standing in for PostgreSQL): the log
	// holds the first server's record of its start, under a checkpoint.
	ok := child("serve", "--join", "--data-dir", dir2, "--listen", "127.0.0.1:0", "--hostname", "127.0.0.1", "--etcd-endpoints", ep,
		"--kek-file", kek1, "--events-dsn", "sqlite:"+filepath.Join(dir1, "events.db"), "--log-level", "warn")
	okOut, err := ok.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var okErr bytes.Buffer
	ok.Stderr = &okErr
	if err := ok.Start(); err != nil {
		t.Fatal(err)
	}
	defer ok.Process.Kill()
	banner := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(okOut)
		var text strings.Builder
		for sc.Scan() {
			text.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "log verifier:") {
				banner <- text.String()
			}
		}
		io.Copy(io.Discard, okOut)
	}()
	var b string
	select {
	case b = <-banner:
	case <-time.After(60 * time.Second):
		t.Fatalf("the joined server did not start; stderr: %s", okErr.String())
	}
	m := serviceURLRE.FindStringSubmatch(b)
	if m == nil || !strings.Contains(b, "joined the site") || strings.Contains(b, "--token") {
		t.Fatalf("joined server's banner:\n%s", b)
	}
	ca, err := os.ReadFile(filepath.Join(dir1, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://localhost:" + m[1] + "/healthz")
	if err != nil {
		t.Fatalf("the joined server under the first one's CA and the service name: %v", err)
	}
	resp.Body.Close()
	for _, f := range []string{"ca-key.pem", "log-key", "enroll-token", "admin-token"} {
		if _, err := os.Stat(filepath.Join(dir2, f)); err == nil {
			t.Errorf("the joined server's data dir has %s", f)
		}
	}

	for _, p := range []*exec.Cmd{ok, first} {
		if err := p.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr: %s%s", err, stderr.String(), okErr.String())
		}
	}
}
