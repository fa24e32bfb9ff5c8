package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
)

// Query planning. A page must cost time in proportion to the page, not to
// the number of matches. Two ways to read a page:
//
//   - walk: read rows in log order and stop after limit+1 matches, through
//     the primary key or an equality index whose entries are in idx order
//     (SQLite ends every index in the rowid; PostgreSQL's end in idx); a
//     time filter narrows the walk to the blocks of event_spans whose time
//     range meets it. Cost: the rows walked until the page is full.
//   - sort: read every match through a range index (object prefix, time),
//     sort by idx, keep limit+1. Cost: the number of matches.
//
// A walk is cheap when the filters are broad, a sort when a range is
// narrow. The planner counts each range's index entries up to a cap (a cheap
// covering-index read) and sorts only when a range is much smaller than
// what a walk could have to read. The SQL names exactly one usable index:
// the other predicates are written so no index serves them (col || '',
// col + 0, in both SQLite and PostgreSQL), so neither engine can pick the
// plan that reads every match of a broad filter to sort it.

// spanShift sets the event_spans block: 1<<spanShift log indexes.
const spanShift = 12

// span is the event-time range of one block, as the writer widens it.
type span struct{ block, min, max int64 }

// groupSpans returns the time range of each block the rows, stored from log
// index first on, fall in.
func groupSpans(first int64, rows []*row) []span {
	var out []span
	for i, r := range rows {
		b, t := (first+int64(i))>>spanShift, r.time
		if n := len(out); n > 0 && out[n-1].block == b {
			out[n-1].min, out[n-1].max = min(out[n-1].min, t), max(out[n-1].max, t)
			continue
		}
		out = append(out, span{b, t, t})
	}
	return out
}

// pred is one filter predicate on a column.
type pred struct {
	col    string // as written in SQL
	text   bool
	eq     any // equality value, or
	lo, hi any // a range [lo, hi); either may be nil
}

// sql writes p; indexed false writes it so that no index can serve it.
func (p pred) sql(indexed bool, args *[]any) string {
	col := p.col
	if !indexed {
		if p.text {
			col = "(" + col + " || '')"
		} else {
			col = "(" + col + " + 0)"
		}
	}
	if p.eq != nil {
		*args = append(*args, p.eq)
		return col + " = ?"
	}
	var parts []string
	if p.lo != nil {
		parts, *args = append(parts, col+" >= ?"), append(*args, p.lo)
	}
	if p.hi != nil {
		parts, *args = append(parts, col+" < ?"), append(*args, p.hi)
	}
	return strings.Join(parts, " AND ")
}

// keyed reports whether p's column is indexed in event_keys.
func (p *pred) keyed() bool { _, ok := keyKinds[p.col]; return ok }

// ranged reports whether p's column is indexed in event_ranges.
func (p *pred) ranged() bool { _, ok := rangeKinds[p.col]; return ok }

// rangesTable holds the range keys the writer commits (rangeKinds).
const rangesTable = "event_ranges"

// keySQL writes p over a key run or event_ranges (the SQLite query
// indexes, indexer.go and runkeys.go).
func (p pred) keySQL(args *[]any) string {
	k, ok := keyKinds[p.col]
	if !ok {
		k = rangeKinds[p.col]
	}
	*args = append(*args, k)
	w := "kind = ?"
	if p.eq != nil {
		*args = append(*args, p.eq)
		return w + " AND val = ?"
	}
	if p.lo != nil {
		w, *args = w+" AND val >= ?", append(*args, p.lo)
	}
	if p.hi != nil {
		w, *args = w+" AND val < ?", append(*args, p.hi)
	}
	return w
}

