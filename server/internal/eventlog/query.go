package eventlog

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
)

// Query implements Store. Results are in ascending log index order; the
// cursor is the decimal log index of the last event returned, valid with the
// filter that produced it. The plan and the page are read in one read
// transaction, so a page is one snapshot of the log (plan.go).
func (s *core) Query(ctx context.Context, f Filter) (Page, error) {
	q, err := parseFilter(f)
	if err != nil {
		return Page{}, err
	}
	tx, err := s.rdb.BeginTx(ctx, s.readTx)
	if err != nil {
		return Page{}, fmt.Errorf("eventlog: query: %w", err)
	}
	defer tx.Rollback()
	pl, err := s.choosePlan(ctx, tx, q)
	if err != nil {
		return Page{}, err
	}
	ranges := pl.ranges
	if ranges == nil {
		ranges = [][2]int64{{q.after + 1, -1}}
	}
	recs := q.recFrom
	var p Page
read:
	for _, r := range ranges {
		for _, pt := range splitAt(parts(q, pl, r), recs) {
			if err := s.readPage(ctx, tx, q, pl, pt, &p); err != nil {
				return Page{}, err
			}
			if len(p.Events) > q.limit {
				break read
			}
		}
	}
	if len(p.Events) > q.limit {
		p.Events = p.Events[:q.limit]
		p.Next = strconv.FormatInt(p.Events[q.limit-1].Index, 10)
	}
	return p, nil
}

// readPage appends to p the events of pl in part pt, up to limit+1 in all.
func (s *core) readPage(ctx context.Context, tx *sql.Tx, q *query, pl plan, pt part, p *Page) error {
	if pt.src == fromKeys && pt.run != rangesTable {
		return s.readKeys(ctx, tx, q, pl, pt, p)
	}
	return s.readRows(ctx, tx, q, pl, pt, nil, p)
}

