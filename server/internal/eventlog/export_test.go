package eventlog

import (
	"context"
	"fmt"
)

// Pragma reads a pragma on the write (w) or read (r) pool, for tests.
func (s *SQLite) Pragma(ctx context.Context, write bool, name string) (string, error) {
	db := s.rdb
	if write {
		db = s.wdb
	}
	var v string
	err := db.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v, err
}

// ExecRead runs a statement on the read pool, for tests that it refuses writes.
func (s *SQLite) ExecRead(ctx context.Context, q string) error {
	_, err := s.rdb.ExecContext(ctx, q)
	return err
}

// QueryIndexes are the indexes only Query needs.
var QueryIndexes = []string{"events_time", "events_control", "events_type", "events_user", "events_object", "events_register_id"}

// DropIndexes drops the named indexes (all query indexes if none are named)
// so a benchmark can measure what they cost on insert.
func (s *SQLite) DropIndexes(ctx context.Context, names ...string) error {
	if len(names) == 0 {
		names = QueryIndexes
	}
	for _, ix := range names {
		if _, err := s.wdb.ExecContext(ctx, "DROP INDEX "+ix); err != nil {
			return fmt.Errorf("drop %s: %w", ix, err)
		}
	}
	return nil
}