// query is a validated Filter.
type query struct {
	after  int64 // cursor: idx of the last event returned, -1 for none
	limit  int
	agent  string
	eqs    []pred // equality filters but agent, most selective kind first
	object *pred  // object prefix range
	time   *pred  // event time range
	// keysBelow: the key runs hold the keys of the events below it (the
	// watermark in the query's snapshot); -1 when the backend indexes
	// events directly.
	keysBelow int64
	runs      []keyRun // the key runs in the query's snapshot, in log order
	ranges    bool     // control and type are read through event_ranges
	recFrom   int64    // the log is records from this index (noRecords: none)
}

// plan is how to read one page.
type plan struct {
	drive  *pred // the filter whose index is read; nil with agent or the log
	agent  bool  // walk the agent's (agent, seq) index
	sorted bool  // drive is a range: read all its matches and sort
	// ranges bound a walk: idx in [r[0], r[1]); nil means (after, end).
	ranges [][2]int64
}

// walkFactor: a sort is chosen only when it reads this many times fewer
// rows than a walk might, since a walk stops as soon as the page is full.
const walkFactor = 4

// probeCap is how many index entries a range is counted up to: about
// sqrt(page x log size), where a walk through a range at least that broad
// and a sort of a range that narrow cost the same order of rows.
func probeCap(limit int, size int64) int64 {
	c := int64(math.Sqrt(float64(limit+1) * float64(size)))
	return min(max(c, 1024), 200_000)
}

// choosePlan picks the plan for q; every read goes through tx. It first
// reads the watermark and key runs of tx's snapshot into q.
func (s *core) choosePlan(ctx context.Context, tx *sql.Tx, q *query) (plan, error) {
	q.keysBelow, q.ranges = -1, s.ranges
	// First, in the snapshot the plan's other reads see too.
	var err error
	if q.recFrom, err = s.recordsFromTx(ctx, tx); err != nil {
		return plan{}, err
	}
	if s.keys {
		if err := tx.QueryRowContext(ctx, `SELECT watermark FROM index_state`).Scan(&q.keysBelow); err != nil {
			return plan{}, fmt.Errorf("eventlog: query: %w", err)
		}
		var err error
		if q.runs, err = loadRuns(ctx, tx); err != nil {
			return plan{}, err
		}
	}
	var pl plan
	switch {
	case q.agent != "":
		pl.agent = true
	case len(q.eqs) > 0:
		pl.drive = &q.eqs[0]
	}
	if q.object == nil && q.time == nil {
		return pl, nil
	}
	size := s.size.Load()
	// An agent or equality filter with few rows after the cursor is walked
	// at once: its walk is cheaper than weighing a range against it, which
	// reads up to probeCap index entries (~100k at 10M events; the access
	// log's newest-first windows of one PC over a day paid that per page).
	if few := int64(walkFactor * (q.limit + 1)); pl.agent || pl.drive != nil {
		var n int64
		var err error
		if pl.agent {
			n, err = s.countAgent(ctx, tx, q.agent, q.after, few)
		} else {
			n, err = s.count(ctx, tx, q, *pl.drive, q.after, few)
		}
		if err != nil {
			return plan{}, err
		}
		if n < few {
			return pl, nil
		}
	}
	// What a walk may read: the rows after the cursor, or in the blocks a
	// time filter leaves.
	walk := max(size-q.after-1, 0)
	if q.time != nil && !pl.agent {
		r, n, err := s.spanRanges(ctx, tx, q.after, size, q.time)
		if err != nil {
			return plan{}, err
		}
		pl.ranges, walk = r, n
		if n == 0 {
			return pl, nil
		}
	}
	cp := probeCap(q.limit, size)
	var best *pred
	bestN := min(cp, walk/walkFactor)
	for _, r := range []*pred{q.object, q.time} {
		// Records have no time index: their tmin and tmax make a walk of
		// the spans cheap instead (records.go).
		if r == nil || (r == q.time && q.recFrom != noRecords) {
			continue
		}
		n, err := s.count(ctx, tx, q, *r, -1, bestN)
		if err != nil {
			return plan{}, err
		}
		if n < bestN {
			best, bestN = r, n
		}
	}
	if best == nil {
		return pl, nil
	}
	// A narrow range; but an equality filter with no more rows after the
	// cursor is walked as cheaply, and stops early.
	switch {
	case pl.agent:
		n, err := s.countAgent(ctx, tx, q.agent, q.after, bestN+1)
		if err != nil {
			return plan{}, err
		}
		if n <= bestN {
			return pl, nil
		}
	case pl.drive != nil:
		n, err := s.count(ctx, tx, q, *pl.drive, q.after, bestN+1)
		if err != nil {
			return plan{}, err
		}
		if n <= bestN {
			return pl, nil
		}
	}
	return plan{drive: best, sorted: true}, nil
}

