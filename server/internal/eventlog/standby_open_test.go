package eventlog_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
)

// A server (re)started while another one writes the PostgreSQL store opens
// it without taking the writer's newer events for damaged stream heads:
// before the head was loaded in one snapshot, such an open "rebuilt" heads
// that were right and failed on recording it (fenced). And a deposed store's
// tree size follows what the writer commits.
func TestOpenBesideRunningWriterPostgres(t *testing.T) {
	dsn := pgtest.Start(t).Schema(t)
	ctx := context.Background()
	w, err := eventlog.OpenPostgres(ctx, dsn, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.ClaimEpoch(ctx, 7); err != nil {
		t.Fatal(err)
	}
	const agents = 8
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < agents; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agent, seq, prev := fmt.Sprintf("pc-%02d", i), uint64(1), ""
			for {
				select {
				case <-stop:
					return
				default:
				}
				evs := storetest.Chain(agent, seq, 5, prev)
				if _, err := w.Append(ctx, agent, evs); err != nil {
					t.Error(err)
					return
				}
				seq, prev = seq+5, evs[4].Hash
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := w.TreeSize(ctx); n > 500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer did not commit")
		}
	}
	for k := 0; k < 15; k++ {
		var logs strings.Builder
		s, err := eventlog.OpenPostgres(ctx, dsn, zerolog.New(&logs).Level(zerolog.WarnLevel))
		if err != nil {
			t.Fatalf("open %d beside the writer: %v", k, err)
		}
		if strings.Contains(logs.String(), "rebuilt") {
			t.Fatalf("open %d beside the writer took its newer events for damaged heads:\n%s", k, logs.String())
		}
		s.Depose()
		before, _ := s.TreeSize(ctx)
		var after int64
		for deadline := time.Now().Add(10 * time.Second); after <= before; time.Sleep(50 * time.Millisecond) {
			if after, err = s.TreeSize(ctx); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("a deposed store's tree size stays at %d while the writer commits", before)
			}
		}
		if _, err := s.TreeHash(ctx, after); err != nil {
			t.Fatalf("tree hash at the followed size %d: %v", after, err)
		}
		s.Close()
	}
	p, err := w.Query(ctx, eventlog.Filter{Type: eventlog.HeadsRebuiltType, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 0 {
		t.Fatalf("heads rebuilt by opens beside the writer: %+v", p.Events)
	}
}

// A deposed store asked for the hashes of a checkpoint the writer signed
// after its last look at the committed size (a standby serving the
// writer's checkpoint) reads the size again at once instead of answering
// out of range for up to half a second.
func TestDeposedStoreReadsNewerCheckpointAtOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	w, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.ClaimEpoch(ctx, 3); err != nil {
		t.Fatal(err)
	}
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Depose()
	for round := 0; round < 5; round++ {
		before, err := s.TreeSize(ctx) // the followed size, now fresh
		if err != nil {
			t.Fatal(err)
		}
		agent := fmt.Sprintf("pc-%02d", round)
		if _, err := w.Append(ctx, agent, storetest.Chain(agent, 1, 3, "")); err != nil {
			t.Fatal(err)
		}
		n, _ := w.TreeSize(ctx)
		if n <= before {
			t.Fatalf("the writer's size %d after appending to %d", n, before)
		}
		want, err := w.TreeHash(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.TreeHash(ctx, n)
		if err != nil || got != want {
			t.Fatalf("round %d: the deposed store's tree hash at the writer's size %d (it had seen %d): %v", round, n, before, err)
		}
		if _, err := s.ReadHashes([]int64{tlog.StoredHashIndex(0, n-1)}); err != nil {
			t.Fatalf("round %d: the newest leaf on the deposed store: %v", round, err)
		}
	}
}
