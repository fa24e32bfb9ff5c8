package eventlog

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
)

// Query implements Store. Results are in ascending log index order; the
// cursor is the decimal log index of the last event returned, valid with the
// filter that produced it.
func (s *core) Query(ctx context.Context, f Filter) (Page, error) {
	q, args, limit, err := buildQuery(f)
	if err != nil {
		return Page{}, err
	}
	rows, err := s.rdb.QueryContext(ctx, s.bind(q), args...)
	if err != nil {
		return Page{}, fmt.Errorf("eventlog: query: %w", err)
	}
	defer rows.Close()
	var p Page
	for rows.Next() {
		st, err := scanStored(rows)
		if err != nil {
			return Page{}, err
		}
		p.Events = append(p.Events, st)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("eventlog: query: %w", err)
	}
	if len(p.Events) > limit {
		p.Events = p.Events[:limit]
		p.Next = strconv.FormatInt(p.Events[limit-1].Index, 10)
	}
	return p, nil
}

// buildQuery turns f into SQL, its arguments and the page size.
func buildQuery(f Filter) (q string, args []any, limit int, err error) {
	after := int64(-1)
	if f.Cursor != "" {
		c, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || c < 0 || strconv.FormatInt(c, 10) != f.Cursor {
			return "", nil, 0, fmt.Errorf("%w: %q", ErrBadCursor, f.Cursor)
		}
		after = c
	}
	limit = f.Limit
	switch {
	case limit < 0:
		return "", nil, 0, fmt.Errorf("%w: negative limit %d", ErrBadFilter, limit)
	case limit == 0:
		limit = DefaultLimit
	case limit > MaxLimit:
		limit = MaxLimit
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return "", nil, 0, fmt.Errorf("%w: from %s is not before to %s", ErrBadFilter, f.From.Format(time.RFC3339), f.To.Format(time.RFC3339))
	}

	var (
		where []string
		order = "idx"
	)
	for _, v := range []string{f.Agent, f.Control, f.Type, f.User, f.RegisterID, f.ObjectPrefix} {
		// Stored text is valid UTF-8 (event.Validate), and PostgreSQL
		// refuses anything else as a parameter.
		if !utf8.ValidString(v) {
			return "", nil, 0, fmt.Errorf("%w: invalid UTF-8", ErrBadFilter)
		}
	}
	eq := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	if f.Agent == "" {
		where, args = append(where, "idx > ?"), append(args, after)
	} else {
		// Within one stream log order is seq order, so the (agent, seq) index
		// yields rows in order and no page has to sort the whole stream.
		where, args = append(where, "agent = ?"), append(args, f.Agent)
		order = "seq"
		if after >= 0 {
			where = append(where, "seq > (SELECT seq FROM events WHERE idx = ? AND agent = ?)")
			args = append(args, after, f.Agent)
		}
	}
	eq("control", f.Control)
	eq("type", f.Type)
	eq(`"user"`, f.User) // a reserved word in PostgreSQL
	eq("register_id", f.RegisterID)
	if p := f.ObjectPrefix; p != "" {
		// A range over the index, not LIKE (which is case-insensitive and
		// treats % and _ as wildcards).
		where = append(where, "object >= ?")
		args = append(args, p)
		if hi, ok := prefixEnd(p); ok {
			where = append(where, "object < ?")
			args = append(args, hi)
		}
	}
	if !f.From.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, clampNano(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, "time < ?")
		args = append(args, clampNano(f.To))
	}
	q = `SELECT idx, agent, seq, time, received, control, type, severity, "user", process, object,
		register_id, attrs, prev, hash FROM events WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY ` + order + ` LIMIT ?`
	args = append(args, limit+1)
	return q, args, limit, nil
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
		seq, tm, recv                           int64
		control, typ, sev, user, proc, obj, reg sql.NullString
		attrs                                   sql.NullString
		prev, hash                              []byte
	)
	if err := rows.Scan(&st.Index, &st.Agent, &seq, &tm, &recv, &control, &typ, &sev, &user, &proc, &obj,
		&reg, &attrs, &prev, &hash); err != nil {
		return Stored{}, fmt.Errorf("eventlog: query: %w", err)
	}
	st.Seq = uint64(seq)
	st.Time = time.Unix(0, tm).UTC()
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
