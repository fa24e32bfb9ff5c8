package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// CountQuery selects events by event time and groups them for Count:
// the aggregates of reports, computed by the database rather than by
// reading every event.
type CountQuery struct {
	From, To    time.Time // event time in [From, To); both required
	Agents      []string  // empty: every stream
	Controls    []string  // empty: every control
	Types       []string  // empty: every type
	HasRegister bool      // only events with a register_id
	// GroupBy names columns: agent, control, type, severity, register_id,
	// user, object.
	GroupBy []string
	// Buckets, if set, are ascending time edges; each group then also has
	// a bucket key: i for Buckets[i] <= time < Buckets[i+1] ("" outside).
	Buckets []time.Time
	// DistinctUsers also counts the distinct users of each group.
	DistinctUsers bool
}

// Group is one row of Count.
type Group struct {
	Keys   []string // GroupBy values in order, then the bucket; NULL as ""
	Events int64
	Users  int64 // distinct users, when asked
}

var groupColumns = map[string]string{"agent": "agent", "control": "control", "type": "type",
	"severity": "severity", "register_id": "register_id", "user": `"user"`, "object": "object"}

// maxIn bounds the values of one IN list.
const maxIn = 10000

// check validates q's time range and the size of its IN lists.
func (q *CountQuery) check() error {
	if q.From.IsZero() || q.To.IsZero() || !q.From.Before(q.To) {
		return fmt.Errorf("%w: count needs From before To", ErrBadFilter)
	}
	for _, f := range []struct {
		col string
		vs  []string
	}{{"agent", q.Agents}, {"control", q.Controls}, {"type", q.Types}} {
		if len(f.vs) > maxIn {
			return fmt.Errorf("%w: more than %d values for %s", ErrBadFilter, maxIn, f.col)
		}
	}
	return nil
}

// where builds the shared predicate of Count and Scan; byKeys: the rows
// come from aggFrom's keys, so no index of events may drive.
func (q *CountQuery) where(args *[]any, byKeys bool) (string, error) {
	if err := q.check(); err != nil {
		return "", err
	}
	// Over more than a few weeks, reading the table (or the control/type
	// index) in order beats fetching each row through the time index:
	// "+time" keeps SQLite (and PostgreSQL) off that index.
	col := "time"
	if byKeys || q.To.Sub(q.From) > 40*24*time.Hour {
		col = "+time"
	}
	conds := []string{col + " >= ?", col + " < ?"}
	*args = append(*args, clampNano(q.From), clampNano(q.To))
	in := func(col string, vs []string) {
		if len(vs) == 0 {
			return
		}
		if byKeys {
			col = "+" + col // the keys' rows by idx, never the agent's index
		}
		conds = append(conds, col+" IN ("+strings.TrimSuffix(strings.Repeat("?,", len(vs)), ",")+")")
		for _, v := range vs {
			*args = append(*args, v)
		}
	}
	in("agent", q.Agents)
	in("control", q.Controls)
	in("type", q.Types)
	if q.HasRegister {
		conds = append(conds, "register_id IS NOT NULL")
	}
	return strings.Join(conds, " AND "), nil
}

