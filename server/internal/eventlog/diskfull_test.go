package eventlog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
	"github.com/mamori/mamori/shared/event"
)

// mountTmpfs mounts a tmpfs of the given size (mount's syntax, "4m") on a
// temporary directory, unmounted when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// placeFiller writes n bytes of real data (not a sparse hole) to path, so
// that removing it later gives that much space back.
func placeFiller(t *testing.T, path string, n int) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xa5}, n), 0o600); err != nil {
		t.Fatalf("filler: %v", err)
	}
}

// streams appends chained batches for a few agents and remembers every
// acked event.
type streams struct {
	ids   []string
	next  map[string]uint64
	prev  map[string]string
	acked map[string][]event.Event
	turn  int
}

func newStreams(n int) *streams {
	s := &streams{next: map[string]uint64{}, prev: map[string]string{}, acked: map[string][]event.Event{}}
	for i := range n {
		id := fmt.Sprintf("pc-%03d", i)
		s.ids = append(s.ids, id)
		s.next[id] = 1
	}
	return s
}

// batch returns the next batch of the agent whose turn it is.
func (s *streams) batch(n int) (string, []event.Event) {
	id := s.ids[s.turn%len(s.ids)]
	s.turn++
	return id, storetest.Chain(id, s.next[id], n, s.prev[id])
}

func (s *streams) ack(id string, evs []event.Event) {
	s.acked[id] = append(s.acked[id], evs...)
	s.next[id] = evs[len(evs)-1].Seq + 1
	s.prev[id] = evs[len(evs)-1].Hash
}

// fill appends until a batch fails and returns that batch and the error.
func (s *streams) fill(t *testing.T, st *eventlog.SQLite) (string, []event.Event, error) {
	t.Helper()
	ctx := context.Background()
	for range 10000 {
		id, evs := s.batch(40)
		r, err := st.Append(ctx, id, evs)
		if err != nil {
			return id, evs, err
		}
		if r.Stored != len(evs) {
			t.Fatalf("Append(%s) = %+v, want %d stored", id, r, len(evs))
		}
		s.ack(id, evs)
	}
	t.Fatal("the disk never filled")
	return "", nil, nil
}

// checkAcked checks that every acked event is stored unchanged and that the
// heads are those of the last acked events.
func (s *streams) checkAcked(t *testing.T, st *eventlog.SQLite) {
	t.Helper()
	ctx := context.Background()
	for id, evs := range s.acked {
		got := storetest.All(t, st, eventlog.Filter{Agent: id, Limit: eventlog.MaxLimit})
		if len(got) != len(evs) {
			t.Fatalf("%s: %d events acked, %d stored", id, len(evs), len(got))
		}
		for i := range evs {
			if got[i].Seq != evs[i].Seq || got[i].Hash != evs[i].Hash || got[i].Prev != evs[i].Prev {
				t.Fatalf("%s: acked seq %d hash %s, stored seq %d hash %s", id, evs[i].Seq, evs[i].Hash, got[i].Seq, got[i].Hash)
			}
		}
		if i, err := event.VerifyChain(id, 0, "", storedEvents(got)); err != nil {
			t.Fatalf("%s: event %d: %v", id, i, err)
		}
		h, err := st.Head(ctx, id)
		if err != nil || h.Seq != evs[len(evs)-1].Seq || h.Hash != evs[len(evs)-1].Hash {
			t.Fatalf("%s: head %+v, %v; last acked seq %d", id, h, err, evs[len(evs)-1].Seq)
		}
	}
}

func storedEvents(st []eventlog.Stored) []event.Event {
	out := make([]event.Event, len(st))
	for i := range st {
		out[i] = st[i].Event
	}
	return out
}