// readRows appends to p the rows of selectSQL.
func (s *core) readRows(ctx context.Context, tx *sql.Tx, q *query, pl plan, pt part, list []byte, p *Page) error {
	sq, args := selectSQL(q, pl, pt, q.limit+1-len(p.Events), list)
	rows, err := tx.QueryContext(ctx, s.bind(sq), args...)
	if err != nil {
		return fmt.Errorf("eventlog: query: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		st, err := scanStored(rows)
		if err != nil {
			return err
		}
		p.Events = append(p.Events, st)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("eventlog: query: %w", err)
	}
	return nil
}

// readKeys reads the part pt through the drive's keys in the run pt.run:
// a list of their rows' ranges at a time (keyBatch keys, doubling), until
// the page is full or the keys end.
func (s *core) readKeys(ctx context.Context, tx *sql.Tx, q *query, pl plan, pt part, p *Page) error {
	lo, hi := pt.lo, pt.hi
	if hi < 0 {
		hi = math.MaxInt64
	}
	from := lo
	if pl.drive.col != "object" {
		from = lo - keySpan // a range key from before lo may cover rows from lo on
	}
	// A range of values (an object prefix) is read whole and sorted by pos:
	// the plan chose it for few keys. Keys of one value come in pos order
	// and are read a list at a time.
	k := seekOf(*pl.drive, max(from, 0))
	sorted := !k.hasEq
	var all [][2]int64
	if sorted {
		err := scanRun(ctx, tx, pt.run, k, func(pos, upto int64) bool {
			all = append(all, [2]int64{pos, upto})
			return true
		})
		if err != nil {
			return err
		}
		slices.SortFunc(all, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	}
	list := []byte{}
	for size := keyBatch; ; size = min(2*size, 4096) {
		// The next keys, up to size of them in the part, from k.from.
		list = list[:0]
		more, batch := false, size
		add := func(pos, upto int64) bool {
			if pos >= hi {
				return false // keys after the part
			}
			if upto == 0 {
				upto = pos + 1
			}
			if a, b := max(pos, lo), min(upto, hi); a < b {
				list = appendPositions(list, a, b)
				batch--
			}
			k.from = pos + 1
			more = batch == 0
			return !more
		}
		if sorted {
			for len(all) > 0 {
				next := all[0]
				all = all[1:]
				if !add(next[0], next[1]) {
					break
				}
			}
			more = more && len(all) > 0
		} else if err := scanRun(ctx, tx, pt.run, k, add); err != nil {
			return err
		}
		if len(list) == 0 {
			return nil
		}
		at := len(p.Events)
		if err := s.readRows(ctx, tx, q, pl, pt, list, p); err != nil {
			return err
		}
		// Each key's rows are in idx order from the log's primary key,
		// which SQLite does not promise for the join: a page out of order
		// would skip events at its cursor, so say so instead.
		for i := max(at, 1); i < len(p.Events); i++ {
			if p.Events[i].Index <= p.Events[i-1].Index {
				return fmt.Errorf("eventlog: query: rows out of log order at %d", p.Events[i].Index)
			}
		}
		if len(p.Events) > q.limit || !more {
			return nil
		}
	}
}

// keyBatch is how many keys readKeys lists first.
const keyBatch = 64

// parseFilter validates f.
func parseFilter(f Filter) (*query, error) {
	q := &query{after: -1, limit: f.Limit, agent: f.Agent}
	if f.Cursor != "" {
		c, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || c < 0 || strconv.FormatInt(c, 10) != f.Cursor {
			return nil, fmt.Errorf("%w: %q", ErrBadCursor, f.Cursor)
		}
		q.after = c
	}
	switch {
	case q.limit < 0:
		return nil, fmt.Errorf("%w: negative limit %d", ErrBadFilter, q.limit)
	case q.limit == 0:
		q.limit = DefaultLimit
	case q.limit > MaxLimit:
		q.limit = MaxLimit
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return nil, fmt.Errorf("%w: from %s is not before to %s", ErrBadFilter, f.From.Format(time.RFC3339), f.To.Format(time.RFC3339))
	}
	for _, v := range []string{f.Agent, f.Control, f.Type, f.User, f.RegisterID, f.ObjectPrefix} {
		// Stored text is valid UTF-8 (event.Validate), and PostgreSQL
		// refuses anything else as a parameter.
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: invalid UTF-8", ErrBadFilter)
		}
	}
	// Most selective kind first: the first one drives a walk.
	for _, c := range []struct{ col, v string }{
		{"register_id", f.RegisterID}, {`"user"`, f.User}, {"type", f.Type}, {"control", f.Control},
	} {
		if c.v != "" {
			q.eqs = append(q.eqs, pred{col: c.col, text: true, eq: c.v})
		}
	}
	if p := f.ObjectPrefix; p != "" {
		// A range over the index, not LIKE (which is case-insensitive and
		// treats % and _ as wildcards).
		q.object = &pred{col: "object", text: true, lo: p}
		if hi, ok := prefixEnd(p); ok {
			q.object.hi = hi
		}
	}
	if !f.From.IsZero() || !f.To.IsZero() {
		q.time = &pred{col: "time"}
		if !f.From.IsZero() {
			q.time.lo = clampNano(f.From)
		}
		if !f.To.IsZero() {
			q.time.hi = clampNano(f.To)
		}
	}
	return q, nil
}

// prefixEnd returns the smallest string greater than every string with
// prefix p, or false if there is none. It increments the last code point, so
// the bound is valid UTF-8 (PostgreSQL takes nothing else); for valid UTF-8,
// code point order is byte order, as SQLite's BINARY and PostgreSQL's "C"
// collations compare.
func prefixEnd(p string) (string, bool) {
	for p != "" {
		r, size := utf8.DecodeLastRuneInString(p)
		p = p[:len(p)-size]
		switch {
		case r == utf8.MaxRune:
			continue
		case r == 0xD7FF: // skip the surrogates, which UTF-8 cannot encode
			return p + string(rune(0xE000)), true
		}
		return p + string(r+1), true
	}
	return "", false
}

// clampNano maps t to Unix ns, saturating outside the int64 range.
func clampNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, minNano)):
		return minNano
	case t.After(time.Unix(0, maxNano)):
		return maxNano
	}
	return t.UnixNano()
}

const (
	minNano = -1 << 63
	maxNano = 1<<63 - 1
)

func scanStored(rows *sql.Rows) (Stored, error) {
	var (
		st                                      Stored
		seq, tm                                 sql.NullInt64 // NULL in a damaged record (recordevents.go)
		recv                                    int64
		control, typ, sev, user, proc, obj, reg sql.NullString
		attrs                                   sql.NullString
		prev, hash                              []byte
	)
	if err := rows.Scan(&st.Index, &st.Agent, &seq, &tm, &recv, &control, &typ, &sev, &user, &proc, &obj,
		&reg, &attrs, &prev, &hash); err != nil {
		return Stored{}, fmt.Errorf("eventlog: query: %w", err)
	}
	st.Seq = uint64(seq.Int64)
	st.Time = time.Unix(0, tm.Int64).UTC()
	st.Received = time.Unix(0, recv).UTC()
	st.Pruned = !control.Valid // control is required, so NULL means retention cleared the payload
	st.Control, st.Type, st.Severity = control.String, typ.String, event.Severity(sev.String)
	st.User, st.Process, st.Object, st.RegisterID = user.String, proc.String, obj.String, reg.String
	if attrs.Valid {
		if err := json.Unmarshal([]byte(attrs.String), &st.Attrs); err != nil {
			return Stored{}, fmt.Errorf("eventlog: event %d attrs: %w", st.Index, err)
		}
	}
	if len(prev) > 0 {
		st.Prev = hex.EncodeToString(prev)
	}
	st.Hash = hex.EncodeToString(hash)
	return st, nil
}
