package eventlog_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
	"github.com/mamori/mamori/shared/event"
)

// fencedStore is what both backends offer for fencing.
type fencedStore interface {
	eventlog.Store
	ClaimEpoch(ctx context.Context, epoch int64) error
	Depose()
	StoredEpoch(ctx context.Context) (int64, error)
	PutCheckpoint(ctx context.Context, c eventlog.Checkpoint) error
	TreeHash(ctx context.Context, n int64) (tlog.Hash, error)
}

func TestFencingSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	testFencing(t, func() fencedStore {
		s, err := eventlog.OpenSQLite(context.Background(), path, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestFencingPostgres(t *testing.T) {
	dsn := pgtest.Start(t).Schema(t)
	testFencing(t, func() fencedStore {
		s, err := eventlog.OpenPostgres(context.Background(), dsn, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// testFencing: stores open on one database at once, as a deposed writer
// and its successor are. A store that claimed epoch 5 commits; one at epoch
// 4 commits nothing from then on (batches, server events, checkpoints) and
// cannot claim again; a later claim loads what the earlier writer
// committed, so the log goes on as one; a deposed store commits nothing.
func testFencing(t *testing.T, open func() fencedStore) {
	ctx := context.Background()
	a := storetest.Chain("pc-a", 1, 50, "")
	old := open()
	if err := old.ClaimEpoch(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if r, err := old.Append(ctx, "pc-a", a[:10]); err != nil || r.AckedSeq != 10 {
		t.Fatalf("append at epoch 4: %+v, %v", r, err)
	}
	cur := open() // opened while the old writer is alive and open
	if err := cur.ClaimEpoch(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if n, _ := cur.TreeSize(ctx); n != 10 {
		t.Fatalf("tree size after claim = %d, want 10", n)
	}
	refused(t, "append at epoch 4 after epoch 5 claimed", func() error { _, err := old.Append(ctx, "pc-a", a[10:20]); return err })
	if _, err := old.AppendServer(ctx, event.Event{Control: "server", Type: "server.test", Severity: event.Info}); !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("server event at epoch 4: %v", err)
	}
	root, err := old.TreeHash(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.PutCheckpoint(ctx, eventlog.Checkpoint{Size: 10, Root: root, Note: "x\n"}); !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("checkpoint at epoch 4: %v", err)
	}
	if err := old.ClaimEpoch(ctx, 4); !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("claiming epoch 4 over 5: %v", err)
	}
	if e, err := cur.StoredEpoch(ctx); err != nil || e != 5 {
		t.Fatalf("stored epoch = %d, %v; want 5", e, err)
	}
	if r, err := cur.Append(ctx, "pc-a", a[10:20]); err != nil || r.AckedSeq != 20 || r.Stored != 10 {
		t.Fatalf("append at epoch 5: %+v, %v", r, err)
	}

	// A successor opened before the current writer's last commit.
	next := open()
	if r, err := cur.Append(ctx, "pc-a", a[20:30]); err != nil || r.AckedSeq != 30 {
		t.Fatalf("append at epoch 5: %+v, %v", r, err)
	}
	if err := next.ClaimEpoch(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if r, err := next.Append(ctx, "pc-a", a[30:40]); err != nil || r.AckedSeq != 40 || r.Stored != 10 {
		t.Fatalf("append after taking over: %+v, %v", r, err)
	}
	refused(t, "append at epoch 5 after 6", func() error { _, err := cur.Append(ctx, "pc-a", a[40:50]); return err })
	all := storetest.All(t, next, eventlog.Filter{Agent: "pc-a", Limit: eventlog.MaxLimit})
	if len(all) != 40 {
		t.Fatalf("%d events stored, want 40", len(all))
	}
	for i, st := range all {
		if st.Hash != a[i].Hash || st.Index != int64(i) {
			t.Fatalf("event %d: index %d hash %s, want %s", i, st.Index, st.Hash, a[i].Hash)
		}
	}

	next.Depose()
	if _, err := next.AppendServer(ctx, event.Event{Control: "server", Type: "server.test", Severity: event.Info}); !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("server event after Depose: %v", err)
	}
	if err := next.ClaimEpoch(ctx, 6); err != nil {
		t.Fatalf("claiming the same epoch again: %v", err)
	}
	if _, err := next.AppendServer(ctx, event.Event{Control: "server", Type: "server.test", Severity: event.Info}); err != nil {
		t.Fatalf("server event after claiming again: %v", err)
	}
}

// refused checks that f fails with ErrFenced. On PostgreSQL the claim
// ended the older store's writer session, so its first attempt may fail on
// that instead; the next, on a new session, must be fenced.
func refused(t *testing.T, what string, f func() error) {
	t.Helper()
	err := f()
	if err != nil && !errors.Is(err, eventlog.ErrFenced) {
		err = f()
	}
	if !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("%s: %v, want ErrFenced", what, err)
	}
}

// A standby elected after another server's claim ended its idle writer
// session (every claim ends the other stores' writer sessions) commits its
// first record at once: it was lost with "terminating connection due to
// administrator command", and with it the server.writer_started of most
// failovers. Three stores, as three servers of a site.
func TestClaimAfterSessionEndedCommitsFirstRecord(t *testing.T) {
	dsn := pgtest.Start(t).Schema(t)
	ctx := context.Background()
	open := func() *eventlog.Postgres {
		s, err := eventlog.OpenPostgres(ctx, dsn, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	n1, n2, n3 := open(), open(), open()
	for i, s := range []*eventlog.Postgres{n1, n2, n3, n1} {
		if err := s.ClaimEpoch(ctx, int64(i+1)); err != nil {
			t.Fatalf("claim %d: %v", i+1, err)
		}
		if _, err := s.AppendServer(ctx, event.Event{Control: "server", Type: "server.writer_started", Severity: event.Info}); err != nil {
			t.Fatalf("first record after claim %d: %v", i+1, err)
		}
	}
}
