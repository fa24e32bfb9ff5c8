package eventlog

import (
	"context"
	"fmt"
	"strings"
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
		for _, st := range []struct {
			q    string
			args []any
		}{
			{fmt.Sprintf(runSchema, r.name), nil},
			{fmt.Sprintf(indexKeysSQL, r.name), []any{lo, hi}},
			{`INSERT INTO key_runs (name, lo, hi) VALUES (?, ?, ?)`, []any{r.name, lo, hi}},
		} {
			if _, err := tx.ExecContext(ctx, st.q, st.args...); err != nil {
				return err
			}
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

// AllKeys is a subquery of every key in the runs, for tests.
func (s *SQLite) AllKeys() string {
	s.imu.Lock()
	defer s.imu.Unlock()
	sel := []string{"SELECT kind, val, pos FROM event_keys WHERE 0"}
	for _, r := range s.runs {
		sel = append(sel, "SELECT kind, val, pos FROM "+r.name)
	}
	return "(" + strings.Join(sel, " UNION ALL ") + ")"
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

// indexKeysSQL adds the keys of the events with idx in [?1, ?2) to the run
// %s as servers before range keys wrote them: a key an event, sorted by
// SQLite. Tests build keys files of that form with it. The events are rows
// or records (records.go); each form finds only its own.
const indexKeysSQL = `INSERT OR FAIL INTO %s (kind, val, pos) SELECT kind, val, pos FROM (
		SELECT k.kind AS kind, CASE k.kind WHEN 4 THEN e."user" WHEN 5 THEN e.object ELSE e.register_id END AS val, e.idx AS pos
		FROM events AS e CROSS JOIN (SELECT 4 AS kind UNION ALL SELECT 5 UNION ALL SELECT 6) AS k
		WHERE e.idx >= ?1 AND e.idx < ?2
		UNION ALL
		SELECT k.kind AS kind, CASE k.kind WHEN 4 THEN e."user" WHEN 5 THEN e.object ELSE e.register_id END AS val, e.idx AS pos
		FROM records CROSS JOIN record_events(records.payload, records.lo, records.hi) AS e CROSS JOIN (SELECT 4 AS kind UNION ALL SELECT 5 UNION ALL SELECT 6) AS k
		WHERE records.lo >= coalesce((SELECT rr.lo FROM records AS rr WHERE rr.lo <= ?1 ORDER BY rr.lo DESC LIMIT 1), ?1)
			AND records.lo < ?2 AND e.idx >= ?1 AND e.idx < ?2
	) WHERE val IS NOT NULL ORDER BY kind, val, pos`

// AggregateRecordsInSQL makes Count and Scan read records through
// record_events, as SQL, until t ends.
func AggregateRecordsInSQL(t interface{ Cleanup(func()) }) {
	recordsInGo = false
	t.Cleanup(func() { recordsInGo = true })
}
