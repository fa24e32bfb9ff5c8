package eventlog

import (
	"bytes"
	"database/sql/driver"
	"fmt"
	"math"
	"sync"

	"modernc.org/sqlite/vtab"
)

// record_events is a table-valued function that reads a record's payload
// as rows, so that SQL written for the events table reads records too:
//
//	SELECT r.lo + e.i, r.agent, e.seq, e.type FROM records r, record_events(r.payload) e
//
// SQLite searches records by their keys as for rows and decodes only the
// fields a query reads (docs/record-store.md, "Reads"). Columns are those
// of events, with the same types and NULLs: i (the event's place in the
// record), seq, time (Unix ns), control, type, severity, user, process,
// object, register_id, attrs (canonical JSON), prev and hash (32 bytes), and
// the hidden payload. Integer bounds on i seek in the offset table, and
// rows come in i order, so ORDER BY r.lo, e.i needs no sort.
const recordEventsName = "record_events"

const recordEventsSchema = `CREATE TABLE x (i INTEGER, idx INTEGER, seq INTEGER, time INTEGER, control TEXT, type TEXT,
	severity TEXT, user TEXT, process TEXT, object TEXT, register_id TEXT, attrs TEXT, prev BLOB, hash BLOB,
	payload HIDDEN, base HIDDEN, rhi HIDDEN)`

// Columns of record_events.
const (
	reI = iota
	reIdx
	reSeq
	reTime
	reControl // reControl..reAttrs are rawEvent.str in order
	reType
	reSeverity
	reUser
	reProcess
	reObject
	reRegisterID
	reAttrs
	rePrev
	reHash
	rePayload
	reBase
	reHi
)

// registerRecordEvents registers record_events and key_positions.
var registerRecordEvents = sync.OnceValue(func() error {
	if err := vtab.RegisterModule(nil, recordEventsName, recordEventsModule{}); err != nil {
		return err
	}
	return vtab.RegisterModule(nil, keyPositionsName, keyPositionsModule{})
})

// recordEventsSQL makes record_events usable on one connection. A
// connection-local (temp) table: the database file names no Go module, so
// any SQLite tool, and an older server, still opens it.
const recordEventsSQL = `CREATE VIRTUAL TABLE IF NOT EXISTS temp.` + recordEventsName + ` USING ` + recordEventsName

type recordEventsModule struct{}

func (recordEventsModule) Create(ctx vtab.Context, _ []string) (vtab.Table, error) {
	return recordEventsTable{}, ctx.Declare(recordEventsSchema)
}

func (recordEventsModule) Connect(ctx vtab.Context, _ []string) (vtab.Table, error) {
	return recordEventsTable{}, ctx.Declare(recordEventsSchema)
}

type recordEventsTable struct{}

// boundOps are the constraints on i (and on idx, given a base) that the
// cursor applies itself. IdxStr lists the ones chosen, two bytes each (the
// column, 'i' or 'x', and the operator), in argument order after the
// payload and base.
var boundOps = map[vtab.ConstraintOp]byte{vtab.OpEQ: '=', vtab.OpGT: '>', vtab.OpGE: 'g', vtab.OpLT: '<', vtab.OpLE: 'l'}

// Plans (IdxNum): the payload alone, or with the base.
const (
	planPayload = 1
	planBase    = 2
	planBaseHi  = 3 // and the record's end: a damaged record reads as damaged events
)

