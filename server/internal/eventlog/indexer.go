package eventlog

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The indexer keeps the query indexes (the key runs, keysSchema and
// keyruns.go) behind the log, so that a commit inserts each event into the
// log's B-tree and the (agent, seq) index only: random keys (object paths
// above all) in six secondary B-trees were most of the writer's time
// (docs/ingest.md). The keys live in their own file (events.db-keys) with
// its own write lock, so on two cores the indexer runs beside the writer
// instead of taking turns. It adds the keys of committed events as a run,
// sorted, and moves index_state.watermark in the same transaction, so a
// crash at any point leaves keys and watermark agreeing and the indexer
// resumes from it.
const (
	indexBatch = 16384
	indexPoll  = 20 * time.Millisecond
	// A short backlog waits up to indexLinger for more, so that light
	// ingest (an office's usual) is indexed in a few transactions a second
	// rather than one per poll: each costs a commit of the keys file, which
	// at 2,000 events/s made the indexer 100 µs of CPU an event. Queries
	// scan what waits (at most indexLinger of events, or indexEager).
	indexLinger = 250 * time.Millisecond
	indexEager  = 4096
)

// keysFormat follows the hash in index_state.last: 1 once a run may hold
// range keys (runkeys.go), 2 once runs are key blocks (keyblocks.go). A
// server of another format finds the keys not this log's and rebuilds
// them, rather than misread them (a range key as its first event only, a
// run of key rows as blocks).
const keysFormat = 2

// indexer runs until the store closes.
func (s *SQLite) indexer(conn *sql.Conn) {
	defer s.bg.Done()
	defer conn.Close()
	ctx := context.Background()
	t := time.NewTicker(indexPoll)
	defer t.Stop()
	var (
		retry   time.Time // after a failure (a full disk, say), wait a second
		waiting time.Time // since when a backlog has waited
	)
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		for time.Now().After(retry) {
			wm, size := s.watermark.Load(), s.size.Load()
			if wm >= size {
				waiting = time.Time{}
				break
			}
			if waiting.IsZero() {
				waiting = time.Now()
			}
			if size-wm < indexEager && time.Since(waiting) < indexLinger {
				break
			}
			waiting = time.Time{}
			if s.indexPaused.Load() {
				break
			}
			if err := s.indexRange(ctx, conn, wm, min(size, wm+indexBatch)); err != nil {
				s.log.Error().Err(err).Int64("watermark", wm).Msg("indexing events")
				retry = time.Now().Add(time.Second)
				break
			}
			if err := s.compactLocked(ctx, conn); err != nil {
				s.log.Error().Err(err).Msg("merging query index runs")
				retry = time.Now().Add(time.Second)
				break
			}
			select {
			case <-s.stop:
				return
			default:
			}
		}
	}
}

// compactLocked is compact under imu.
func (s *SQLite) compactLocked(ctx context.Context, conn *sql.Conn) error {
	s.imu.Lock()
	defer s.imu.Unlock()
	if s.indexPaused.Load() {
		return nil // a test holds the indexer
	}
	return s.compact(ctx, conn)
}

// indexRange adds the keys of the events in [lo, hi) as a new run and moves
// the watermark to hi, in one transaction.
func (s *SQLite) indexRange(ctx context.Context, conn *sql.Conn, lo, hi int64) (err error) {
	s.imu.Lock()
	defer s.imu.Unlock()
	if s.indexPaused.Load() || s.watermark.Load() != lo {
		return nil // a test holds the indexer or moved the watermark
	}
	return s.addRun(ctx, conn, lo, hi)
}