// count returns how many rows p's index holds (after idx after, if >= 0),
// counting up to limit.
//
// With key runs the count leaves out the tail above the watermark, which
// the indexer keeps short: it is an estimate for the plan, and every plan
// reads the tail (see parts).
func (s *core) count(ctx context.Context, tx *sql.Tx, q *query, p pred, after, limit int64) (int64, error) {
	if s.ranges && p.ranged() {
		return s.countIn(ctx, tx, p, rangesTable, after, limit)
	}
	if !s.keys || !p.keyed() {
		return s.countIn(ctx, tx, p, "events", after, limit)
	}
	var n int64
	for _, r := range q.runs {
		if r.hi <= after+1 {
			continue
		}
		// A range key stands for the rows it covers, which a plan reads.
		// (Object keys are one per event: summing their spans doubled the
		// time of a broad prefix's page.)
		object := p.col == "object"
		err := scanRun(ctx, tx, r.name, seekOf(p, after+1), func(pos, upto int64) bool {
			if object || upto == 0 {
				n++
			} else {
				n += upto - pos
			}
			return n < limit
		})
		if err != nil || n >= limit {
			return n, err
		}
	}
	return n, nil
}

// countIn is count over events or event_ranges.
func (s *core) countIn(ctx context.Context, tx *sql.Tx, p pred, from string, after, limit int64) (int64, error) {
	var args []any
	w, col, sel, rows := p.sql(true, &args), "idx", "idx", "count(*)"
	if from != "events" {
		// A range key stands for the rows it covers.
		args = args[:0]
		w, col, sel, rows = p.keySQL(&args), "pos", "coalesce(upto, pos + 1) - pos AS n", "coalesce(sum(n), 0)"
	}
	if after >= 0 {
		w += " AND " + col + " > ?"
		args = append(args, after)
	}
	args = append(args, limit)
	var n int64
	err := tx.QueryRowContext(ctx, s.bind(`SELECT `+rows+` FROM (SELECT `+sel+` FROM `+from+` WHERE `+w+` LIMIT ?) AS p`), args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("eventlog: query plan: %w", err)
	}
	return n, nil
}

// countAgent is count for the agent's stream after the cursor.
//
// On SQLite it counts the events of the agent's runs from runMax before the
// cursor on: an estimate, as count's.
func (s *core) countAgent(ctx context.Context, tx *sql.Tx, agent string, after, limit int64) (int64, error) {
	q := `SELECT count(*) FROM (SELECT idx FROM events WHERE %s LIMIT ?) AS p`
	w, args := agentWhere(agent, after)
	if s.ranges {
		q = `SELECT coalesce(sum(n), 0) FROM (SELECT n FROM agent_runs WHERE %s LIMIT ?) AS p`
		w, args = "stream = ? AND pos > ?", []any{agent, after - runMax}
	}
	args = append(args, limit)
	var n int64
	err := tx.QueryRowContext(ctx, s.bind(fmt.Sprintf(q, w)), args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("eventlog: query plan: %w", err)
	}
	return n, nil
}

