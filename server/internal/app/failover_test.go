//go:build unix

package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/keyring"
	"github.com/mamori/mamori/shared/wire"
)

// node is a server child process of the failover test.
type node struct {
	name, dir, url string
	cmd            *exec.Cmd
	log            *os.File
}

// startNode starts a server process on dir with the shared etcd and
// PostgreSQL store, and waits until it serves (as writer or standby).
func startNode(t *testing.T, name, dir, etcd, dsn, kek string, join bool) *node {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, childEtcdEnv+"="+etcd, childDSNEnv+"="+dsn, childKEKEnv+"="+kek)
	if join {
		cmd.Env = append(cmd.Env, childJoinEnv+"=1")
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{name: name, dir: dir, cmd: cmd, log: logf}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", name, b)
		}
		logf.Close()
	})
	for deadline := time.Now().Add(60 * time.Second); n.url == ""; {
		if b, err := os.ReadFile(filepath.Join(dir, "url")); err == nil && len(b) > 0 {
			n.url = string(b)
		} else if time.Now().After(deadline) || cmd.ProcessState != nil {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("%s did not start:\n%s", name, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

// waitWriter polls the nodes until one answers as writer.
func waitWriter(t *testing.T, caPEM []byte, within time.Duration, nodes ...*node) *node {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, n := range nodes {
			if st, role := readyzWriter(caPEM, n.url); st == 200 && role == "writer" {
				return n
			}
		}
	}
	t.Fatalf("no writer among %d nodes within %s", len(nodes), within)
	return nil
}

// fleet is agents shipping 50-event batches through a list of server URLs
// until halted, failing over in order as the real agent does (a standby
// answers with a redirect to the writer, a dead node sends them on).
type fleet struct {
	clients []*agentClient
	acked   []atomic.Uint64 // per agent: the seq the servers acked
	total   atomic.Int64    // events acked in all
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// ship enrolls n agents with enrollURL and starts them shipping through
// urls (read again at every batch: restarted nodes change it).
func ship(t *testing.T, n int, enrollURL, token string, caPEM []byte, urls func() []string) *fleet {
	t.Helper()
	fp := startFingerprint(t, caPEM)
	f := &fleet{clients: make([]*agentClient, n), acked: make([]atomic.Uint64, n), stop: make(chan struct{})}
	for i := range f.clients {
		f.clients[i] = enroll(t, enrollURL, token, fp, caPEM, fmt.Sprintf("pc-%02d", i))
		f.clients[i].c.Timeout = 15 * time.Second
	}
	for i, c := range f.clients {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			pending, at := c.events(50), i
			for {
				select {
				case <-f.stop:
					return
				default:
				}
				us := urls()
				c.base = us[at%len(us)]
				n, err := c.send(pending)
				if err != nil {
					at++ // fail over in order
					time.Sleep(100 * time.Millisecond)
					continue
				}
				if n != pending[len(pending)-1].Seq {
					t.Errorf("agent %d: acked %d, sent up to %d", i, n, pending[len(pending)-1].Seq)
				}
				f.acked[i].Store(n)
				f.total.Add(int64(len(pending)))
				pending = c.events(50)
			}
		}()
	}
	t.Cleanup(f.halt)
	return f
}

// progress waits until 400 more events are acked.
func (f *fleet) progress(t *testing.T, what string) {
	t.Helper()
	from := f.total.Load()
	for deadline := time.Now().Add(60 * time.Second); f.total.Load() < from+400; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no ingest progress %s (%d acked)", what, f.total.Load())
		}
	}
}

// halt stops the agents and waits for their last batches.
func (f *fleet) halt() {
	f.once.Do(func() { close(f.stop) })
	f.wg.Wait()
}

