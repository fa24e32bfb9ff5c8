package app

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
)

// TestOpenEventsSelectsBackend: a postgres:// DSN goes to PostgreSQL (here a
// socket where no server listens, so the connect error names it), anything
// else to a SQLite file.
func TestOpenEventsSelectsBackend(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, dsn := range []string{"postgres://u@/db?host=" + dir + "&connect_timeout=2", "postgresql://u@/db?host=" + dir} {
		s, err := openEvents(ctx, dsn, dir, zerolog.Nop())
		if err == nil {
			s.Close()
			t.Fatalf("%s: opened without a server", dsn)
		}
		if !strings.Contains(err.Error(), "postgres connect") {
			t.Errorf("%s: err = %v, want a PostgreSQL connect error", dsn, err)
		}
	}
	for _, dsn := range []string{"", "sqlite:" + filepath.Join(dir, "x.db")} {
		s, err := openEvents(ctx, dsn, dir, zerolog.Nop())
		if err != nil {
			t.Fatalf("%q: %v", dsn, err)
		}
		if _, ok := s.(*eventlog.SQLite); !ok {
			t.Errorf("%q opened %T, want SQLite", dsn, s)
		}
		s.Close()
	}
}
