package eventlog

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// A run's keys are made in Go from the values of its events, read from
// the log by logVals: one key per user and register id and run of the same
// agent's rows (a batch) rather than one per event, and about a third of
// the keys to merge (docs/ingest.md, "A smaller first step"). Keys sorted by
// SQLite, one an event, cost the indexer three times the CPU. The writer
// used to hand the values over in a buffer; once reading them back cost
// about as much (some 0.3 µs an event of 23 at 50,000 events/s) the buffer
// went, with the 70 MB it held at that rate.
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
)

// keyVals are one event's values that keys are made of ("" for none).
type keyVals struct{ agent, user, object, reg string }

// logVals' reads of [?1, ?2), each form by its primary key.
var (
	logValsRows = `SELECT idx, agent, coalesce("user", ''), coalesce(object, ''), coalesce(register_id, '')
		FROM events WHERE idx >= ?1 AND idx < ?2`
	logValsRecords = `SELECT lo, agent, payload FROM records WHERE lo >= ` + recordAt("?1") + ` AND lo < ?2`
)

// logVals reads, in tx, the values of the events in [lo, hi), rows and
// records alike. An event that is not there (cut by hand) or whose fields
// do not read (a damaged record) has none; the audit names it.
func logVals(ctx context.Context, tx *sql.Tx, lo, hi int64) ([]keyVals, error) {
	vals := make([]keyVals, hi-lo)
	rows, err := tx.QueryContext(ctx, logValsRows, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			idx int64
			v   keyVals
		)
		if err := rows.Scan(&idx, &v.agent, &v.user, &v.object, &v.reg); err != nil {
			return nil, fmt.Errorf("read keys: %w", err)
		}
		vals[idx-lo] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	recs, err := tx.QueryContext(ctx, logValsRecords, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer recs.Close()
	var fields [][3][]byte // of one record's events in [lo, hi)
	for recs.Next() {
		var (
			at    int64
			agent string
			b     sql.RawBytes // the driver's copy, valid until Next
		)
		if err := recs.Scan(&at, &agent, &b); err != nil {
			return nil, fmt.Errorf("read keys: %w", err)
		}
		p, err := parsePayload(b)
		if err != nil {
			continue
		}
		// The values of a record share one string, of those fields alone.
		from, to := max(lo-at, 0), min(int64(p.len()), hi-at)
		fields = fields[:0]
		n := 0
		for i := from; i < to; i++ {
			f, ok := p.keyFields(int(i))
			if !ok {
				f = [3][]byte{}
			}
			fields, n = append(fields, f), n+len(f[0])+len(f[1])+len(f[2])
		}
		var sb strings.Builder
		sb.Grow(n)
		for _, f := range fields {
			sb.Write(f[0])
			sb.Write(f[1])
			sb.Write(f[2])
		}
		arena := sb.String()
		next := func(f []byte) string {
			v := arena[:len(f)]
			arena = arena[len(f):]
			return v
		}
		for k, f := range fields {
			if f[0] != nil || f[1] != nil || f[2] != nil {
				vals[at+from+int64(k)-lo] = keyVals{agent, next(f[0]), next(f[1]), next(f[2])}
			}
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

// compare orders keys as a run holds them: kind, val, pos.
func (a runKey) compare(b runKey) int {
	// Not cmp.Or, which compares the values of keys of two kinds too.
	if a.kind != b.kind {
		return cmp.Compare(a.kind, b.kind)
	}
	if c := strings.Compare(a.val, b.val); c != 0 {
		return c
	}
	return cmp.Compare(a.pos, b.pos)
}

// runKeys makes the keys of the events from lo, sorted as the run's
// primary key.
func runKeys(lo int64, vals []keyVals) []runKey {
	g := ranger{keys: make([]runKey, 0, len(vals)+len(vals)/4)}
	pos := lo - 1
	for _, v := range vals {
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
	slices.SortFunc(g.keys, runKey.compare)
	return g.keys
}
