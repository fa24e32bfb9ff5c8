package eventlog_test

import (
	"context"
	"database/sql"
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

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventlog.Store { return openTemp(t) })
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

// TestCheckpointOffCommitPath checks that committed pages reach the
// database file while the store is open although no commit checkpoints: a
// few hundred events stay far below SQLite's automatic checkpoint (1,000
// pages), so only the background checkpointer moves them.
func TestCheckpointOffCommitPath(t *testing.T) {
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
	if _, err := s.Append(ctx, "pc-001", storetest.Chain("pc-001", 1, 300, "")); err != nil {
		t.Fatal(err)
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