// BestIndex takes the payload (required: without it there are no rows to
// read), the base if given, and any bounds on i, and on idx with a base.
func (recordEventsTable) BestIndex(info *vtab.IndexInfo) error {
	payload, base, hi := -1, -1, -1
	for k, c := range info.Constraints {
		if c.Usable && c.Op == vtab.OpEQ {
			switch c.Column {
			case rePayload:
				payload = k
			case reBase:
				base = k
			case reHi:
				hi = k
			}
		}
	}
	if payload < 0 {
		// Not a plan: SQLite picks another join order or reports that
		// the function lacks its argument.
		info.EstimatedCost = 1e300
		return nil
	}
	info.Constraints[payload].ArgIndex, info.Constraints[payload].Omit = 0, true
	info.IdxNum = planPayload
	args := 1
	if base >= 0 {
		info.Constraints[base].ArgIndex, info.Constraints[base].Omit = 1, true
		info.IdxNum, args = planBase, 2
		if hi >= 0 {
			info.Constraints[hi].ArgIndex, info.Constraints[hi].Omit = 2, true
			info.IdxNum, args = planBaseHi, 3
		}
	}
	var ops []byte
	for k := range info.Constraints {
		c := &info.Constraints[k]
		op, ok := boundOps[c.Op]
		col := byte('i')
		text := c.Column >= reControl && c.Column <= reRegisterID
		switch {
		case c.Column == reIdx:
			col = 'x'
		case c.Column == reTime:
			col = 't' // skipped by decoding two varints, not the event
		case text:
			col = byte('A' + c.Column - reControl) // skipped by reading one field
		}
		if !c.Usable || !ok || (c.Column != reI && c.Column != reTime && !text && (c.Column != reIdx || base < 0)) {
			continue
		}
		// Not omitted: SQLite checks the bound again on each row, so a
		// bound that is not an integer (which Filter leaves out) keeps
		// SQLite's own comparison rules.
		c.ArgIndex = args + len(ops)/2
		ops = append(ops, col, op)
	}
	info.IdxStr = string(ops)
	info.EstimatedRows, info.EstimatedCost = 500, 500
	if len(ops) > 0 {
		info.EstimatedRows, info.EstimatedCost = 10, 10
	}
	if len(info.OrderBy) == 1 && !info.OrderBy[0].Desc {
		c := info.OrderBy[0].Column
		info.OrderByConsumed = c == reI || (c == reIdx && base >= 0)
	}
	return nil
}

func (recordEventsTable) Open() (vtab.Cursor, error) { return &recordEventsCursor{}, nil }
func (recordEventsTable) Disconnect() error          { return nil }
func (recordEventsTable) Destroy() error             { return nil }

type recordEventsCursor struct {
	buf    []byte // the payload, copied: SQLite's bytes do not outlive Filter
	p      payload
	i, end int
	ev     rawEvent
	have   bool   // ev is event i
	base   *int64 // the record's first log index, if given as an integer
	// damaged: the payload does not hold the record's events (planBaseHi);
	// every column but i and idx is NULL, as it is for one event that does
	// not decode.
	damaged bool
	sized   bool // the record's size was given: an event that does not decode is NULL, not an error
	// tlo, thi: integer bounds on time, [tlo, thi); texts: bounds on text
	// columns. Events outside them are skipped undecoded.
	tlo, thi int64
	texts    []textBound
}

func (c *recordEventsCursor) Filter(idxNum int, idxStr string, vals []vtab.Value) error {
	args := idxNum
	if idxNum < planPayload || idxNum > planBaseHi || len(vals) != args+len(idxStr)/2 {
		return fmt.Errorf("eventlog: %s needs a record's payload", recordEventsName)
	}
	b, ok := vals[0].([]byte)
	if !ok {
		return fmt.Errorf("eventlog: %s: payload is %T, not a blob", recordEventsName, vals[0])
	}
	c.buf = append(c.buf[:0], b...)
	c.i, c.have, c.base, c.damaged, c.sized = 0, false, nil, false, false
	if idxNum >= planBase {
		if base, ok := vals[1].(int64); ok {
			c.base = &base
		}
	}
	p, err := parsePayload(c.buf)
	n := p.len()
	if idxNum == planBaseHi && c.base != nil {
		// The record says how many events it holds: a payload that does
		// not read as that many is damaged, and its events read back as
		// such (NULL but for i and idx), so an audit names each one
		// instead of failing on the record.
		if hi, ok := vals[2].(int64); ok && hi-*c.base >= 0 && hi-*c.base <= runMax {
			c.sized = true
			if err != nil || int64(n) != hi-*c.base {
				err, n, c.damaged = nil, int(hi-*c.base), true
			}
		}
	}
	if err != nil {
		return err
	}
	c.p, c.end = p, n
	c.tlo, c.thi, c.texts = math.MinInt64, math.MaxInt64, c.texts[:0]
	for k := 0; k+1 < len(idxStr); k += 2 {
		if col := idxStr[k]; col >= 'A' && col <= 'A'+reRegisterID-reControl {
			// A text bound: BINARY collation is byte order. Any other
			// value SQLite compares itself.
			if v, ok := vals[args+k/2].(string); ok {
				c.texts = append(c.texts, textBound{int(col - 'A'), idxStr[k+1], v})
			}
			continue
		}
		v, ok := vals[args+k/2].(int64)
		if !ok {
			continue // SQLite compares NULL, text and floats itself
		}
		if idxStr[k] == 't' {
			// Bounds as [tlo, thi), v+1 saturating: SQLite checks again.
			switch inc := min(v, math.MaxInt64-1) + 1; idxStr[k+1] {
			case '=':
				c.tlo, c.thi = max(c.tlo, v), min(c.thi, inc)
			case '>':
				c.tlo = max(c.tlo, inc)
			case 'g':
				c.tlo = max(c.tlo, v)
			case '<':
				c.thi = min(c.thi, v)
			case 'l':
				c.thi = min(c.thi, inc)
			}
			continue
		}
		if idxStr[k] == 'x' {
			if c.base == nil {
				continue // idx is NULL: SQLite's check selects no row
			}
			if b := *c.base; (b > 0 && v < math.MinInt64+b) || (b < 0 && v > math.MaxInt64+b) {
				continue // v - base overflows; SQLite's check still applies
			}
			v -= *c.base
		}
		switch idxStr[k+1] {
		case '=':
			c.i, c.end = max(c.i, clampInt(v)), min(c.end, clampInt(v)+1)
		case '>':
			c.i = max(c.i, clampInt(v)+1)
		case 'g':
			c.i = max(c.i, clampInt(v))
		case '<':
			c.end = min(c.end, clampInt(v))
		case 'l':
			c.end = min(c.end, clampInt(v)+1)
		}
	}
	c.skip()
	return nil
}

