package eventlog_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
)

func openTemp(t testing.TB) *eventlog.SQLite {
	t.Helper()
	s, err := eventlog.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSQLite: the conformance suite on a new store, which writes records.
func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventlog.Store {
		s := openTemp(t)
		if n := s.RecordsFrom(); n != -1 {
			t.Fatalf("a new store holds records from %d", n)
		}
		var size int64
		t.Cleanup(func() {
			if n := s.RecordsFrom(); size > 0 && n != 0 {
				t.Errorf("records from %d, want 0: the store wrote rows", n)
			}
		})
		t.Cleanup(func() { size, _ = s.TreeSize(context.Background()) })
		return s
	})
}

// TestSQLiteRows: the conformance suite on a store that writes rows of
// events, as stores did before records (docs/record-store.md); a store
// that holds rows reads them as it always did.
func TestSQLiteRows(t *testing.T) {
	t.Cleanup(eventlog.SetWriteRecords(false))
	storetest.Run(t, func(t *testing.T) eventlog.Store {
		s := openTemp(t)
		t.Cleanup(func() {
			if n := s.RecordsFrom(); n != -1 {
				t.Errorf("records from %d: the store wrote records", n)
			}
		})
		return s
	})
}

// TestPools checks the pragmas the durability argument rests on and that the
// read pool cannot write.
func TestPools(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	defer s.Close()
	for _, c := range []struct {
		write      bool
		name, want string
	}{
		{true, "journal_mode", "wal"},
		{true, "synchronous", "2"}, // FULL
		{true, "foreign_keys", "1"},
		{true, "busy_timeout", "10000"},
		{true, "wal_autocheckpoint", "0"}, // checkpoints run off the commit path
		{true, "page_size", "16384"},      // a record's pages, TestPageSizeKept
		{false, "journal_mode", "wal"},
		{false, "query_only", "1"},
	} {
		got, err := s.Pragma(ctx, c.write, c.name)
		if err != nil || got != c.want {
			t.Errorf("pragma %s (write pool %v) = %q, %v; want %q", c.name, c.write, got, err, c.want)
		}
	}
	if err := s.ExecRead(ctx, `DELETE FROM events`); err == nil {
		t.Error("read pool accepted a write")
	}
}

