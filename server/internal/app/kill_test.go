package app_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/keyring"
)

const (
	childEnv     = "MAMORI_APP_TEST_CHILD_DIR"
	childEtcdEnv = "MAMORI_APP_TEST_CHILD_ETCD" // etcd endpoints, comma-separated (failover test)
	childDSNEnv  = "MAMORI_APP_TEST_CHILD_DSN"  // events DSN (failover test)
	childKEKEnv  = "MAMORI_APP_TEST_CHILD_KEK"  // the site's KEK text (failover test)
	childJoinEnv = "MAMORI_APP_TEST_CHILD_JOIN" // "1": join the site (failover test)
)

// TestMain doubles as the server child process of the kill and failover
// tests: with childEnv set, it serves that data dir until killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		var etcd []string
		if e := os.Getenv(childEtcdEnv); e != "" {
			etcd = strings.Split(e, ",")
		}
		cfg := app.Config{DataDir: dir, Listen: "127.0.0.1:0",
			Hostnames: []string{"127.0.0.1"}, Log: zerolog.New(os.Stderr).Level(zerolog.WarnLevel),
			EtcdEndpoints: etcd, EventsDSN: os.Getenv(childDSNEnv), Join: os.Getenv(childJoinEnv) == "1"}
		if k := os.Getenv(childKEKEnv); k != "" {
			kek, err := keyring.ParseKEK(k)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			cfg.KEK = kek
		}
		srv, err := app.Start(context.Background(), cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := os.WriteFile(filepath.Join(dir, "url"), []byte(srv.URL()), 0o600); err != nil {
			os.Exit(2)
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		srv.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startChild serves dir from a child process (TestMain) until killed, and
// returns it with its URL once it answers.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(dir, "url")); err == nil && len(b) > 0 {
			return cmd, string(b)
		} else if time.Now().After(deadline) {
			t.Fatal("child server did not start")
		}
	}
}

// TestKillDurability kills a server child process (SIGKILL) while agents
// ingest, restarts on the same data dir and checks that every acked event
// is there.
func TestKillDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd, base := startChild(t, dir)
	caPEM := readFile(t, filepath.Join(dir, app.FileCA))
	token := strings.TrimSpace(string(readFile(t, filepath.Join(dir, app.FileEnrollToken))))
	srvFP := startFingerprint(t, caPEM) // as an admin copies it from the enroll command

	const agents = 8
	clients := make([]*agentClient, agents)
	for i := range clients {
		clients[i] = enroll(t, base, token, srvFP, caPEM, fmt.Sprintf("pc-%02d", i))
	}
	acked := make([]atomic.Uint64, agents)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pending := c.events(50)
			for {
				select {
				case <-stop:
					return
				default:
				}
				n, err := c.send(pending)
				if err != nil {
					return // the server is gone; what was not acked may be lost
				}
				acked[i].Store(n)
				pending = c.events(50)
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	close(stop)
	wg.Wait()

	srv := start(t, dir)
	defer srv.Close()
	total := uint64(0)
	for i, c := range clients {
		want := acked[i].Load()
		total += want
		h, err := srv.Store().Head(context.Background(), c.id)
		if err != nil {
			t.Fatal(err)
		}
		if h.Seq < want {
			t.Errorf("agent %d: acked %d, stored head %d: acked events lost", i, want, h.Seq)
		}
		evs := allEvents(t, srv, c.id)
		if uint64(len(evs)) < want {
			t.Errorf("agent %d: acked %d, %d stored", i, want, len(evs))
		}
		for j := range evs {
			if evs[j].Seq != uint64(j+1) {
				t.Fatalf("agent %d: event %d has seq %d", i, j, evs[j].Seq)
			}
		}
	}
	if total == 0 {
		t.Fatal("nothing was acked before the kill; the test proved nothing")
	}
	t.Logf("%d events acked before SIGKILL, all present after restart", total)
}

// TestGracefulCloseDuringIngest closes the server while agents ingest: every
// batch acked before Close is stored, and Close returns once in-flight
// batches are finished.
func TestGracefulCloseDuringIngest(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir)
	const agents = 4
	clients := make([]*agentClient, agents)
	for i := range clients {
		clients[i] = enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), fmt.Sprintf("pc-%d", i))
	}
	acked := make([]atomic.Uint64, agents)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := c.send(c.events(200))
				if err != nil {
					return
				}
				acked[i].Store(n)
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	srv = start(t, dir)
	defer srv.Close()
	for i, c := range clients {
		h, err := srv.Store().Head(context.Background(), c.id)
		if err != nil {
			t.Fatal(err)
		}
		if want := acked[i].Load(); want == 0 || h.Seq < want {
			t.Errorf("agent %d: acked %d, stored %d", i, want, h.Seq)
		}
	}
}
