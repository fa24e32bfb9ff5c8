package report

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/incident"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/state"
)

// deps are a report's real dependencies in one temp dir: a SQLite event
// store, an embedded etcd, the registers and the incidents on them.
type deps struct {
	store *eventlog.SQLite
	st    *state.State
	regs  *register.Service
	incs  *incident.Service
}

func notFound(err error) bool { return errors.Is(err, state.ErrNotFound) }

func newDeps(t *testing.T) deps {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := eventlog.OpenSQLite(ctx, filepath.Join(dir, "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	st, err := state.Open(ctx, state.Config{DataDir: dir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	regs, err := register.New(register.Config{State: st})
	if err != nil {
		t.Fatal(err)
	}
	incs, err := incident.New(incident.Config{KV: st, Events: store, Registers: regs, IsNotFound: notFound,
		IsConflict: func(err error) bool { return errors.Is(err, state.ErrConflict) }})
	if err != nil {
		t.Fatal(err)
	}
	return deps{store: store, st: st, regs: regs, incs: incs}
}
