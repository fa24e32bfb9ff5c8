package eventlog

import (
	"context"
	"database/sql"
	"fmt"
)

// dbtx is what loading the log head reads and repairs through: a pool, or
// one transaction.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// loadSnapshot loads the log head at open in one repeatable-read
// transaction. Another server may be the writer and commit meanwhile:
// read piece by piece, its newer events would make the heads read before
// them look wrong, and the check would "rebuild" heads that were right
// (and, on a server that is not the writer, fail the start on recording
// it). In one snapshot heads and events agree unless the store is damaged.
func (s *Postgres) loadSnapshot(ctx context.Context) error {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return fmt.Errorf("eventlog: load: %w", err)
	}
	defer tx.Rollback()
	if err := s.load(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("eventlog: load: %w", err)
	}
	return nil
}

// loadConsistent is load in one read transaction (readTx): heads and log
// from one moment. Loaded statement by statement while another writer
// commits, heads read before its commit and the log after it disagreed, and
// checkHeads recorded a hand edit that never was (server.heads_rebuilt).
func (s *core) loadConsistent(ctx context.Context) error {
	tx, err := s.rdb.BeginTx(ctx, s.readTx)
	if err != nil {
		return fmt.Errorf("eventlog: load: %w", err)
	}
	defer tx.Rollback()
	return s.load(ctx, tx)
}
