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

// QueryRow reads one row on the read pool, for tests.
func (s *SQLite) QueryRow(ctx context.Context, q string, dest ...any) error {
	return s.rdb.QueryRowContext(ctx, q, dest...).Scan(dest...)
}

// ExecRead runs a statement on the read pool, for tests that it refuses writes.
func (s *SQLite) ExecRead(ctx context.Context, q string) error {
	_, err := s.rdb.ExecContext(ctx, q)
	return err
}

// SetWatermark holds the indexer and puts the watermark at wm (at most
// the tree size), with exactly the keys below it, so tests can read through
// any split of keys and tail.
func (s *SQLite) SetWatermark(ctx context.Context, wm int64) error {
	s.indexPaused.Store(true)
	s.imu.Lock()
	defer s.imu.Unlock()
	if n := s.size.Load(); wm > n {
		return fmt.Errorf("watermark %d above tree size %d", wm, n)
	}
	for _, st := range []struct {
		q    string
		args []any
	}{
		{`DELETE FROM event_keys`, nil},
		{indexKeysSQL, []any{0, wm}},
		{`UPDATE index_state SET watermark = ?1, last = (SELECT hash FROM events WHERE idx = ?1 - 1)`, []any{wm}},
	} {
		if _, err := s.kdb.ExecContext(ctx, st.q, st.args...); err != nil {
			return err
		}
	}
	s.watermark.Store(wm)
	return nil
}

// Indexed reports the watermark: the events below it are in event_keys.
func (s *SQLite) Indexed() int64 { return s.watermark.Load() }

// IndexRuns is how many transactions the indexer has committed.
func (s *SQLite) IndexRuns() int64 { return s.indexRuns.Load() }
