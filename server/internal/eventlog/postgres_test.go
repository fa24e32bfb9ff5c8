package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
	"github.com/mamori/mamori/shared/event"
)

func openPG(tb testing.TB, dsn string) *eventlog.Postgres {
	tb.Helper()
	s, err := eventlog.OpenPostgres(context.Background(), dsn, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestPostgresConformance(t *testing.T) {
	srv := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T) eventlog.Store { return openPG(t, srv.Schema(t)) })
}

// TestPostgresDurability: what was acknowledged survives a crash of the
// database server and a restart of the store, and the reopened store
// carries on the same chains and Merkle log.
func TestPostgresDurability(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	dsn := srv.Schema(t)
	s := openPG(t, dsn)
	a := storetest.Chain("pc-001", 1, 300, "")
	b := storetest.Chain("pc-002", 1, 50, "")
	for i := 0; i < 200; i += 50 {
		if _, err := s.Append(ctx, "pc-001", a[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Append(ctx, "pc-002", b); err != nil {
		t.Fatal(err)
	}
	root, err := s.TreeHash(ctx, 250)
	if err != nil {
		t.Fatal(err)
	}
	note := "test checkpoint\n"
	if err := s.PutCheckpoint(ctx, eventlog.Checkpoint{Size: 250, Root: root, Note: note}); err != nil {
		t.Fatal(err)
	}
	// A second store may open the schema (standbys read it); the writer
	// epoch, not a lock, keeps it from writing (TestFencing).
	s2, err := eventlog.OpenPostgres(ctx, dsn, zerolog.Nop())
	if err != nil {
		t.Fatalf("a second store on the schema: %v", err)
	}
	s2.Close()

	if srv.CanCrash() {
		srv.Crash(t)
		// The old store's writer connection is gone: its next group reconnects.
		if _, err := s.Append(ctx, "pc-001", a[200:210]); err == nil {
			// A group may fail once on the broken connection; either way the
			// next one must succeed.
			t.Log("append after crash succeeded at once")
		}
		if r, err := s.Append(ctx, "pc-001", a[200:220]); err != nil || r.AckedSeq != 220 {
			t.Fatalf("append after reconnect: %+v, %v", r, err)
		}
	} else {
		if _, err := s.Append(ctx, "pc-001", a[200:220]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openPG(t, dsn)
	defer s.Close()
	if n, _ := s.TreeSize(ctx); n != 270 {
		t.Fatalf("TreeSize after restart = %d, want 270", n)
	}
	if got, err := s.TreeHash(ctx, 250); err != nil || got != root {
		t.Fatalf("tree hash at 250 after restart = %v, %v; want %v", got, err, root)
	}
	if cp, err := s.LatestCheckpoint(ctx); err != nil || cp.Size != 250 || cp.Root != root || cp.Note != note {
		t.Fatalf("LatestCheckpoint = %+v, %v", cp, err)
	}
	h, err := s.Head(ctx, "pc-001")
	if err != nil || h.Seq != 220 || h.Hash != a[219].Hash || h.Events != 220 {
		t.Fatalf("Head(pc-001) = %+v, %v", h, err)
	}
	// Resends are duplicates, the chain continues, and the log extends the
	// same tree (a consistency proof from the checkpoint holds).
	if r, err := s.Append(ctx, "pc-001", a[150:300]); err != nil || r.Duplicates != 70 || r.Stored != 80 || r.AckedSeq != 300 {
		t.Fatalf("resend and continue: %+v, %v", r, err)
	}
	p, err := tlog.ProveTree(350, 250, s)
	if err != nil {
		t.Fatal(err)
	}
	newRoot, err := s.TreeHash(ctx, 350)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(p, 350, newRoot, 250, root); err != nil {
		t.Errorf("consistency 250 -> 350: %v", err)
	}
	all := storetest.All(t, s, eventlog.Filter{Agent: "pc-001", Limit: eventlog.MaxLimit})
	if len(all) != 300 {
		t.Fatalf("pc-001 has %d events, want 300", len(all))
	}
	for i, st := range all {
		if st.Hash != a[i].Hash {
			t.Fatalf("event %d: hash %s, want %s", i, st.Hash, a[i].Hash)
		}
	}
}

// TestPostgresRefusesNUL: text PostgreSQL cannot hold is refused with the
// batch alone, not by failing the group commit it would have joined.
func TestPostgresRefusesNUL(t *testing.T) {
	srv := pgtest.Start(t)
	s := openPG(t, srv.Schema(t))
	defer s.Close()
	ctx := context.Background()
	evs := storetest.Chain("pc-001", 1, 3, "")
	evs[1].Object = "a\x00b"
	if err := evs[1].Seal(evs[0].Hash); err != nil {
		t.Fatal(err)
	}
	evs[2].Seal(evs[1].Hash)
	if _, err := s.Append(ctx, "pc-001", evs); !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("Append with NUL: err = %v", err)
	}
	if r, err := s.Append(ctx, "pc-002", storetest.Chain("pc-002", 1, 3, "")); err != nil || r.Stored != 3 {
		t.Fatalf("other agent: %+v, %v", r, err)
	}
}

// TestPostgresPrune: retention clears payloads and keeps the log provable.
func TestPostgresPrune(t *testing.T) {
	srv := pgtest.Start(t)
	s := openPG(t, srv.Schema(t))
	defer s.Close()
	ctx := context.Background()
	evs := storetest.Chain("pc-001", 1, 20, "")
	// Retention goes by received time: events 1..10 arrive an hour before
	// 11..20.
	t0 := storetest.Base.Add(30 * time.Minute) // on time: no clock skew events
	now := t0
	s.SetClock(func() time.Time { return now })
	if _, err := s.Append(ctx, "pc-001", evs[:10]); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(time.Hour)
	if _, err := s.Append(ctx, "pc-001", evs[10:]); err != nil {
		t.Fatal(err)
	}
	root, _ := s.TreeHash(ctx, 20)
	cutoff := now
	n, err := s.Prune(ctx, cutoff)
	if err != nil || n != 10 {
		t.Fatalf("Prune = %d, %v; want 10", n, err)
	}
	all := storetest.All(t, s, eventlog.Filter{})
	for i, st := range all {
		if st.Pruned != (i < 10) || st.Hash != evs[i].Hash {
			t.Errorf("event %d: pruned %v, hash %s", i, st.Pruned, st.Hash)
		}
	}
	if got, err := s.TreeHash(ctx, 20); err != nil || got != root {
		t.Errorf("tree hash after prune = %v, %v; want %v", got, err, root)
	}
	if n, err := s.Prune(ctx, cutoff); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want 0", n, err)
	}
}

// BenchmarkIngestBackends compares batch ingest on SQLite and PostgreSQL with
// the same batch shape (BenchmarkAppend's). PostgreSQL runs on the throwaway
// cluster (fsync on) or MAMORI_TEST_PG_DSN; cpu-ns/event is this process
// only, not the PostgreSQL server. Use a fixed count, e.g.
// -benchtime=100000x.
func BenchmarkIngestBackends(b *testing.B) {
	shapes := [][2]int{{16, 100}, {16, 500}, {64, 100}}
	for _, c := range shapes {
		b.Run(fmt.Sprintf("backend=sqlite/writers=%d/batch=%d", c[0], c[1]), func(b *testing.B) {
			s := openTemp(b)
			defer s.Close()
			benchIngest(b, s, c[0], c[1])
		})
	}
	srv := pgtest.Start(b) // after SQLite, so a missing server skips only these
	for _, c := range shapes {
		b.Run(fmt.Sprintf("backend=postgres/writers=%d/batch=%d", c[0], c[1]), func(b *testing.B) {
			s := openPG(b, srv.Schema(b))
			defer s.Close()
			benchIngest(b, s, c[0], c[1])
		})
	}
}