// notA4xx fails t if err would reach the agent as a refusal of its events
// (4xx: it would drop them) instead of a server error it retries.
func notA4xx(t *testing.T, err error) {
	t.Helper()
	for _, e := range []error{event.ErrChain, event.ErrSeq, event.ErrInvalid, event.ErrHash, event.ErrWrongAgent} {
		if errors.Is(err, e) {
			t.Fatalf("disk-full error %v wraps %v: the API would refuse the batch instead of failing it", err, e)
		}
	}
}

// TestDiskFull fills a small tmpfs under the SQLite store: the batch that
// cannot be committed fails without touching the heads or the Merkle log,
// every acked batch stays readable, and once space is freed the same batch
// is accepted and the whole log verifies against a checkpoint signed before
// the disk filled. Then it fills the disk again, closes and reopens the store
// on the full disk, and checks the same after freeing space.
func TestDiskFull(t *testing.T) {
	// The sizes make the disk fill at different points: in the WAL before its
	// first checkpoint (2m, 3m) and after checkpoints have grown the database
	// file and the WAL is being reused (24m). Each filler must free room for
	// what a WAL checkpoint adds to the database file (up to the 4 MiB WAL),
	// or SQLite is, rightly, still out of space after it is removed.
	for _, c := range []struct {
		tmpfs  string
		filler int
	}{{"3m", 384 << 10}, {"4m", 512 << 10}, {"25m", 6 << 20}} {
		t.Run(c.tmpfs, func(t *testing.T) { testDiskFull(t, c.tmpfs, c.filler) })
	}
}

// TestReopenOnFullDisk: opening a store rebuilds the WAL's index in the
// -shm file, 32 KiB for every 4062 pages of WAL, which a full disk may not
// have room for (SQLITE_IOERR_SHMSIZE, "migrate: disk I/O error"): the
// server could not restart until someone freed space. Seen in TestDiskFull
// when the commit that failed had written frames past the index's room;
// here the -shm file is gone (it holds nothing the WAL does not) and the
// disk full to the last page when the store opens. The checkpointer is
// kept off while the disk fills, so that the WAL holds every commit: on a
// slow machine it had copied and restarted the WAL often enough that it
// never grew past 4062 pages (CI, 23 s to fill).
func TestReopenOnFullDisk(t *testing.T) {
	dir := mountTmpfs(t, "40m")
	defer eventlog.SetWALCheckpointAt(1 << 40)()
	ctx := context.Background()
	path := filepath.Join(dir, "events.db")
	st, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ss := newStreams(3)
	_, _, err = ss.fill(t, st)
	notA4xx(t, err)
	size := treeSize(t, st)
	if err := st.Close(); err != nil {
		t.Logf("Close on a full disk: %v", err)
	}
	t.Logf("full after %d events, closed (%s)", size, files(path))
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() <= 4062*4120 {
		t.Fatalf("the WAL must hold more than 4062 pages for this test: %v %v", fi, err)
	}
	if err := os.Remove(path + "-shm"); err != nil {
		t.Fatal(err)
	}
	fillUp(t, filepath.Join(dir, "slack"))
	st, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatalf("reopen on a full disk: %v", err)
	}
	defer st.Close()
	if n := treeSize(t, st); n != size {
		t.Fatalf("reopened with %d events, %d were acked", n, size)
	}
	ss.checkAcked(t, st)
	// The disk had no room for a new reserve: a partial one would hold
	// back the store's last bytes.
	if fi, err := os.Stat(path + "-reserve"); err == nil {
		t.Errorf("a reserve of %d bytes on the full disk", fi.Size())
	}
}

// fillUp writes path until the disk is full.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := bytes.Repeat([]byte{0xa5}, 4096)
	for {
		if _, err := f.Write(page); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	if _, err := f.Write([]byte{1}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("the disk is not full: %v", err)
	}
}