// clampInt bounds an SQL integer to the payload's index range and beyond
// by one either side, so that v+1 cannot overflow.
func clampInt(v int64) int {
	return int(max(-1, min(v, 1<<32)))
}

func (c *recordEventsCursor) Next() error { c.i++; c.have = false; c.skip(); return nil }

// textBound is a bound on a text column: field (an index into
// rawEvent.str), operator (boundOps) and value.
type textBound struct {
	field int
	op    byte
	v     string
}

// skip moves past events that the bounds on time and text columns rule
// out, reading only the fields they name. An event that does not decode is
// not skipped: Column reports it. SQLite checks every bound again.
func (c *recordEventsCursor) skip() {
	if c.damaged || (c.tlo == math.MinInt64 && c.thi == math.MaxInt64 && len(c.texts) == 0) {
		return
	}
next:
	for ; c.i < c.end; c.i++ {
		if c.tlo != math.MinInt64 || c.thi != math.MaxInt64 {
			t, ok := c.p.timeAt(c.i)
			if !ok {
				return
			}
			if t < c.tlo || t >= c.thi {
				continue
			}
		}
		for _, b := range c.texts {
			f, ok := c.p.field(c.i, b.field)
			if !ok {
				return
			}
			if len(f) == 0 {
				continue next // NULL: no comparison holds
			}
			cmp := bytes.Compare(f, []byte(b.v))
			if !(b.op == '=' && cmp == 0 || b.op == '>' && cmp > 0 || b.op == 'g' && cmp >= 0 ||
				b.op == '<' && cmp < 0 || b.op == 'l' && cmp <= 0) {
				continue next
			}
		}
		return
	}
}

func (c *recordEventsCursor) Eof() bool { return c.i >= c.end }
func (c *recordEventsCursor) Rowid() (int64, error) {
	return int64(c.i), nil
}
func (c *recordEventsCursor) Close() error { return nil }

func (c *recordEventsCursor) Column(col int) (vtab.Value, error) {
	switch col {
	case reI:
		return int64(c.i), nil
	case reIdx:
		if c.base == nil {
			return nil, nil
		}
		return *c.base + int64(c.i), nil
	case reBase:
		if c.base == nil {
			return nil, nil
		}
		return *c.base, nil
	case reHi:
		return nil, nil
	}
	if c.damaged {
		return nil, nil
	}
	if !c.have {
		ev, err := c.p.raw(c.i)
		if err != nil {
			if !c.sized {
				return nil, err
			}
			return nil, nil // a damaged event of a record whose size is known
		}
		c.ev, c.have = ev, true
	}
	switch col {
	case reSeq:
		return int64(c.ev.seq), nil
	case reTime:
		return c.ev.time, nil
	case rePrev:
		return blobOrNull(c.ev.prev), nil
	case reHash:
		return c.ev.hash, nil
	case rePayload:
		return nil, nil
	}
	if col < reControl || col > reAttrs {
		return nil, fmt.Errorf("eventlog: %s has no column %d", recordEventsName, col)
	}
	// Empty optional fields are NULL, as in events; control, type and
	// severity are never empty in a stored event.
	s := c.ev.str[col-reControl]
	if len(s) == 0 {
		return nil, nil
	}
	return string(s), nil
}

func blobOrNull(b []byte) driver.Value {
	if b == nil {
		return nil
	}
	return b
}
