package eventlog

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrRolledBack is wrapped by every Append, AppendServer and PutCheckpoint
// once the writer has found the database behind what it had committed, or
// holding another log: restored from an older backup or dump, or an
// asynchronous replica promoted. Appending then would reuse log positions
// the signed checkpoints already cover and fork the log, so the store stops
// taking writes until it is reopened (start-up verification then names
// what is missing against etcd's checkpoint). Halted reports it.
var ErrRolledBack = errors.New("eventlog: the event database is behind the log this server committed (restored from an older copy, or an async replica promoted): ingest stopped")

// Halted returns the error that stopped the writer (wrapping ErrRolledBack),
// or nil while it takes writes. Readiness checks report it.
func (s *core) Halted() error {
	if e, ok := s.halt.Load().(error); ok {
		return e
	}
	return nil
}

func (s *core) stop(err error) {
	if s.halt.CompareAndSwap(nil, err) {
		s.log.Error().Err(err).Msg("event store stopped taking writes")
	}
}

// loadTail reads the stored Merkle hashes of the last record of a tree of n.
func (s *core) loadTail(ctx context.Context, db dbtx, n int64) error {
	s.tail = nil
	if n == 0 {
		return nil
	}
	if n-1 >= s.recordsFrom() {
		tail, err := recordMerkle(ctx, db, n-1)
		if err != nil {
			return fmt.Errorf("eventlog: load last record: %w", err)
		}
		s.tail = tail
		return nil
	}
	if err := db.QueryRowContext(ctx, s.bind(`SELECT merkle FROM events WHERE idx = ?`), n-1).Scan(&s.tail); err != nil {
		return fmt.Errorf("eventlog: load last record: %w", err)
	}
	return nil
}

// checkTail compares what the database holds at its end (last index and
// that record's Merkle hashes, read in the commit's transaction) with what
// this writer committed last: equal, or the database was replaced under it.
func (s *core) checkTail(first int64, lastIdx int64, merkle []byte) error {
	if lastIdx+1 == first && string(merkle) == string(s.tail) {
		return nil
	}
	if lastIdx+1 < first {
		return fmt.Errorf("%w: the database ends at log index %d, this server had committed %d events", ErrRolledBack, lastIdx, first)
	}
	return fmt.Errorf("%w: the database's record at log index %d is not the one this server committed", ErrRolledBack, lastIdx)
}

// checkReloaded compares the state load just read back after a reconnect
// with the one committed before (size old.n): the database must hold at
// least that many records (a commit whose reply was lost may have added
// some) and the same tree at that size.
func (s *core) checkReloaded(old *frontier) error {
	if old.n == 0 {
		return nil
	}
	if n := s.front.n; n < old.n {
		return fmt.Errorf("%w: after reconnecting, the database holds %d events, this server had committed %d", ErrRolledBack, n, old.n)
	}
	want, err := tlog.TreeHash(old.n, old)
	if err != nil {
		return fmt.Errorf("eventlog: root of the committed tree: %w", err)
	}
	got, err := s.TreeHash(context.Background(), old.n)
	if err != nil {
		return fmt.Errorf("eventlog: root of the reloaded tree: %w", err)
	}
	if got != want {
		return fmt.Errorf("%w: after reconnecting, the database's tree at size %d has root %s, this server committed %s: it holds another log",
			ErrRolledBack, old.n, got, want)
	}
	return nil
}