// agentWhere selects the agent's events after the cursor through the
// (agent, seq) index: within one stream log order is seq order, so they are
// those past the seq of the agent's last event at or before the cursor. The
// cursor may be any log index (the UI steps back through the log and
// merges several PCs' pages). When it is the agent's own event, one lookup
// finds that seq (COALESCE stops at the first value); otherwise the agent's
// index is walked down from its newest event, which costs its events after
// the cursor: few for the newest-first access log. (A bounded walk back
// through the log first was measured slower on the benchmark's department
// search: 155 against 97 ms.)
func agentWhere(agent string, after int64) (string, []any) {
	if after < 0 {
		return "agent = ?", []any{agent}
	}
	return `agent = ? AND seq > COALESCE(
		(SELECT seq FROM events WHERE idx = ? AND agent = ?),
		(SELECT seq FROM events WHERE agent = ? AND idx <= ? ORDER BY seq DESC LIMIT 1),
		-1)`,
		[]any{agent, after, agent, agent, after}
}

// spanRanges returns the idx ranges after the cursor whose blocks may hold
// events in t's time range, adjacent blocks merged, and how many rows they
// span.
func (s *core) spanRanges(ctx context.Context, tx *sql.Tx, after, size int64, t *pred) ([][2]int64, int64, error) {
	q, args := `SELECT block FROM event_spans WHERE block >= ?`, []any{max(after+1, 0) >> spanShift}
	if t.lo != nil {
		q, args = q+" AND max_time >= ?", append(args, t.lo)
	}
	if t.hi != nil {
		q, args = q+" AND min_time < ?", append(args, t.hi)
	}
	rows, err := tx.QueryContext(ctx, s.bind(q+" ORDER BY block"), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("eventlog: query spans: %w", err)
	}
	defer rows.Close()
	out := [][2]int64{} // not nil: no block means no rows
	var n int64
	for rows.Next() {
		var b int64
		if err := rows.Scan(&b); err != nil {
			return nil, 0, fmt.Errorf("eventlog: query spans: %w", err)
		}
		lo, hi := max(b<<spanShift, after+1), (b+1)<<spanShift
		if k := len(out); k > 0 && out[k-1][1] == lo {
			out[k-1][1] = hi
		} else {
			out = append(out, [2]int64{lo, hi})
		}
		n += min(hi, size) - lo
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("eventlog: query spans: %w", err)
	}
	if k := len(out); k > 0 {
		out[k-1][1] = math.MaxInt64 // rows committed since the plan are after the cursor too
	}
	return out, max(n, 0), nil
}

// source is where a part of a page is read from.
type source int

const (
	fromEvents source = iota // events through its own indexes
	fromKeys                 // the drive's entries in a key run joined to events
	fromTail                 // events by log index, every filter checked on the row
)

// part is an idx range [lo, hi) of a page's read (hi < 0: no bound).
type part struct {
	lo, hi int64
	src    source
	run    string // the key run's table, with fromKeys
	rec    bool   // read from records (the range is at or past recordsFrom)
}

// splitAt splits each part at the log index from which the log is records.
func splitAt(pts []part, from int64) []part {
	if from == noRecords {
		return pts
	}
	var out []part
	for _, pt := range pts {
		if pt.lo < from {
			rows := pt
			if rows.hi < 0 || rows.hi > from {
				rows.hi = from
			}
			out = append(out, rows)
		}
		if pt.hi < 0 || pt.hi > from {
			recs := pt
			recs.lo, recs.rec = max(pt.lo, from), true
			out = append(out, recs)
		}
	}
	return out
}