// TestPageSizeKept: a store file an older server made with 4 KiB pages
// keeps them (SQLite cannot change a WAL file's page size in place) and
// works as before; only new files get 16 KiB pages (TestPools).
func TestPageSizeKept(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	old, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`PRAGMA page_size = 4096`, `PRAGMA journal_mode = WAL`} {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	evs := storetest.Chain("pc-001", 1, 1200, "")
	for round := range 2 {
		s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.Pragma(ctx, true, "page_size"); err != nil || got != "4096" {
			t.Errorf("round %d: page_size %q, %v; want the file's 4096", round, got, err)
		}
		if _, err := s.Append(ctx, "pc-001", evs[600*round:600*(round+1)]); err != nil {
			t.Fatal(err)
		}
		n, err := s.TreeSize(ctx)
		if err != nil || n != int64(600*(round+1)) {
			t.Errorf("round %d: %d events, %v; want %d", round, n, err, 600*(round+1))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckpointInBackground checks that committed pages reach the
// database file while the store is open although no commit checkpoints
// (wal_autocheckpoint is 0, TestPools): the checkpointer moves them once
// the WAL has passed 4 MiB.
func TestCheckpointInBackground(t *testing.T) {
	// Rows, which fill the WAL past 4 MiB with 12,000 events; records do not.
	t.Cleanup(eventlog.SetWriteRecords(false))
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	before := fi.Size()
	evs := storetest.Chain("pc-001", 1, 12000, "")
	for i := 0; i < len(evs); i += 500 {
		if _, err := s.Append(ctx, "pc-001", evs[i:i+500]); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() < 4<<20 {
		t.Fatalf("WAL: %v, %v; the test needs more than 4 MiB", fi, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > before+64<<10 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes (%d at open): the WAL was never checkpointed", fi.Size(), before)
		}
	}
}

// TestWALRestartedInPlace: once the WAL has passed walLarge, the
// checkpointer has the writer start it again from its beginning in the same
// file, under ingest. It used to TRUNCATE the file instead, under the write
// lock: at 20,000 events/s that held the writer 85-214 ms every 4 s (most
// likely the file system's journal commit for the truncation; then the file
// grew again on every commit), the bulk of the paced ack latency's tail.
func TestWALRestartedInPlace(t *testing.T) {
	const large = 8 << 20
	defer eventlog.SetWALLarge(large)()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The WAL header's checkpoint sequence number counts restarts.
	restarts := func() (uint32, int64) {
		f, err := os.Open(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var h [16]byte
		if _, err := io.ReadFull(f, h[:]); err != nil {
			return 0, 0
		}
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return binary.BigEndian.Uint32(h[12:]), fi.Size()
	}
	first, _ := restarts()
	evs := storetest.Chain("pc-001", 1, 120000, "")
	var passed bool
	for i := 0; ; i += 500 {
		if i == len(evs) {
			t.Fatalf("WAL restarted %d times in %d events, want 2", func() uint32 { n, _ := restarts(); return n - first }(), i)
		}
		if _, err := s.Append(ctx, "pc-001", evs[i:i+500]); err != nil {
			t.Fatal(err)
		}
		n, size := restarts()
		if size > large {
			passed = true
		} else if passed && size < large/2 {
			t.Fatalf("WAL file cut to %d bytes after it passed %d: truncated, not restarted in place", size, large)
		}
		if n-first < 2 {
			time.Sleep(10 * time.Millisecond) // let the checkpointer's ticks come, at most 50,000 events a second
			continue
		}
		// A restarted WAL is cut back to journal_size_limit, so what is
		// left above it is at most this batch's frames.
		if size > large+1<<20 {
			t.Fatalf("restarted WAL file is %d bytes, limit %d", size, large)
		}
		return
	}
}

// TestMigrateKeys moves a store of schema 3 (query indexes on events, no
// keys file) to event_keys: the open builds every event's keys, the
// watermark is the log's end, and queries read the same pages.
func TestMigrateKeys(t *testing.T) {
	// Rows: the test turns the store into one from before the key runs.
	t.Cleanup(eventlog.SetWriteRecords(false))
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"pc-001", "pc-002"} {
		if _, err := s.Append(ctx, a, storetest.Chain(a, 1, 300, "")); err != nil {
			t.Fatal(err)
		}
	}
	f := eventlog.Filter{Control: "fileaccess", Limit: 1000}
	want, err := s.Query(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE INDEX events_user ON events(user) WHERE user IS NOT NULL;
		CREATE INDEX events_object ON events(object) WHERE object IS NOT NULL;
		CREATE INDEX events_register_id ON events(register_id) WHERE register_id IS NOT NULL;
		DROP TABLE writer_epoch;
		DROP TABLE event_ranges;
		DROP TABLE agent_runs;
		CREATE UNIQUE INDEX events_agent_seq ON events(agent, seq);
		CREATE INDEX events_control ON events(control) WHERE control IS NOT NULL;
		CREATE INDEX events_type ON events(type) WHERE type IS NOT NULL;
		DROP TABLE records;
		UPDATE schema_version SET version = 3`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, f := range []string{"-keys", "-keys-wal", "-keys-shm"} {
		if err := os.Remove(path + f); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	s, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	size, _ := s.TreeSize(ctx)
	if got := s.Indexed(); got != size {
		t.Errorf("watermark after migration %d, want %d", got, size)
	}
	var objects int64
	if err := s.QueryRow(ctx, `SELECT count(*) FROM `+eventlog.LogEvents+` WHERE object IS NOT NULL`, &objects); err != nil {
		t.Fatal(err)
	}
	keys, _, err := s.ObjectKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if keys != objects || keys == 0 {
		t.Errorf("key runs: %d object keys for %d events with an object", keys, objects)
	}
	got, err := s.Query(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != len(want.Events) || len(got.Events) == 0 {
		t.Fatalf("after migration %d events, before %d", len(got.Events), len(want.Events))
	}
	for i := range got.Events {
		if got.Events[i].Index != want.Events[i].Index {
			t.Fatalf("event %d: index %d, before %d", i, got.Events[i].Index, want.Events[i].Index)
		}
	}
}

// TestIndexerResumes closes a store whose indexer stopped mid-log and
// checks that the reopened store's indexer completes the keys from the
// watermark on, each event's once.
func TestIndexerResumes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "pc-001", storetest.Chain("pc-001", 1, 500, "")); err != nil {
		t.Fatal(err)
	}
	size, _ := s.TreeSize(ctx)
	if err := s.SetWatermark(ctx, size/3); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for deadline := time.Now().Add(30 * time.Second); s.Indexed() < size; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("watermark %d, want %d", s.Indexed(), size)
		}
	}
	var objects int64
	if err := s.QueryRow(ctx, `SELECT count(*) FROM `+eventlog.LogEvents+` WHERE object IS NOT NULL`, &objects); err != nil {
		t.Fatal(err)
	}
	keys, distinct, err := s.ObjectKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if keys != objects || distinct != objects || keys == 0 {
		t.Errorf("%d object keys for %d distinct events, want %d", keys, distinct, objects)
	}
}

// TestKeysOfAnotherLog replaces events.db by another store's (a restored
// backup that is not this log's prefix) and keeps the keys file: the open
// must notice the keys are not this log's and rebuild them, or a user
// filter would miss the rows whose keys it lacks.
func TestKeysOfAnotherLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	for _, c := range []struct {
		path string
		from uint64
		n    int
	}{{a, 1, 300}, {b, 3, 400}} { // b starts at seq 3 after a gap event: users move by a row
		s, err := eventlog.OpenSQLite(ctx, c.path, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(ctx, "pc-001", storetest.Chain("pc-001", c.from, c.n, "")); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if n, _ := s.TreeSize(ctx); s.Indexed() == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("indexer did not catch up")
			}
		}
		if _, err := s.Query(ctx, eventlog.Filter{User: "u"}); err != nil { // a reader attaches the keys file
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{a, b} { // Close leaves the database files alone
		for _, wal := range []string{f + "-wal", f + "-keys-wal"} {
			if _, err := os.Stat(wal); !os.IsNotExist(err) {
				t.Fatalf("%s after Close: %v", wal, err)
			}
		}
	}
	raw, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := eventlog.OpenSQLite(ctx, a, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var want int
	if err := s.QueryRow(ctx, `SELECT count(*) FROM `+eventlog.LogEvents+` WHERE "user" = 'CORP\tanaka'`, &want); err != nil {
		t.Fatal(err)
	}
	p, err := s.Query(ctx, eventlog.Filter{User: `CORP\tanaka`, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != want || want == 0 {
		t.Errorf("user filter: %d events, the log has %d", len(p.Events), want)
	}
}

// TestOpenErrors checks that odd paths (spaces, non-ASCII, URI characters) work and that bad places and a newer
// schema give clear errors.
func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	odd := filepath.Join(t.TempDir(), "データ dir#%20", "events.db")
	s, err := eventlog.OpenSQLite(ctx, odd, zerolog.Nop())
	if err != nil {
		t.Fatalf("path with spaces, # and %%: %v", err)
	}
	if _, err := s.Append(ctx, "pc-001", storetest.Chain("pc-001", 1, 3, "")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(odd); err != nil {
		t.Errorf("database not at the path given: %v", err)
	}

	dir := t.TempDir()
	if _, err := eventlog.OpenSQLite(ctx, dir, zerolog.Nop()); err == nil {
		t.Error("opening a directory as the database: no error")
	}

	path := filepath.Join(t.TempDir(), "events.db")
	s, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("newer schema: err = %v", err)
	}
}

// TestIndexerBatchesLightIngest: light ingest (an agent's batch every
// 10 ms) is indexed in a few transactions a second, not one per poll:
// each costs a commit of the keys file, and at 2,000 events/s one per
// 20 ms poll made the indexer 100 µs of CPU an event. The tail it leaves
// to queries stays short, and it is indexed soon after ingest stops.
func TestIndexerBatchesLightIngest(t *testing.T) {
	ctx := context.Background()
	s, err := eventlog.OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chain := storetest.Chain("pc-001", 1, 1000, "")
	runs0 := s.IndexRuns()
	start := time.Now()
	for i := 0; i < len(chain); i += 10 {
		if _, err := s.Append(ctx, "pc-001", chain[i:i+10]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	size, _ := s.TreeSize(ctx)
	for deadline := time.Now().Add(5 * time.Second); s.Indexed() < size; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("watermark %d, want %d, 5 s after the last batch", s.Indexed(), size)
		}
	}
	// One transaction per 250 ms of ingest, plus the last; a poll each
	// 20 ms would be one per batch or two.
	if runs, most := s.IndexRuns()-runs0, int64(took/(250*time.Millisecond))+2; runs > most {
		t.Errorf("%d indexer transactions for 100 batches over %v, want at most %d", runs, took.Round(time.Millisecond), most)
	}
}

// TestOpenWithRowDeletedBelowWatermark deletes, with the store closed, the
// row just below the index watermark (an insider removing an event). The
// store must still open, rebuilding the keys, so that the audit can report
// the missing index instead of the server refusing to start; CI once saw
// the open fail with "no rows" when the indexer happened to stop there.
func TestOpenWithRowDeletedBelowWatermark(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "pc-001", storetest.Chain("pc-001", 1, 100, "")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetWatermark(ctx, 78); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM events WHERE idx = 77`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatalf("open after a row below the watermark was deleted: %v", err)
	}
	defer s.Close()
	p, err := s.Query(ctx, eventlog.Filter{User: `CORP\tanaka`, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var want int
	if err := s.QueryRow(ctx, `SELECT count(*) FROM `+eventlog.LogEvents+` WHERE "user" = 'CORP\tanaka'`, &want); err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != want {
		t.Errorf("user filter after the rebuild: %d events, the log has %d", len(p.Events), want)
	}
}