// Count returns the number of events per group, in no particular order.
func (s *core) Count(ctx context.Context, q CountQuery) ([]Group, error) {
	var args []any
	var cols []string
	for _, g := range q.GroupBy {
		c, ok := groupColumns[g]
		if !ok {
			return nil, fmt.Errorf("%w: cannot group by %q", ErrBadFilter, g)
		}
		cols = append(cols, c)
	}
	if !slices.IsSortedFunc(q.Buckets, func(a, b time.Time) int { return a.Compare(b) }) || len(q.Buckets) > 1000 {
		return nil, fmt.Errorf("%w: buckets must ascend (at most 1000)", ErrBadFilter)
	}
	if len(q.Buckets) > 1 {
		var b strings.Builder
		b.WriteString("CASE")
		for i := 0; i+1 < len(q.Buckets); i++ {
			fmt.Fprintf(&b, " WHEN time >= ? AND time < ? THEN %d", i)
			args = append(args, clampNano(q.Buckets[i]), clampNano(q.Buckets[i+1]))
		}
		b.WriteString(" ELSE -1 END")
		cols = append(cols, b.String())
	}
	// The groups are counted here rather than by GROUP BY: SQLite sorts
	// every row for a GROUP BY without an index, which costs more than
	// reading the key columns (profiled on a year of 200 PCs).
	sel := append([]string(nil), cols...)
	if q.DistinctUsers {
		sel = append(sel, `"user"`)
	}
	if len(sel) == 0 {
		sel = []string{"1"}
	}
	if err := q.check(); err != nil {
		return nil, err
	}
	tx, done, err := s.aggTx(ctx)
	if err != nil {
		return nil, fmt.Errorf("eventlog: count: %w", err)
	}
	defer done()
	from, byKeys, err := s.aggFrom(ctx, tx, &q, &args)
	if err != nil {
		return nil, fmt.Errorf("eventlog: count: %w", err)
	}
	pre := len(args)
	w, err := q.where(&args, byKeys)
	if err != nil {
		return nil, err
	}
	stmt := "SELECT " + strings.Join(sel, ", ") + " FROM " + from + " WHERE " + w
	if recs, err := s.recordsFromTx(ctx, tx); err != nil {
		return nil, err
	} else if recs != noRecords {
		stmt, args = unionRecords(stmt, from, args, pre, clampNano(q.From), clampNano(q.To))
	}
	rows, err := tx.QueryContext(ctx, s.bind(stmt), args...)
	if err != nil {
		return nil, fmt.Errorf("eventlog: count: %w", err)
	}
	defer rows.Close()
	type agg struct {
		g     Group
		users map[string]bool
	}
	groups := map[string]*agg{}
	vals := make([]sql.RawBytes, len(sel))
	dest := make([]any, len(sel))
	for i := range vals {
		dest[i] = &vals[i]
	}
	var kb []byte
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("eventlog: count: %w", err)
		}
		kb = kb[:0]
		for i := range cols {
			kb = append(kb, vals[i]...)
			kb = append(kb, 0)
		}
		a := groups[string(kb)]
		if a == nil {
			a = &agg{g: Group{Keys: make([]string, len(cols))}}
			for i := range cols {
				a.g.Keys[i] = string(vals[i])
			}
			if q.DistinctUsers {
				a.users = map[string]bool{}
			}
			groups[string(kb)] = a
		}
		a.g.Events++
		if q.DistinctUsers {
			if u := vals[len(vals)-1]; u != nil {
				if !a.users[string(u)] {
					a.users[string(u)] = true
				}
			}
		}
	}
	var out []Group
	for _, a := range groups {
		a.g.Users = int64(len(a.users))
		if len(q.Buckets) > 1 && a.g.Keys[len(a.g.Keys)-1] == "-1" {
			a.g.Keys[len(a.g.Keys)-1] = ""
		}
		out = append(out, a.g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("eventlog: count: %w", err)
	}
	return out, nil
}

// ScanRow is a lean event for Scan: the columns reports need to follow
// status runs, and the attrs only where asked.
type ScanRow struct {
	Time                           time.Time
	Agent, Control, Type, Severity string
	Attrs                          []byte // raw JSON, when the row's severity is in attrsFor
}

