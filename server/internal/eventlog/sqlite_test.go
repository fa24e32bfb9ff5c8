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
