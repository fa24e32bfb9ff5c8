package eventlog_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
	"github.com/mamori/mamori/shared/event"
)

// checkConsistent recomputes the Merkle log from the stored events and
// compares every stored hash and the heads with it.
func checkConsistent(t *testing.T, s *eventlog.SQLite) []eventlog.Stored {
	t.Helper()
	ctx := context.Background()
	all := storetest.All(t, s, eventlog.Filter{Limit: eventlog.MaxLimit})
	n, _ := s.TreeSize(ctx)
	if n != int64(len(all)) {
		t.Fatalf("TreeSize %d, %d events stored", n, len(all))
	}
	mem := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			out[i] = mem[x]
		}
		return out, nil
	})
	byAgent := map[string][]event.Event{}
	for i, st := range all {
		if st.Index != int64(i) {
			t.Fatalf("index %d at position %d", st.Index, i)
		}
		raw, _ := hex.DecodeString(st.Hash)
		hs, err := tlog.StoredHashes(int64(i), storetest.Record(raw, st.Received), reader)
		if err != nil {
			t.Fatal(err)
		}
		for j, h := range hs {
			mem[tlog.StoredHashIndex(0, int64(i))+int64(j)] = h
		}
		byAgent[st.Agent] = append(byAgent[st.Agent], st.Event)
	}
	var ix []int64
	for x := range tlog.StoredHashCount(n) {
		ix = append(ix, x)
	}
	if len(ix) > 0 {
		got, err := s.ReadHashes(ix)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ix {
			if got[i] != mem[ix[i]] {
				t.Fatalf("stored hash %d differs from the recomputed one", ix[i])
			}
		}
	}
	for id, evs := range byAgent {
		h, err := s.Head(ctx, id)
		if err != nil || h.Seq != evs[len(evs)-1].Seq || h.Hash != evs[len(evs)-1].Hash || h.Events != int64(len(evs)) {
			t.Errorf("%s: head %+v, %v; last stored seq %d of %d", id, h, err, evs[len(evs)-1].Seq, len(evs))
		}
		for i := range evs {
			if err := evs[i].Validate(); err != nil {
				t.Errorf("%s: %v", id, err)
			}
			if i > 0 && evs[i].Seq == evs[i-1].Seq+1 && evs[i].Prev != evs[i-1].Hash {
				t.Errorf("%s: chain broken at seq %d", id, evs[i].Seq)
			}
		}
	}
	return all
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "events.db")
	chain := storetest.Chain("pc-001", 1, 300, "")
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "pc-001", chain[:100]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "pc-002", storetest.Chain("pc-002", 3, 17, "")); err != nil {
		t.Fatal(err)
	}
	root, err := s.TreeHash(ctx, 118)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LatestCheckpoint(ctx); err != eventlog.ErrNoCheckpoint {
		t.Errorf("LatestCheckpoint on empty table: %v", err)
	}
	if err := s.PutCheckpoint(ctx, eventlog.Checkpoint{Size: 118, Root: tlog.Hash{1}, Note: "x"}); err == nil {
		t.Error("PutCheckpoint with a wrong root: no error")
	}
	if err := s.PutCheckpoint(ctx, eventlog.Checkpoint{Size: 118, Root: root, Note: "mamori\n118\n...\n"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err == nil {
		t.Error("second Close: no error")
	}

	s, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkConsistent(t, s)
	cp, err := s.LatestCheckpoint(ctx)
	if err != nil || cp.Size != 118 || cp.Root != root || cp.Created.IsZero() {
		t.Errorf("LatestCheckpoint after reopen = %+v, %v", cp, err)
	}
	// The reloaded heads and Merkle frontier carry on where they stopped.
	if r, err := s.Append(ctx, "pc-001", chain[90:]); err != nil || r.Stored != 200 || r.Duplicates != 10 {
		t.Fatalf("Append after reopen = %+v, %v", r, err)
	}
	if _, err := s.Append(ctx, "pc-001", storetest.Chain("pc-001", 301, 1, "")); err == nil {
		t.Error("chain check lost on reopen")
	}
	all := checkConsistent(t, s)
	if len(all) != 318 { // 100 + 17 + 1 gap event + 200
		t.Errorf("%d events after reopen, want 318", len(all))
	}
	if again, _ := s.TreeHash(ctx, 118); again != root {
		t.Error("tree hash at 118 changed")
	}
}

const childEnv = "MAMORI_EVENTLOG_KILL_CHILD"

// TestKillChild is the child half of TestKill: it appends for a few agents
// in a loop and prints "agent seq" for every acknowledged batch.
func TestKillChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("runs only as TestKill's child")
	}
	ctx := context.Background()
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for a := range 4 {
		id := fmt.Sprintf("pc-%03d", a)
		wg.Go(func() {
			prev, seq := "", uint64(1)
			for {
				evs := storetest.Chain(id, seq, 50, prev)
				if _, err := s.Append(ctx, id, evs); err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				out.Lock()
				fmt.Printf("%s %d\n", id, evs[len(evs)-1].Seq)
				out.Unlock()
				prev, seq = evs[len(evs)-1].Hash, seq+50
			}
		})
	}
	wg.Wait()
}

// TestKill kills a writing process with SIGKILL and checks that every batch
// it acknowledged survived and that the log is consistent.
func TestKill(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "events.db")
	for round := range 2 { // the second round appends to a database that was killed once
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[string]uint64{}
		sc := bufio.NewScanner(stdout)
		lines := 0
		deadline := time.Now().Add(20 * time.Second)
		for sc.Scan() {
			var id string
			var seq uint64
			if _, err := fmt.Sscanf(sc.Text(), "%s %d", &id, &seq); err != nil {
				continue // test framework output
			}
			acked[id] = max(acked[id], seq)
			if lines++; lines == 200 || time.Now().After(deadline) {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL on unix
					t.Fatal(err)
				}
			}
		}
		cmd.Wait()
		if lines < 200 {
			t.Fatalf("round %d: child acked only %d batches before exiting", round, lines)
		}

		s, err := eventlog.OpenSQLite(context.Background(), path, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		checkConsistent(t, s)
		for id, seq := range acked {
			h, err := s.Head(context.Background(), id)
			if err != nil || h.Seq < seq {
				t.Errorf("round %d: %s acked seq %d, stored head %+v, %v", round, id, seq, h, err)
			}
		}
		t.Logf("round %d: %d batches acked before SIGKILL, heads %v", round, lines, acked)
		// In round 1 the child restarts its chains at seq 1: the store dedups
		// what it has and carries on after it.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCloseWhileAppending closes the store under load: every Append either
// returns success and its events survive, or returns an error.
func TestCloseWhileAppending(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked = map[string]uint64{}
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for a := range 8 {
		id := fmt.Sprintf("pc-%03d", a)
		evs := storetest.Chain(id, 1, 2000, "")
		wg.Go(func() {
			<-start
			for i := 0; i < len(evs); i += 20 {
				r, err := s.Append(ctx, id, evs[i:i+20])
				if err != nil {
					return // closed; nothing of this batch may be reported as stored
				}
				mu.Lock()
				acked[id] = r.AckedSeq
				mu.Unlock()
			}
		})
	}
	close(start)
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkConsistent(t, s)
	total := uint64(0)
	for id, seq := range acked {
		h, _ := s.Head(ctx, id)
		if h.Seq < seq {
			t.Errorf("%s: acked %d, stored head %d", id, seq, h.Seq)
		}
		total += seq
	}
	if total == 0 {
		t.Error("nothing was acked before Close; the test proves nothing")
	}
}
