package eventlog_test

import (
	"context"
	"path/filepath"
	"testing"

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