// Scan calls fn for every event q selects (GroupBy and Buckets unused),
// in no particular order: callers that need an order sort what they keep.
// attrsFor names the severities whose rows carry their attrs (e.g.
// "violation" for the reasons of failures).
func (s *core) Scan(ctx context.Context, q CountQuery, attrsFor []string, fn func(*ScanRow) error) error {
	var args []any
	attrs := "NULL"
	if len(attrsFor) > 0 {
		attrs = "CASE WHEN severity IN (" + strings.TrimSuffix(strings.Repeat("?,", len(attrsFor)), ",") + ") THEN attrs END"
		for _, a := range attrsFor {
			args = append(args, a)
		}
	}
	if err := q.check(); err != nil {
		return err
	}
	tx, done, err := s.aggTx(ctx)
	if err != nil {
		return fmt.Errorf("eventlog: scan: %w", err)
	}
	defer done()
	from, byKeys, err := s.aggFrom(ctx, tx, &q, &args)
	if err != nil {
		return fmt.Errorf("eventlog: scan: %w", err)
	}
	pre := len(args)
	w, err := q.where(&args, byKeys)
	if err != nil {
		return err
	}
	stmt := `SELECT time, agent, control, type, severity, ` + attrs + ` FROM ` + from + ` WHERE ` + w
	if recs, err := s.recordsFromTx(ctx, tx); err != nil {
		return err
	} else if recs != noRecords {
		stmt, args = unionRecords(stmt, from, args, pre, clampNano(q.From), clampNano(q.To))
	}
	rows, err := tx.QueryContext(ctx, s.bind(stmt), args...)
	if err != nil {
		return fmt.Errorf("eventlog: scan: %w", err)
	}
	defer rows.Close()
	var r ScanRow
	for rows.Next() {
		var ns int64
		var control, typ, sev sql.NullString
		var at []byte
		if err := rows.Scan(&ns, &r.Agent, &control, &typ, &sev, &at); err != nil {
			return fmt.Errorf("eventlog: scan: %w", err)
		}
		r.Time = time.Unix(0, ns).UTC()
		r.Control, r.Type, r.Severity, r.Attrs = control.String, typ.String, sev.String, at
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("eventlog: scan: %w", err)
	}
	return nil
}

// aggFrom returns what Count and Scan read, adding its arguments: events;
// or, on a store whose control and type keys are event_ranges, the keys of
// the types asked (else the controls) joined to the rows they cover, when
// those are far fewer than the time range holds (the rare types of a year's
// integrity section, say), as the type index was read before. Keys of one
// value never overlap and a row is joined only through a key of its own
// value, so no row is read twice.
func (s *core) aggFrom(ctx context.Context, tx *sql.Tx, q *CountQuery, args *[]any) (string, bool, error) {
	col, vals := "type", q.Types
	if len(vals) == 0 {
		col, vals = "control", q.Controls
	}
	if !s.ranges || len(vals) == 0 {
		return "events", false, nil
	}
	var blocks int64
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM event_spans WHERE max_time >= ? AND min_time < ?`,
		clampNano(q.From), clampNano(q.To)).Scan(&blocks)
	if err != nil {
		return "", false, err
	}
	limit := min(blocks<<spanShift/walkFactor, 200_000)
	kargs := []any{rangeKinds[col]}
	for _, v := range vals {
		kargs = append(kargs, v)
	}
	in := strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")
	var keys, rows int64
	err = tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(n), 0) FROM (SELECT coalesce(upto, pos + 1) - pos AS n
		FROM event_ranges WHERE kind = ? AND val IN (`+in+`) LIMIT ?)`, append(kargs, limit+1)...).Scan(&keys, &rows)
	if err != nil {
		return "", false, err
	}
	if keys > limit || rows >= limit {
		return "events", false, nil
	}
	*args = append(*args, kargs...)
	return `event_ranges AS r CROSS JOIN events ON idx >= r.pos AND idx < coalesce(r.upto, r.pos + 1) AND ` + col +
		` = r.val AND r.kind = ? AND r.val IN (` + in + `)`, true, nil
}

// aggTx begins a read transaction for an aggregate.
func (s *core) aggTx(ctx context.Context) (*sql.Tx, func(), error) {
	tx, err := s.rdb.BeginTx(ctx, s.readTx)
	if err != nil {
		return nil, nil, err
	}
	return tx, func() { _ = tx.Rollback() }, nil
}

// CheckpointBefore returns the largest stored checkpoint signed at or
// before t, or ErrNoCheckpoint.
func (s *core) CheckpointBefore(ctx context.Context, t time.Time) (Checkpoint, error) {
	return s.checkpoint(ctx, s.bind(`SELECT size, root, note, created FROM checkpoints WHERE created <= ? ORDER BY size DESC LIMIT 1`), clampNano(t))
}