// TestFailover runs three server processes on one etcd and one PostgreSQL
// store while agents ship through their list of server URLs: SIGKILL of the
// writer puts a standby in its place within 10 s; SIGSTOP of the next
// writer for longer than the lease puts the third in its place, and the
// stopped one, resumed, acks nothing more and is not ready as writer.
// Every acked event is stored, each agent's chain is contiguous, and the
// log is one log: a consistency proof from a checkpoint before the first
// kill to one after the second takeover verifies.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes")
	}
	dsn := pgtest.Start(t).Schema(t)
	ctx := context.Background()
	_, members := etcdCluster(t) // 3 members, as a site runs it
	etcd := strings.Join(members, ",")

	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	// The first server publishes the site's keys sealed with the KEK; the
	// others join with it, nothing copied between data dirs.
	kek := keyring.NewKEKText()
	n1 := startNode(t, "n1", dirs[0], etcd, dsn, kek, false)
	n2 := startNode(t, "n2", dirs[1], etcd, dsn, kek, true)
	n3 := startNode(t, "n3", dirs[2], etcd, dsn, kek, true)
	caPEM := readFile(t, filepath.Join(dirs[0], app.FileCA))
	token := strings.TrimSpace(string(readFile(t, filepath.Join(dirs[0], app.FileEnrollToken))))
	admin := strings.TrimSpace(string(readFile(t, filepath.Join(dirs[0], app.FileAdminToken))))
	verifier, err := note.NewVerifier(strings.TrimSpace(string(readFile(t, filepath.Join(dirs[0], app.FileLogKeyPub)))))
	if err != nil {
		t.Fatal(err)
	}
	if w := waitWriter(t, caPEM, 10*time.Second, n1, n2, n3); w != n1 {
		t.Fatalf("writer is %s, want n1", w.name)
	}
	for _, n := range []*node{n2, n3} {
		if st, role := readyzWriter(caPEM, n.url); st != http.StatusServiceUnavailable || role != "standby" {
			t.Fatalf("%s: /readyz?role=writer %d %q", n.name, st, role)
		}
	}

	// Agents enroll with the writer and ship through their list of URLs:
	// a standby redirects them to the writer, a dead node sends them on.
	urls := []string{n1.url, n2.url, n3.url}
	fl := ship(t, 4, n1.url, token, caPEM, func() []string { return urls })
	clients, acked := fl.clients, fl.acked
	progress := func(what string) { t.Helper(); fl.progress(t, what) }
	progress("before the kill")
	before := signedCheckpoint(t, n1.url, admin, caPEM, verifier, 1)
	beforeNote := waitCheckpoint(t, n1.url, admin, caPEM, before.Size) // for the bundle's consistency proof

	// kill -9 the writer during ingest.
	if err := n1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	w2 := waitWriter(t, caPEM, 10*time.Second, n2, n3)
	t.Logf("SIGKILL: %s is writer %.1fs after the kill", w2.name, time.Since(t0).Seconds())
	progress("after the kill")

	// SIGSTOP the new writer for longer than the lease.
	w3 := n3
	if w2 == n3 {
		w3 = n2
	}
	if err := w2.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	waitWriter(t, caPEM, 30*time.Second, w3)
	t.Logf("SIGSTOP: %s is writer %.1fs after %s stopped", w3.name, time.Since(t1).Seconds(), w2.name)
	progress("after the stop")
	if err := w2.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Resumed, it finds its lease gone: standby, not ready as writer.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st, role := readyzWriter(caPEM, w2.url); st == http.StatusServiceUnavailable && role == "standby" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("resumed %s: /readyz?role=writer %d %q", w2.name, st, role)
		}
	}
	// It acks nothing: a batch sent to it goes to the writer, once it has
	// seen who that is; until then it answers 503 with Retry-After (the
	// answer during an election: CI once asked in that moment).
	noFollow := *clients[0].c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	body, _ := json.Marshal(wire.Batch{Events: nil})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := noFollow.Post(w2.url+wire.PathEvents, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTemporaryRedirect && resp.Header.Get("Location") == w3.url+wire.PathEvents {
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || time.Now().After(deadline) {
			t.Fatalf("resumed %s answered a batch %d (Location %q, Retry-After %q)", w2.name, resp.StatusCode,
				resp.Header.Get("Location"), resp.Header.Get("Retry-After"))
		}
	}
	progress("after the stopped writer resumed")
	fl.halt()

	// Nothing acked is lost, each chain is contiguous, the log is one log.
	store, err := eventlog.OpenPostgres(ctx, dsn, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for i, c := range clients {
		h, err := store.Head(ctx, c.id)
		if err != nil {
			t.Fatal(err)
		}
		if want := acked[i].Load(); h.Seq < want {
			t.Errorf("agent %d: acked %d, stored head %d: acked events lost", i, want, h.Seq)
		}
		var seq uint64
		for cursor := ""; ; {
			p, err := store.Query(ctx, eventlog.Filter{Agent: c.id, Limit: eventlog.MaxLimit, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range p.Events {
				if seq++; e.Seq != seq {
					t.Fatalf("agent %d: event %d has seq %d", i, seq, e.Seq)
				}
			}
			if cursor = p.Next; cursor == "" {
				break
			}
		}
		if seq != h.Seq {
			t.Errorf("agent %d: %d events, head %d", i, seq, h.Seq)
		}
	}
	size, _ := store.TreeSize(ctx)
	after := signedCheckpoint(t, w3.url, admin, caPEM, verifier, size)
	proof, err := tlog.ProveTree(after.Size, before.Size, store)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(proof, after.Size, after.Root, before.Size, before.Root); err != nil {
		t.Fatalf("checkpoint %d -> %d across two failovers: %v", before.Size, after.Size, err)
	}
	// An evidence bundle from the third writer, of an agent's events from
	// its first (written by the first writer), verifies offline with the
	// site's log key and proves it extends the checkpoint from before.
	st, bundle := adminDownloadAt(t, w3.url, admin, caPEM, clients[0].id, beforeNote.Size)
	if st != 200 {
		t.Fatalf("export across the failovers: %d %.300s", st, bundle)
	}
	rep := verifyBundle(t, dirs[0], bundle, []byte(beforeNote.Checkpoint))
	if r := rep.Agents[clients[0].id]; !rep.OK() || r == nil || r.First != 1 || r.Last < acked[0].Load() {
		t.Fatalf("bundle across the failovers: ok %v, range %+v (acked %d), problems %v", rep.OK(), r, acked[0].Load(), rep.Problems)
	}
	t.Logf("%d events acked across a SIGKILL and a SIGSTOP of the writer; checkpoint %d -> %d consistent; a bundle of %d events verifies",
		fl.total.Load(), before.Size, after.Size, rep.Events)
}
