package eventlog

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
)

// Keys from the writer. Reading a new run's keys back from the log cost the
// indexer 7.4-8.5 µs an event, three keys each; the writer has the values in
// memory already. It hands the indexer each committed row's agent, user,
// object and register id (fresh); the indexer builds a run from them when
// they cover its range, one key per user and register id and run of the
// same agent's rows (a batch) rather than one per event: 2.7-2.9 µs an
// event and about a third of the keys to merge (docs/ingest.md, "A smaller
// first step"). Otherwise (after a restart, behind the buffer, absorbing
// smaller runs) it reads the log as before; both kinds of key read the same.
//
// A range key (kind, val, pos, upto) says the event at pos has val and the
// events in (pos, upto) may have it: the same agent's, with no more than
// keyGap events between two that have it, and upto-pos at most keySpan.
// Readers check every row's values anyway (retention clears values, not
// keys). Keys of one value never overlap, so reading them in pos order and
// each key's rows in idx order reads in log order.
const (
	keyGap  = 64
	keySpan = 1024
	// freshMax bounds the buffer (some 4 MB, and the strings it holds):
	// beyond it the oldest values go, and the indexer reads their rows.
	// It takes up to indexBatch events at once, so this leaves it three
	// runs' time for merges at saturation.
	freshMax = 4 * indexBatch
)

// freshVals are one row's values that keys are made of ("" for none).
type freshVals struct{ agent, user, object, reg string }

// fresh holds freshVals of consecutive rows, one chunk per commit: a chunk
// is allocated once at its size and never changed, so a range taken out
// stays as it was, and the buffer never regrows (one slice grown by append
// allocated some 290 bytes an event).
type fresh struct {
	mu     sync.Mutex
	chunks []freshChunk
	n      int // values in chunks
}

type freshChunk struct {
	lo   int64
	vals []freshVals
}

func (c freshChunk) hi() int64 { return c.lo + int64(len(c.vals)) }

// add appends the committed rows from first; rows that do not follow the
// buffer start it again, and the oldest chunks go past freshMax. The
// strings are copied into one per call: the rows' share the request body
// they were decoded from, which the buffer would otherwise keep alive (some
// 200 MB more RSS at saturation).
func (f *fresh) add(first int64, rows []*row) {
	str := func(v any) string { s, _ := v.(string); return s }
	n := 0
	for _, r := range rows {
		n += len(str(r.vals[0])) + len(str(r.vals[6])) + len(str(r.vals[8])) + len(str(r.vals[9]))
	}
	var b strings.Builder
	b.Grow(n)
	for _, r := range rows {
		for _, i := range [...]int{0, 6, 8, 9} {
			b.WriteString(str(r.vals[i]))
		}
	}
	arena, at := b.String(), 0
	next := func(v any) string {
		s := arena[at : at+len(str(v))]
		at += len(s)
		return s
	}
	c := freshChunk{lo: first, vals: make([]freshVals, len(rows))}
	for i, r := range rows {
		c.vals[i] = freshVals{next(r.vals[0]), next(r.vals[6]), next(r.vals[8]), next(r.vals[9])}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := len(f.chunks); k > 0 && f.chunks[k-1].hi() != first {
		f.chunks, f.n = nil, 0
	}
	f.chunks, f.n = append(f.chunks, c), f.n+len(c.vals)
	for len(f.chunks) > 1 && f.n > freshMax {
		f.n -= len(f.chunks[0].vals)
		f.chunks = f.chunks[1:]
	}
}

// take returns the values of [lo, hi) in parts, or nil if the buffer does
// not hold them all.
func (f *fresh) take(lo, hi int64) [][]freshVals {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.chunks) == 0 || lo < f.chunks[0].lo || hi > f.chunks[len(f.chunks)-1].hi() {
		return nil
	}
	var parts [][]freshVals
	for _, c := range f.chunks {
		if c.lo >= hi {
			break
		}
		if c.hi() <= lo {
			continue
		}
		from, to := max(lo, c.lo)-c.lo, min(hi, c.hi())-c.lo
		parts = append(parts, c.vals[from:to:to])
	}
	return parts
}

// drop lets go of the chunks wholly below below. The indexer keeps the
// values of runs that a later run may still take in (absorbFrom): reading
// those from the log instead was half the indexer's time at 50,000 events/s,
// where a run that follows a merge is often the larger and takes in the
// three before it.
func (f *fresh) drop(below int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.chunks) > 0 && f.chunks[0].hi() <= below {
		f.n -= len(f.chunks[0].vals)
		f.chunks = f.chunks[1:]
	}
}