// addRun is indexRange's work. The caller holds imu.
func (s *SQLite) addRun(ctx context.Context, conn *sql.Conn, lo, hi int64) (err error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("eventlog: index: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	// The new run takes in the smaller runs before it (absorbFrom): their
	// keys are read again from the log with its own.
	a := absorbFrom(s.runs, lo, hi)
	r := keyRun{lo: lo, hi: hi}
	if a < len(s.runs) {
		r.lo = s.runs[a].lo
	}
	r.name = runName(r.lo, r.hi)
	fill := func(tx *sql.Tx) error {
		vals, err := logVals(ctx, tx, r.lo, r.hi)
		if err != nil {
			return err
		}
		return writeKeys(ctx, tx, r.name, runKeys(r.lo, vals))
	}
	if err := replaceRuns(ctx, tx, s.runs[a:], r, fill); err != nil {
		return fmt.Errorf("eventlog: index [%d, %d): %w", lo, hi, err)
	}
	// NULL for a row deleted by hand: the run still lands, and the audit
	// reports the gap.
	var last []byte
	if err := tx.QueryRowContext(ctx, hashAtSQL, hi-1).Scan(&last); err != nil {
		return fmt.Errorf("eventlog: index watermark: %w", err)
	}
	if last != nil {
		last = append(last, keysFormat)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE index_state SET watermark = ?, last = ?`, hi, last); err != nil {
		return fmt.Errorf("eventlog: index watermark: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("eventlog: index: %w", err)
	}
	s.setRuns(append(s.runs[:a:a], r))
	s.watermark.Store(hi)
	s.indexRuns.Add(1)
	return nil
}

// loadWatermark reads the watermark at open. Keys that do not belong to
// this log (a watermark above its end, or the event below it not the one
// indexed: events.db restored from a backup or replaced) are dropped and
// rebuilt from the start; keys of a log this one extends are kept.
func (s *SQLite) loadWatermark(ctx context.Context) error {
	var (
		wm         int64
		last, have []byte
	)
	if err := s.kdb.QueryRowContext(ctx, `SELECT watermark, last FROM index_state`).Scan(&wm, &last); err != nil {
		return fmt.Errorf("eventlog: read index watermark: %w", err)
	}
	n := s.size.Load()
	if wm > 0 && wm <= n {
		// A row missing there (deleted by hand) leaves have nil: the keys
		// are rebuilt and the open goes on, so the audit can report the gap.
		err := s.kdb.QueryRowContext(ctx, hashAtSQL, wm-1).Scan(&have)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("eventlog: read index watermark: %w", err)
		}
	}
	runs, err := loadRuns(ctx, s.kdb)
	if err != nil {
		return err
	}
	intact, err := s.runsIntact(ctx, runs, wm)
	if err != nil {
		return err
	}
	if wm > n || !(bytes.Equal(last, have) || bytes.Equal(last, append(have, keysFormat))) || !intact {
		s.log.Warn().Int64("watermark", wm).Int64("events", n).Msg("query indexes are not this log's: rebuilding them")
		tx, err := s.kdb.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("eventlog: reset index watermark: %w", err)
		}
		defer tx.Rollback()
		if err := dropRuns(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE index_state SET watermark = 0, last = NULL`); err != nil {
			return fmt.Errorf("eventlog: reset index watermark: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("eventlog: reset index watermark: %w", err)
		}
		wm, runs = 0, nil
	}
	s.setRuns(runs)
	s.watermark.Store(wm)
	return nil
}

// runsIntact reports whether runs, in log order, cover [0, wm) exactly and
// each has its table.
func (s *SQLite) runsIntact(ctx context.Context, runs []keyRun, wm int64) (bool, error) {
	at := int64(0)
	for _, r := range runs {
		// event_keys is a table of key rows, from before runs.
		if r.lo != at || r.hi <= r.lo || r.name == "event_keys" {
			return false, nil
		}
		at = r.hi
		var n int
		if err := s.kdb.QueryRowContext(ctx, `SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?`, r.name).Scan(&n); err != nil {
			return false, fmt.Errorf("eventlog: read key runs: %w", err)
		}
		if n != 1 {
			return false, nil
		}
	}
	return at == wm, nil
}

// catchUp indexes, before the store serves, what the indexer has not: the
// whole log after the migration to the keys file, with the file deleted or
// of another format (2.4 s for the query benchmark's 2,000,000 events on 2
// cores), a few batches after a restart.
func (s *SQLite) catchUp(ctx context.Context) error {
	n := s.size.Load()
	if wm := s.watermark.Load(); n-wm > indexBatch {
		s.log.Info().Int64("from", wm).Int64("to", n).Msg("building the query indexes")
	}
	conn, err := s.kdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("eventlog: index: %w", err)
	}
	defer conn.Close()
	for wm := s.watermark.Load(); wm < n; wm = s.watermark.Load() {
		if err := s.indexRange(ctx, conn, wm, min(n, wm+8*indexBatch)); err != nil {
			return err
		}
		if err := s.compactLocked(ctx, conn); err != nil {
			return err
		}
	}
	return nil
}
