//go:build linux

package app_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/keyring"
	"github.com/mamori/mamori/server/internal/state"
)

// TestHAIngestBench runs mamori-loadgen against one, two and three server
// processes on one etcd and PostgreSQL, pointed at the writer and at a
// standby (which redirects every batch to the writer), then holds
// MAMORI_HA_LONGPOLL_AGENTS (default 2000) long-polling agents on a
// standby and reports its CPU and RSS. Opt-in (MAMORI_HA_INGEST_BENCH=1):
// the figures of docs/high-availability.md.
func TestHAIngestBench(t *testing.T) {
	if os.Getenv("MAMORI_HA_INGEST_BENCH") != "1" {
		t.Skip("set MAMORI_HA_INGEST_BENCH=1 to measure ingest with 1, 2 and 3 servers")
	}
	bin := filepath.Join(t.TempDir(), "mamori-loadgen")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mamori/mamori/loadgen").CombinedOutput(); err != nil {
		t.Fatalf("build loadgen: %v\n%s", err, out)
	}
	dsn := pgtest.Start(t).Schema(t)
	etcd, err := state.Open(context.Background(), state.Config{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	kek := keyring.NewKEKText()
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	load := func(what string, n *node, args ...string) {
		t.Helper()
		args = append([]string{"--server", n.url, "--data-dir", dirs[0], "--pid", strconv.Itoa(n.cmd.Process.Pid)}, args...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: loadgen: %v\n%s", what, err, out)
		}
		t.Logf("%s (loadgen %v):\n%s", what, args[4:], out)
	}
	ship := []string{"--agents", "32", "--batch", "500", "--duration", "20s"}
	n1 := startNode(t, "n1", dirs[0], etcd.Endpoint(), dsn, kek, false)
	caPEM := readFile(t, filepath.Join(dirs[0], "ca.pem"))
	waitWriter(t, caPEM, 10*time.Second, n1)
	load("1 server, to the writer", n1, ship...)
	n2 := startNode(t, "n2", dirs[1], etcd.Endpoint(), dsn, kek, true)
	load("2 servers, to the writer", n1, ship...)
	load("2 servers, to the standby (307 to the writer)", n2, ship...)
	n3 := startNode(t, "n3", dirs[2], etcd.Endpoint(), dsn, kek, true)
	load("3 servers, to the writer", n1, ship...)
	load("3 servers, to a standby (307 to the writer)", n3, ship...)
	agents := 2000
	if v, err := strconv.Atoi(os.Getenv("MAMORI_HA_LONGPOLL_AGENTS")); err == nil && v > 0 {
		agents = v
	}
	load(fmt.Sprintf("%d long-polling agents on a standby", agents), n2,
		"--agents", strconv.Itoa(agents), "--long-poll", "--rate", "200", "--batch", "10", "--duration", "30s", "--enroll-parallel", "8")
}
