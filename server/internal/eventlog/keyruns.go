package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Why runs: object paths are random, so once one key B-tree outgrows a
// batch of keys, every key the indexer inserted dirtied its own 4 KiB page,
// written to the WAL and again at the checkpoint; at 2,000,000 events the
// indexer fell to half the writer's rate (docs/ingest.md). A batch's keys
// sorted into a new table are an append, and runs of like size are merged
// by a sorted read of each (SQLite merges them without a sort) into a new
// table: each key is written once per merge level, in full pages.
const (
	// runFanIn runs of one tier are merged into one.
	runFanIn = 4
	// runUnit: runs of fewer events are tier 0; each tier is runFanIn
	// times larger.
	runUnit = 4096
	// runFinal: a run of a tier this high is not merged again, so that no
	// merge holds the indexer for more than a few seconds (4 runs of up to
	// 262,144 events, about 3 million keys). 10 million events are then
	// 10-40 runs, which a query on a rare key seeks each.
	runFinal = 4
)

// keyRun is one table of keys: those of the events with idx in [lo, hi).
type keyRun struct {
	name   string
	lo, hi int64
}

func runName(lo, hi int64) string { return fmt.Sprintf("keys_%d_%d", lo, hi) }

// tier is the size class of a run of n events.
func tier(n int64) int {
	t := 0
	for ; n >= runUnit; n /= runFanIn {
		t++
	}
	return t
}

// mergeDue returns the oldest runFanIn consecutive runs of one tier below
// runFinal, or -1. Merging the oldest group first keeps tiers
// non-increasing along the log (a merge yields its tier or the next, never
// more than the run before it), so no small run is stranded between large
// ones.
func mergeDue(runs []keyRun) int {
	for i := 0; i+runFanIn <= len(runs); i++ {
		t := tier(runs[i].hi - runs[i].lo)
		if t >= runFinal {
			continue
		}
		j := i + 1
		for j < i+runFanIn && tier(runs[j].hi-runs[j].lo) == t {
			j++
		}
		if j == i+runFanIn {
			return i
		}
	}
	return -1
}

// absorbFrom returns the index of the first of runs that a new run of the
// events [lo, hi) takes in: the runs at the end of a lower tier than the
// new run with them. Without it a large run (a burst after quiet hours, a
// catch-up) after a few small ones would leave those stranded, never with
// enough peers of their tier to merge. Their events are indexed again,
// fewer than the new run's own.
func absorbFrom(runs []keyRun, lo, hi int64) int {
	a := len(runs)
	for a > 0 {
		t := tier(runs[a-1].hi - runs[a-1].lo)
		if t >= runFinal || t >= tier(hi-lo) {
			break
		}
		a--
		lo = runs[a].lo
	}
	return a
}

// setRuns replaces the runs. The caller holds imu (or is the open).
func (s *SQLite) setRuns(runs []keyRun) {
	s.runs = runs
	s.nruns.Store(int64(len(runs)))
}

// IndexLag reports how many stored events are not in the query indexes yet
// (queries scan them: a lag that grows means the indexer cannot keep up),
// and in how many runs the indexes hold the others.
func (s *SQLite) IndexLag() (events int64, runs int) {
	if s.kdb == nil {
		return s.size.Load(), 0 // no keys file: every query scans
	}
	return max(s.size.Load()-s.watermark.Load(), 0), int(s.nruns.Load())
}

// loadRuns reads the runs in log order.
func loadRuns(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([]keyRun, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, lo, hi FROM key_runs ORDER BY lo`)
	if err != nil {
		return nil, fmt.Errorf("eventlog: read key runs: %w", err)
	}
	defer rows.Close()
	var out []keyRun
	for rows.Next() {
		var r keyRun
		if err := rows.Scan(&r.name, &r.lo, &r.hi); err != nil {
			return nil, fmt.Errorf("eventlog: read key runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("eventlog: read key runs: %w", err)
	}
	return out, nil
}

// compact merges runs while a merge is due. The caller holds imu.
func (s *SQLite) compact(ctx context.Context, conn *sql.Conn) error {
	for {
		i := mergeDue(s.runs)
		if i < 0 {
			return nil
		}
		from := s.runs[i : i+runFanIn]
		m := keyRun{lo: from[0].lo, hi: from[len(from)-1].hi}
		m.name = runName(m.lo, m.hi)
		t0 := time.Now()
		if err := s.mergeRuns(ctx, conn, from, m); err != nil {
			return err
		}
		// A long merge holds the indexer: queries scan a longer tail.
		ev := s.log.Debug()
		if d := time.Since(t0); d > 2*time.Second {
			ev = s.log.Info()
		}
		ev.Int64("from", m.lo).Int64("to", m.hi).Dur("took", time.Since(t0)).Msg("merged query index runs")
		s.setRuns(append(append(s.runs[:i:i], m), s.runs[i+runFanIn:]...))
		s.merges.Add(1)
	}
}

// mergeRuns writes the keys of from into the new run m and drops from, in
// one transaction (mergeKeys).
func (s *SQLite) mergeRuns(ctx context.Context, conn *sql.Conn, from []keyRun, m keyRun) (err error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("eventlog: merge key runs: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	fill := func(tx *sql.Tx) error { return mergeKeys(ctx, tx, from, m.name) }
	if err := replaceRuns(ctx, tx, from, m, fill); err != nil {
		return fmt.Errorf("eventlog: merge key runs [%d, %d): %w", m.lo, m.hi, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("eventlog: merge key runs: %w", err)
	}
	return nil
}

// replaceRuns creates the run r, fills it with fill, and drops the runs
// old, in tx.
func replaceRuns(ctx context.Context, tx *sql.Tx, old []keyRun, r keyRun, fill func(*sql.Tx) error) error {
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(runSchema, r.name)); err != nil {
		return err
	}
	if err := fill(tx); err != nil {
		return err
	}
	for _, o := range old {
		st := "DROP TABLE " + o.name
		if o.name == "event_keys" {
			st = "DELETE FROM event_keys" // keysSchema's own table stays
		}
		if _, err := tx.ExecContext(ctx, st); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM key_runs WHERE name = ?`, o.name); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO key_runs (name, lo, hi) VALUES (?, ?, ?)`, r.name, r.lo, r.hi)
	return err
}

// dropRuns removes every run, in tx: each keys_ table, registered or not,
// and the entries of event_keys, which keysSchema keeps.
func dropRuns(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name LIKE 'keys\_%' ESCAPE '\'`)
	if err != nil {
		return fmt.Errorf("eventlog: drop key runs: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("eventlog: drop key runs: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("eventlog: drop key runs: %w", err)
	}
	stmts := []string{`DELETE FROM event_keys`, `DELETE FROM key_runs`}
	for _, n := range names {
		stmts = append(stmts, `DROP TABLE "`+n+`"`)
	}
	for _, st := range stmts {
		if _, err := tx.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("eventlog: drop key runs: %w", err)
		}
	}
	return nil
}