func testDiskFull(t *testing.T, tmpfsSize string, fillerSize int) {
	dir := mountTmpfs(t, tmpfsSize)
	ctx := context.Background()
	filler := filepath.Join(dir, "filler")
	filler2 := filepath.Join(dir, "filler2") // freed in the second round
	path := filepath.Join(dir, "events.db")
	placeFiller(t, filler, fillerSize)
	placeFiller(t, filler2, fillerSize)

	skey, vkey, err := note.GenerateKey(rand.Reader, "mamori/diskfull")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)

	st, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	cpr := &audit.Checkpointer{Log: st, Signer: signer}
	ss := newStreams(3)
	for range 6 {
		id, evs := ss.batch(40)
		if _, err := st.Append(ctx, id, evs); err != nil {
			t.Fatal(err)
		}
		ss.ack(id, evs)
	}
	before, err := cpr.SignNow(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Fill the disk.
	id, failed, err := ss.fill(t, st)
	t.Logf("disk full after %d events (%s): %v", treeSize(t, st), files(path), err)
	notA4xx(t, err)
	size := treeSize(t, st)
	// The failed commit left memory as it was: the same batch fails again
	// (not "chain broken", not "duplicate"), as does a server event.
	if _, err := st.Append(ctx, id, failed); err == nil {
		t.Fatal("the same batch was acked on a full disk")
	} else {
		notA4xx(t, err)
	}
	// So does a group commit of several agents' batches at once; the
	// frontier each planned on is restored.
	pending := map[string][]event.Event{id: failed}
	for _, other := range ss.ids {
		if other != id {
			pending[other] = storetest.Chain(other, ss.next[other], 40, ss.prev[other])
		}
	}
	// Another stream's batch may still fit (its index pages had room where
	// the failed one needed a new page); then it must really be stored,
	// which checkAcked covers, and it counts as acked.
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fitOn = map[string]bool{}
	)
	for agent, evs := range pending {
		wg.Go(func() {
			r, err := st.Append(ctx, agent, evs)
			switch {
			case err != nil:
				notA4xx(t, err)
			case agent == id:
				t.Errorf("%s: the failed batch was acked on a full disk: %+v", agent, r)
			case r.Stored != len(evs):
				t.Errorf("%s: batch on a full disk = %+v", agent, r)
			default:
				mu.Lock()
				fitOn[agent] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for agent := range fitOn {
		t.Logf("%s: a batch of %d still fit", agent, len(pending[agent]))
		ss.ack(agent, pending[agent])
		size += int64(len(pending[agent]))
		delete(pending, agent)
	}
	// A single small event may still fit where 40 did not; if it is acked it
	// must really be stored, which the checks below cover.
	if se, err := st.AppendServer(ctx, event.Event{Control: "server", Type: "server.test", Severity: event.Info}); err == nil {
		t.Logf("one server event (seq %d) still fit", se.Seq)
		size++
	} else {
		t.Logf("server event on the full disk: %v", err)
	}
	if n := treeSize(t, st); n != size {
		t.Fatalf("tree size moved from %d to %d by failed commits", size, n)
	}
	root, err := st.TreeHash(ctx, size)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := st.Head(ctx, id); h.Seq != failed[0].Seq-1 {
		t.Fatalf("head of %s at %d, want %d", id, h.Seq, failed[0].Seq-1)
	}
	ss.checkAcked(t, st)
	checkConsistent(t, st)

	// Free space: the same batch goes in, after exactly the acked log.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r, err := st.Append(ctx, id, failed)
	if err != nil || r.Stored != len(failed) || r.Duplicates != 0 || r.Gap {
		t.Fatalf("same batch after freeing space = %+v, %v", r, err)
	}
	ss.ack(id, failed)
	for agent, evs := range pending {
		if agent == id {
			continue
		}
		if r, err := st.Append(ctx, agent, evs); err != nil || r.Stored != len(evs) || r.Gap {
			t.Fatalf("%s: batch refused on the full disk, after freeing space = %+v, %v", agent, r, err)
		}
		ss.ack(agent, evs)
	}
	if again, _ := st.TreeHash(ctx, size); again != root {
		t.Fatal("tree hash at the size reached before the failure changed")
	}
	verifyAll(t, st, ss, cpr, verifier, before)

	// Fill again, then close and reopen on the full disk.
	id, failed, err0 := ss.fill(t, st)
	if err0 == nil {
		t.Fatal("fill returned no error")
	}
	size = treeSize(t, st)
	t.Logf("full again after %d events (%s): %v", size, files(path), err0)
	if err := st.Close(); err != nil {
		t.Logf("Close on a full disk: %v", err)
	}
	t.Logf("closed (%s)", files(path))
	st, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatalf("reopen on a full disk: %v", err)
	}
	cpr = &audit.Checkpointer{Log: st, Signer: signer}
	if n := treeSize(t, st); n == size+int64(len(failed)) && strings.Contains(err0.Error(), "I/O error") {
		// An I/O error in a commit (the -shm file could not grow) leaves
		// its outcome open: the frames, commit frame too, are in the WAL;
		// the next commit would have overwritten them, but the store
		// closed first and opening found them. Stored, not acked: the
		// agent sends the batch again and it is a duplicate. It must be
		// the failed batch, whole.
		if h, _ := st.Head(ctx, id); h.Seq != failed[len(failed)-1].Seq || h.Hash != failed[len(failed)-1].Hash {
			t.Fatalf("reopened with %d events after a failed commit, but %s's head is %+v", n, id, h)
		}
		t.Logf("the batch whose commit failed with an I/O error was stored")
		ss.ack(id, failed)
	} else if n != size {
		t.Fatalf("reopened with %d events, %d were acked", n, size)
	}
	ss.checkAcked(t, st)
	if ss.next[id] == failed[0].Seq {
		if _, err := st.Append(ctx, id, failed); err == nil {
			// Closing may have checkpointed the WAL and freed pages, or the
			// store's reserve given room; then the batch fits, which is fine
			// as long as it is really stored.
			ss.ack(id, failed)
			t.Log("the failed batch fit after reopen")
		} else {
			t.Logf("after reopen on the full disk: %v", err)
			notA4xx(t, err)
		}
	}
	if err := os.Remove(filler2); err != nil {
		t.Fatal(err)
	}
	if ss.next[id] == failed[0].Seq {
		if r, err := st.Append(ctx, id, failed); err != nil || r.Stored != len(failed) {
			t.Fatalf("same batch after reopen and freeing space = %+v, %v", r, err)
		}
		ss.ack(id, failed)
	}
	verifyAll(t, st, ss, cpr, verifier, before)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	cpr = &audit.Checkpointer{Log: st, Signer: signer}
	verifyAll(t, st, ss, cpr, verifier, before)
}

// verifyAll checks the acked events, the stored Merkle hashes, a consistency
// proof from the checkpoint before, and the whole log against a new signed
// checkpoint as the server does on start.
func verifyAll(t *testing.T, st *eventlog.SQLite, ss *streams, cpr *audit.Checkpointer, v note.Verifier, before eventlog.Checkpoint) {
	t.Helper()
	ctx := context.Background()
	ss.checkAcked(t, st)
	checkConsistent(t, st)
	cp, err := cpr.SignNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := tlog.ProveTree(cp.Size, before.Size, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(proof, cp.Size, cp.Root, before.Size, before.Root); err != nil {
		t.Fatalf("consistency %d -> %d: %v", before.Size, cp.Size, err)
	}
	if err := audit.VerifyLog(ctx, st, v, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
}

func treeSize(t *testing.T, st *eventlog.SQLite) int64 {
	t.Helper()
	n, err := st.TreeSize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// files describes the database files' sizes, for the log.
func files(path string) string {
	var out []string
	for _, suffix := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(path + suffix)
		if err != nil {
			out = append(out, filepath.Base(path+suffix)+" absent")
			continue
		}
		out = append(out, fmt.Sprintf("%s %d KiB", filepath.Base(path+suffix), fi.Size()>>10))
	}
	return strings.Join(out, ", ")
}
