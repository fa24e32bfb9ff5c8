package eventlog

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sort"
	"strconv"
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
	recs, err := s.recordsFromTx(ctx, tx)
	if err != nil {
		return nil, err
	}
	inGo := recs != noRecords && !byKeys && recordsInGo
	if recs != noRecords && !inGo {
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
	add := func() {
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
			if u := vals[len(vals)-1]; len(u) > 0 {
				if !a.users[string(u)] {
					a.users[string(u)] = true
				}
			}
		}
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("eventlog: count: %w", err)
		}
		add()
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("eventlog: count: %w", err)
	}
	if inGo {
		edges := make([]int64, len(q.Buckets))
		for i, t := range q.Buckets {
			edges[i] = clampNano(t)
		}
		fields := make([]int, len(q.GroupBy))
		for i, g := range q.GroupBy {
			fields[i] = groupFields[g] // g is one of groupColumns, checked above
		}
		var bucket, agentB []byte
		err := recordEvents(ctx, tx, &q, func(agent string, e *rawEvent) {
			if string(agentB) != agent {
				agentB = append(agentB[:0], agent...)
			}
			for i, f := range fields {
				if f < 0 {
					vals[i] = agentB
				} else {
					vals[i] = e.str[f]
				}
			}
			k := len(q.GroupBy)
			if len(edges) > 1 {
				// The SQL's CASE: the first i with edges[i] <= time < edges[i+1].
				b := sort.Search(len(edges), func(j int) bool { return edges[j] > e.time }) - 1
				if b+1 >= len(edges) {
					b = -1
				}
				bucket = strconv.AppendInt(bucket[:0], int64(b), 10)
				vals[k], k = bucket, k+1
			}
			if q.DistinctUsers {
				vals[k] = e.str[fUser]
			}
			add()
		})
		if err != nil {
			return nil, fmt.Errorf("eventlog: count: %w", err)
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
	recs, err := s.recordsFromTx(ctx, tx)
	if err != nil {
		return err
	}
	inGo := recs != noRecords && !byKeys && recordsInGo
	if recs != noRecords && !inGo {
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
	if !inGo {
		return nil
	}
	var ferr error
	err = recordEvents(ctx, tx, &q, func(agent string, e *rawEvent) {
		if ferr != nil {
			return
		}
		r = ScanRow{Time: time.Unix(0, e.time).UTC(), Agent: agent, Control: string(e.str[fControl]),
			Type: string(e.str[fType]), Severity: string(e.str[fSeverity])}
		if a := e.str[fAttrs]; len(a) > 0 && slices.Contains(attrsFor, r.Severity) {
			r.Attrs = bytes.Clone(a)
		}
		ferr = fn(&r)
	})
	if ferr != nil {
		return ferr
	}
	if err != nil {
		return fmt.Errorf("eventlog: scan: %w", err)
	}
	return nil
}

// recordsInGo: Count and Scan read records by recordEvents. Tests set it
// false to compare with the same query through record_events.
var recordsInGo = true

// recordEvents calls fn for each event of the records that q selects (its
// time range, agents, controls, types and HasRegister), decoded in Go.
// Through record_events every text column SQLite reads is copied into C
// memory, one malloc each under a lock: that made a year's report (200 PCs,
// 1.1 million events) twice the CPU it took on rows. As there, a record or
// an event that does not decode is not counted (its columns read as NULL).
// e and its bytes are valid only during fn.
func recordEvents(ctx context.Context, tx *sql.Tx, q *CountQuery, fn func(agent string, e *rawEvent)) error {
	stmt := `SELECT agent, lo, hi, payload FROM records WHERE tmax >= ? AND tmin < ?`
	lo, hi := clampNano(q.From), clampNano(q.To)
	args := []any{lo, hi}
	if len(q.Agents) > 0 {
		stmt += " AND agent IN (" + strings.TrimSuffix(strings.Repeat("?,", len(q.Agents)), ",") + ")"
		for _, a := range q.Agents {
			args = append(args, a)
		}
	}
	rows, err := tx.QueryContext(ctx, stmt, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		agent    string
		rlo, rhi int64
		blob     sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&agent, &rlo, &rhi, &blob); err != nil {
			return err
		}
		p, err := parsePayload(blob)
		if err != nil || int64(p.len()) != rhi-rlo {
			continue // damaged: its events read as NULL, outside any time range
		}
		for i := range p.len() {
			if t, ok := p.timeAt(i); !ok || t < lo || t >= hi {
				continue
			}
			e, err := p.raw(i)
			if err != nil || !q.holds(&e) {
				continue
			}
			fn(agent, &e)
		}
	}
	return rows.Err()
}

// holds reports whether e passes q's controls, types and HasRegister (the
// caller has checked its time and agent).
func (q *CountQuery) holds(e *rawEvent) bool {
	in := func(vs []string, b []byte) bool {
		return len(vs) == 0 || slices.ContainsFunc(vs, func(v string) bool { return v == string(b) })
	}
	return in(q.Controls, e.str[fControl]) && in(q.Types, e.str[fType]) && (!q.HasRegister || len(e.str[fRegisterID]) > 0)
}

// groupFields are the GroupBy columns' fields of a record's event
// (rawEvent.str); the agent is the record's.
var groupFields = map[string]int{"agent": -1, "control": fControl, "type": fType, "severity": fSeverity,
	"register_id": fRegisterID, "user": fUser, "object": fObject}

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