// logVals reads from the log, in tx, the values of the events in [lo, hi)
// that the writer hands over fresh, rows and records alike. Keys made of
// them in Go are the buffer's: a range key per user and register id and
// run of one agent's rows, rather than a key an event sorted by SQLite,
// which cost about three times as much CPU. An event that is not there
// (cut by hand) or does not decode (a damaged record) has none; the audit
// names it.
func logVals(ctx context.Context, tx *sql.Tx, lo, hi int64) ([]freshVals, error) {
	vals := make([]freshVals, hi-lo)
	rows, err := tx.QueryContext(ctx, `SELECT idx, agent, coalesce("user", ''), coalesce(object, ''), coalesce(register_id, '')
		FROM events WHERE idx >= ? AND idx < ?`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			idx int64
			v   freshVals
		)
		if err := rows.Scan(&idx, &v.agent, &v.user, &v.object, &v.reg); err != nil {
			return nil, fmt.Errorf("read keys: %w", err)
		}
		vals[idx-lo] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	recs, err := tx.QueryContext(ctx, `SELECT lo, agent, payload FROM records WHERE lo >= `+recordAt("?1")+` AND lo < ?2`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer recs.Close()
	for recs.Next() {
		var (
			at    int64
			agent string
			b     []byte
		)
		if err := recs.Scan(&at, &agent, &b); err != nil {
			return nil, fmt.Errorf("read keys: %w", err)
		}
		p, err := parsePayload(b)
		if err != nil {
			continue
		}
		// The values share one string of the payload rather than one each:
		// f is a slice of b (payload never limits a slice's capacity), so
		// its place in b is how much shorter its capacity is.
		str := string(b)
		sub := func(f []byte) string {
			if i := cap(b) - cap(f); len(f) > 0 && i >= 0 && i+len(f) <= len(str) {
				return str[i : i+len(f)]
			}
			return string(f)
		}
		for i := max(lo-at, 0); i < min(int64(p.len()), hi-at); i++ {
			e, err := p.raw(int(i))
			if err != nil {
				continue
			}
			vals[at+i-lo] = freshVals{agent, sub(e.str[fUser]), sub(e.str[fObject]), sub(e.str[fRegisterID])}
		}
	}
	if err := recs.Err(); err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	return vals, nil
}

// runKey is one key of a run; upto 0 stores NULL (pos alone).
type runKey struct {
	kind     int
	val      string
	pos      int64
	upto     int64
	lastSeen int64 // pos of the value's last occurrence, while building
}

// freshKeys makes the keys of the rows from lo, given in parts, sorted as
// the run's primary key.
func freshKeys(lo int64, parts [][]freshVals) []runKey {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	g := ranger{keys: make([]runKey, 0, n+n/4)}
	pos := lo - 1
	for v := range chunkVals(parts) {
		pos++
		g.row(v.agent)
		g.add(4, v.user, pos)
		g.add(6, v.reg, pos)
		if v.object != "" {
			g.keys = append(g.keys, runKey{kind: 5, val: v.object, pos: pos, lastSeen: pos})
		}
	}
	return g.sorted()
}

// ranger makes range keys of rows given in log order: one key per value
// and run of one agent's consecutive rows, split at keyGap and keySpan.
type ranger struct {
	keys  []runKey
	cur   map[rangeOf]int // the open key of each value in this agent's rows
	agent string
}

type rangeOf struct {
	kind int
	val  string
}

// row starts the next row, of agent's.
func (g *ranger) row(agent string) {
	if g.cur == nil {
		g.cur = map[rangeOf]int{}
	}
	if agent != g.agent {
		clear(g.cur)
		g.agent = agent
	}
}

// add says the row at pos has val ("" for none).
func (g *ranger) add(kind int, val string, pos int64) {
	if val == "" {
		return
	}
	o := rangeOf{kind, val}
	if j, ok := g.cur[o]; ok {
		if k := &g.keys[j]; pos-k.lastSeen <= keyGap && pos+1-k.pos <= keySpan {
			k.upto, k.lastSeen = pos+1, pos
			return
		}
	}
	g.cur[o] = len(g.keys)
	g.keys = append(g.keys, runKey{kind: kind, val: val, pos: pos, lastSeen: pos})
}

// sorted returns the keys in primary key order.
func (g *ranger) sorted() []runKey {
	slices.SortFunc(g.keys, func(a, b runKey) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), strings.Compare(a.val, b.val), cmp.Compare(a.pos, b.pos))
	})
	return g.keys
}

// chunkVals yields the values of parts in order.
func chunkVals(parts [][]freshVals) iter.Seq[freshVals] {
	return func(yield func(freshVals) bool) {
		for _, p := range parts {
			for _, v := range p {
				if !yield(v) {
					return
				}
			}
		}
	}
}

// keysPerInsert is how many keys one INSERT statement writes.
const keysPerInsert = 128

// insertKeys writes keys into the run table name, in tx.
func insertKeys(ctx context.Context, tx *sql.Tx, name string, keys []runKey) error {
	stmt := func(n int) (*sql.Stmt, error) {
		return tx.PrepareContext(ctx, "INSERT OR FAIL INTO "+name+" (kind, val, pos, upto) VALUES "+
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?),", n), ","))
	}
	many, err := stmt(keysPerInsert)
	if err != nil {
		return err
	}
	defer many.Close()
	one, err := stmt(1)
	if err != nil {
		return err
	}
	defer one.Close()
	args := make([]any, 0, 4*keysPerInsert)
	for len(keys) > 0 {
		n, st := keysPerInsert, many
		if len(keys) < keysPerInsert {
			n, st = 1, one
		}
		args = args[:0]
		for _, k := range keys[:n] {
			var upto any
			if k.upto != 0 {
				upto = k.upto
			}
			args = append(args, k.kind, k.val, k.pos, upto)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert keys: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}