// parts splits the idx range r of pl's read: with key runs, a plan that
// drives through an index reads each run's keys below the watermark, then
// the tail above it from the log itself. All are in log order and each
// ends where the next begins, so the page is their concatenation. (A range
// no run holds is read as tail: exact, if slower.)
func parts(q *query, pl plan, r [2]int64) []part {
	if q.ranges && pl.drive != nil && pl.drive.ranged() {
		// Committed with the rows: no watermark, no tail.
		return []part{{r[0], r[1], fromKeys, rangesTable, false}}
	}
	if q.keysBelow < 0 || pl.drive == nil || !pl.drive.keyed() {
		return []part{{r[0], r[1], fromEvents, "", false}}
	}
	wm, lo, hi := q.keysBelow, r[0], r[1]
	if hi < 0 {
		hi = math.MaxInt64
	}
	var out []part
	at := lo
	for _, k := range q.runs {
		a, b := max(at, k.lo), min(hi, k.hi, wm)
		if a >= b {
			continue
		}
		if at < a {
			out = append(out, part{at, a, fromTail, "", false})
		}
		out, at = append(out, part{a, b, fromKeys, k.name, false}), b
	}
	if at < hi {
		out = append(out, part{at, r[1], fromTail, "", false})
	}
	return out
}

// selectSQL reads pl's rows with idx in [pt.lo, pt.hi) (pt.hi < 0: no
// bound) from pt.src, at most n of them, in log order; from keys, those
// of the key_positions list.
func selectSQL(q *query, pl plan, pt part, n int, list []byte) (string, []any) {
	var (
		where  []string
		args   []any
		order  = "idx"
		from   = "events"
		lo, hi = pt.lo, pt.hi
	)
	if pt.rec && pt.src != fromKeys && !(pl.agent && q.ranges) {
		// Records are walked (they have no time index); the drive is
		// checked as any filter.
		pl = plan{}
	}
	switch pt.src {
	case fromTail:
		pl = plan{} // a walk of the log; the drive is checked as any filter
	case fromKeys:
		if list == nil {
			// event_ranges: the drive's range keys (control, type) in log
			// order, each joined to the rows it stands for, where every
			// filter (the drive's too) is checked. CROSS JOIN keeps SQLite
			// reading the keys first. A key may cover rows after pos too
			// (runkeys.go), and one from before lo rows from lo on: the
			// seek starts keySpan earlier. The page's bounds on idx are
			// written +idx so that SQLite seeks each key's rows by the key's
			// own bounds (given idx >= ?, it read from lo for every key:
			// 175 ms for a page on 2,000,000 events instead of 2). SQLite
			// sorts each key's rows by idx (USE TEMP B-TREE FOR LAST TERM OF
			// ORDER BY): at most keySpan rows, already in order, and a page
			// still stops at the key that fills it.
			where = append(where, pl.drive.keySQL(&args))
			from, order = pt.run+" CROSS JOIN events ON idx >= pos AND idx < coalesce(upto, pos + 1)", "pos, idx"
			if pt.rec {
				// The records that hold the key's rows: from the one
				// that holds pos.
				from = pt.run + " CROSS JOIN " + recordsJoin("lo >= "+recordAt("pos")+" AND lo < coalesce(upto, pos + 1)", "idx >= pos AND idx < coalesce(upto, pos + 1)")
				order = "pos, lo, idx"
			}
			where, args = append(where, "pos >= ?", "+idx >= ?"), append(args, lo-keySpan, lo)
			if hi >= 0 {
				where, args = append(where, "pos < ?", "+idx < ?"), append(args, hi, hi)
			}
		} else {
			// A key run: the drive's keys in the part, as a key_positions
			// list in log order (readKeys), each joined to the rows it
			// stands for, every filter checked as above. ORDER BY kp.pos
			// is the list's own order, and each key's rows come in idx
			// order from the log's primary key (readKeys checks).
			args = append(args, list)
			from, order = "key_positions(?) AS kp CROSS JOIN events ON events.idx >= kp.pos AND events.idx < kp.upto", "kp.pos"
			if pt.rec {
				from = "key_positions(?) AS kp CROSS JOIN " + recordsJoin("lo >= "+recordAt("kp.pos")+" AND lo < kp.upto", "events.idx >= kp.pos AND events.idx < kp.upto")
			}
			if pl.drive.col == "object" {
				// One key per event: its row.
				from = "key_positions(?) AS kp CROSS JOIN events ON events.idx = kp.pos"
				if pt.rec {
					from = "key_positions(?) AS kp CROSS JOIN " + recordsJoin("lo = "+recordAt("kp.pos"), "events.idx = kp.pos")
				}
			}
		}
		if q.agent != "" {
			where = append(where, (&pred{col: "agent", text: true, eq: q.agent}).sql(false, &args))
		}
		for _, p := range append(ptrs(q.eqs), q.object, q.time) {
			if p != nil {
				where = append(where, p.sql(pt.rec, &args))
			}
		}
		where = recordTimes(q, pt, where, &args)
		args = append(args, n)
		return `SELECT idx, agent, seq, time, received, control, type, severity, "user", process, object,
		register_id, attrs, prev, hash FROM ` + from + ` WHERE ` + strings.Join(where, " AND ") +
			` ORDER BY ` + order + ` LIMIT ?`, args
	}
	add := func(p *pred, indexed bool) {
		if p != nil {
			where = append(where, p.sql(indexed, &args))
		}
	}
	if pl.agent && q.ranges {
		// The agent's runs from the cursor on (one may start up to runMax
		// before it), each joined to its rows, every row's agent checked;
		// +idx as for range keys above.
		from, order = "agent_runs CROSS JOIN events ON idx >= pos AND idx < pos + n", "pos, idx"
		if pt.rec {
			from = "agent_runs CROSS JOIN " + recordsJoin("lo = pos", "idx >= pos AND idx < pos + n")
		}
		where, args = append(where, "stream = ?", "pos > ?", "+idx > ?"), append(args, q.agent, q.after-runMax, q.after)
		add(&pred{col: "agent", text: true, eq: q.agent}, false)
	} else if pl.agent {
		w, a := agentWhere(q.agent, q.after)
		where, args, order = append(where, w), append(args, a...), "seq"
	} else if q.agent != "" {
		add(&pred{col: "agent", text: true, eq: q.agent}, false)
	}
	switch {
	case pl.sorted:
		add(pl.drive, true)
		where, args, order = append(where, "(idx + 0) > ?"), append(args, q.after), "idx + 0"
	case pl.agent:
		// The cursor is in agentWhere; a walk of one stream has no ranges.
	default:
		add(pl.drive, true)
		if pt.rec {
			var w []string
			from, w = recordsFromSQL(lo, hi, &args)
			where, order = append(where, w...), "lo, idx"
		}
		where, args = append(where, "idx >= ?"), append(args, lo)
		if hi >= 0 {
			where, args = append(where, "idx < ?"), append(args, hi)
		}
	}
	// On records, each filter as a column: record_events skips the events
	// outside it reading only that field (there is no index to avoid).
	for i := range q.eqs {
		if p := &q.eqs[i]; p != pl.drive {
			add(p, pt.rec)
		}
	}
	for _, p := range []*pred{q.object, q.time} {
		if p != pl.drive {
			add(p, pt.rec)
		}
	}
	where = recordTimes(q, pt, where, &args)
	args = append(args, n)
	return `SELECT idx, agent, seq, time, received, control, type, severity, "user", process, object,
		register_id, attrs, prev, hash FROM ` + from + ` WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY ` + order + ` LIMIT ?`, args
}

// recordTimes adds, for a part read from records, q's time range on the
// records' own tmin and tmax, so a record outside it is not decoded.
func recordTimes(q *query, pt part, where []string, args *[]any) []string {
	if !pt.rec || q.time == nil {
		return where
	}
	if q.time.lo != nil {
		where, *args = append(where, "tmax >= ?"), append(*args, q.time.lo)
	}
	if q.time.hi != nil {
		where, *args = append(where, "tmin < ?"), append(*args, q.time.hi)
	}
	return where
}

func ptrs(ps []pred) []*pred {
	out := make([]*pred, len(ps))
	for i := range ps {
		out[i] = &ps[i]
	}
	return out
}
