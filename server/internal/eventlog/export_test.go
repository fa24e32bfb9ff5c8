package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
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
	return s.rdb.QueryRowContext(ctx, q).Scan(dest...)
}

// ExecRead runs a statement on the read pool, for tests that it refuses writes.
func (s *SQLite) ExecRead(ctx context.Context, q string) error {
	_, err := s.rdb.ExecContext(ctx, q)
	return err
}

// SetWatermark holds the indexer and puts the watermark at wm (at most
// the tree size), with exactly the keys below it in three runs (fewer when
// wm < 3), so tests can read through any split of runs and tail.
func (s *SQLite) SetWatermark(ctx context.Context, wm int64) error {
	s.indexPaused.Store(true)
	s.imu.Lock()
	defer s.imu.Unlock()
	if n := s.size.Load(); wm > n {
		return fmt.Errorf("watermark %d above tree size %d", wm, n)
	}
	tx, err := s.kdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := dropRuns(ctx, tx); err != nil {
		return err
	}
	var runs []keyRun
	for i, lo := int64(0), int64(0); i < 3; i++ {
		hi := wm * (i + 1) / 3
		if hi == lo {
			continue
		}
		r := keyRun{runName(lo, hi), lo, hi}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(runSchema, r.name)); err != nil {
			return err
		}
		// A key an event, as servers before range keys wrote them, so that
		// readers of those are tested too.
		vals, err := logVals(ctx, tx, lo, hi)
		if err != nil {
			return err
		}
		var keys []runKey
		for i, v := range vals {
			for kind, val := range map[int]string{4: v.user, 5: v.object, 6: v.reg} {
				if val != "" {
					keys = append(keys, runKey{kind: kind, val: val, pos: lo + int64(i)})
				}
			}
		}
		slices.SortFunc(keys, runKey.compare)
		if err := writeKeys(ctx, tx, r.name, keys); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO key_runs (name, lo, hi) VALUES (?, ?, ?)`, r.name, lo, hi); err != nil {
			return err
		}
		runs, lo = append(runs, r), hi
	}
	if _, err := tx.ExecContext(ctx, `UPDATE index_state SET watermark = ?1, last = (SELECT hash FROM `+logEvents+` WHERE idx = ?1 - 1)`, wm); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.setRuns(runs)
	s.watermark.Store(wm)
	return nil
}

// ObjectKeys counts the object keys in the runs, and the events they
// name, for tests.
func (s *SQLite) ObjectKeys(ctx context.Context) (keys, distinct int64, err error) {
	s.imu.Lock()
	defer s.imu.Unlock()
	seen := map[int64]bool{}
	for _, r := range s.runs {
		ks, err := s.runKeysOf(ctx, r.name)
		if err != nil {
			return 0, 0, err
		}
		for _, k := range ks {
			if k.kind == 5 {
				keys++
				seen[k.pos] = true
			}
		}
	}
	return keys, int64(len(seen)), nil
}

// runKeysOf reads every key of a run, in order.
func (s *SQLite) runKeysOf(ctx context.Context, run string) ([]runKey, error) {
	tx, err := s.kdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return readRunKeys(ctx, tx, run)
}

// readRunKeys reads every key of a run in tx, in order.
func readRunKeys(ctx context.Context, tx *sql.Tx, run string) ([]runKey, error) {
	bs, err := readBlocks(ctx, tx, run)
	if err != nil {
		return nil, err
	}
	c := &runCursor{blocks: bs}
	var out []runKey
	for {
		ok, err := c.next()
		if err != nil || !ok {
			return out, err
		}
		out = append(out, runKey{kind: c.d.kind, val: string(c.d.val), pos: c.d.pos, upto: c.d.upto})
	}
}

// Runs reports the key runs' ranges in log order, and how many merges
// there have been.
func (s *SQLite) Runs() ([][2]int64, int64) {
	s.imu.Lock()
	defer s.imu.Unlock()
	var out [][2]int64
	for _, r := range s.runs {
		out = append(out, [2]int64{r.lo, r.hi})
	}
	return out, s.merges.Load()
}

// Indexed reports the watermark: the events below it are in event_keys.
func (s *SQLite) Indexed() int64 { return s.watermark.Load() }

// IndexRuns is how many transactions the indexer has committed.
func (s *SQLite) IndexRuns() int64 { return s.indexRuns.Load() }

// SetWALLarge sets the WAL size past which the checkpointer has the WAL
// restarted, for stores opened until the returned func restores it.
func SetWALLarge(n int64) (restore func()) {
	old := walLarge
	walLarge = n
	return func() { walLarge = old }
}

// SetWALCheckpointAt sets the WAL size below which the checkpointer leaves
// the WAL alone, for stores opened until the returned func restores it.
func SetWALCheckpointAt(n int64) (restore func()) {
	old := walCheckpointAt
	walCheckpointAt = n
	return func() { walCheckpointAt = old }
}

// OfficeChain is officeChain, for the benchmarks outside the package.
var OfficeChain = officeChain

// WriteRecords makes the stores that t opens write records (records.go)
// until t ends; tests of one package run one at a time unless parallel.
func WriteRecords(t interface{ Cleanup(func()) }) {
	t.Cleanup(SetWriteRecords(true))
}

// RecordsFrom is the log index from which s holds records, -1 for none.
func (s *SQLite) RecordsFrom() int64 {
	if r := s.recordsFrom(); r != noRecords {
		return r
	}
	return -1
}

// logEvents is a FROM for tests that read the log by hand: its events,
// rows and records alike, with the columns of events.
const logEvents = `(SELECT idx, agent, seq, time, received, control, type, severity, "user", process, object,
	register_id, attrs, prev, hash FROM events UNION ALL SELECT events.idx, agent, events.seq, events.time, received,
	events.control, events.type, events.severity, events."user", events.process, events.object, events.register_id,
	events.attrs, events.prev, events.hash FROM records CROSS JOIN record_events(records.payload, records.lo, records.hi) AS events) AS events`

// LogEvents is logEvents for the package's external tests.
const LogEvents = logEvents

// AggregateRecordsInSQL makes Count and Scan read records through
// record_events, as SQL, until t ends.
func AggregateRecordsInSQL(t interface{ Cleanup(func()) }) {
	recordsInGo = false
	t.Cleanup(func() { recordsInGo = true })
}
