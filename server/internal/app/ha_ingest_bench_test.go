//go:build linux

package app_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/keyring"
)

// TestHAIngestBench runs mamori-loadgen against one, two and three server
// processes on one etcd and PostgreSQL, pointed at the writer and at a
// standby (which redirects every batch to the writer), then holds
// MAMORI_HA_LONGPOLL_AGENTS (default 10,000) long-polling agents spread
// over the three servers (one load generator per server, at once) and
// reports each server's CPU and RSS. Opt-in (MAMORI_HA_INGEST_BENCH=1): the
// figures of docs/high-availability.md.
func TestHAIngestBench(t *testing.T) {
	if os.Getenv("MAMORI_HA_INGEST_BENCH") != "1" {
		t.Skip("set MAMORI_HA_INGEST_BENCH=1 to measure ingest with 1, 2 and 3 servers")
	}
	bin := filepath.Join(t.TempDir(), "mamori-loadgen")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mamori/mamori/loadgen").CombinedOutput(); err != nil {
		t.Fatalf("build loadgen: %v\n%s", err, out)
	}
	dsn := pgtest.Start(t).Schema(t)
	_, members := etcdCluster(t)
	etcd := strings.Join(members, ",")
	kek := keyring.NewKEKText()
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	run := func(n *node, args ...string) ([]string, []byte, error) {
		args = append([]string{"--server", n.url, "--data-dir", dirs[0], "--pid", strconv.Itoa(n.cmd.Process.Pid)}, args...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		return args[6:], out, err
	}
	load := func(what string, n *node, args ...string) {
		t.Helper()
		args, out, err := run(n, args...)
		if err != nil {
			t.Fatalf("%s: loadgen: %v\n%s", what, err, out)
		}
		t.Logf("%s (loadgen %v):\n%s", what, args, out)
	}
	ship := []string{"--agents", "32", "--batch", "500", "--duration", "20s"}
	n1 := startNode(t, "n1", dirs[0], etcd, dsn, kek, false)
	caPEM := readFile(t, filepath.Join(dirs[0], "ca.pem"))
	waitWriter(t, caPEM, 10*time.Second, n1)
	load("1 server, to the writer", n1, ship...)
	n2 := startNode(t, "n2", dirs[1], etcd, dsn, kek, true)
	load("2 servers, to the writer", n1, ship...)
	load("2 servers, to the standby (307 to the writer)", n2, ship...)
	n3 := startNode(t, "n3", dirs[2], etcd, dsn, kek, true)
	load("3 servers, to the writer", n1, ship...)
	load("3 servers, to a standby (307 to the writer)", n3, ship...)
	agents := 10000
	if v, err := strconv.Atoi(os.Getenv("MAMORI_HA_LONGPOLL_AGENTS")); err == nil && v > 0 {
		agents = v
	}
	var wg sync.WaitGroup
	for i, n := range []*node{n1, n2, n3} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args, out, err := run(n, "--agents", strconv.Itoa(agents/3), "--long-poll", "--rate", "200", "--batch", "10",
				"--duration", "60s", "--enroll-parallel", "4")
			if err != nil {
				t.Errorf("long-poll on server %d: loadgen: %v\n%s", i+1, err, out)
				return
			}
			t.Logf("%d long-polling agents spread over 3 servers: server %d (%s) (loadgen %v):\n%s", agents, i+1, n.name, args, out)
		}()
	}
	wg.Wait()
}
