package eventlog

import (
	"encoding/binary"
	"fmt"

	"modernc.org/sqlite/vtab"
)

// key_positions is a table-valued function that reads a list of log ranges
// made in Go from a run's key blocks (scanRun) as rows (pos, upto), in the
// order given, so that a page joins them to the events they stand for as
// it joined a run's key rows:
//
//	SELECT ... FROM key_positions(?) AS kp CROSS JOIN events ON idx >= kp.pos AND idx < kp.upto ORDER BY kp.pos
//
// The list is uvarint pairs: pos, then upto - pos (at least 1), with pos
// increasing, so ORDER BY pos needs no sort.
const keyPositionsName = "key_positions"

const keyPositionsSQL = `CREATE VIRTUAL TABLE IF NOT EXISTS temp.` + keyPositionsName + ` USING ` + keyPositionsName

const (
	kpPos = iota
	kpUpto
	kpList
)

type keyPositionsModule struct{}

const keyPositionsSchema = `CREATE TABLE x (pos INTEGER, upto INTEGER, list HIDDEN)`

func (keyPositionsModule) Create(ctx vtab.Context, _ []string) (vtab.Table, error) {
	return keyPositionsTable{}, ctx.Declare(keyPositionsSchema)
}

func (keyPositionsModule) Connect(ctx vtab.Context, _ []string) (vtab.Table, error) {
	return keyPositionsTable{}, ctx.Declare(keyPositionsSchema)
}

type keyPositionsTable struct{}

func (keyPositionsTable) BestIndex(info *vtab.IndexInfo) error {
	list := -1
	for k, c := range info.Constraints {
		if c.Usable && c.Op == vtab.OpEQ && c.Column == kpList {
			list = k
		}
	}
	if list < 0 {
		info.EstimatedCost = 1e300
		return nil
	}
	info.Constraints[list].ArgIndex, info.Constraints[list].Omit = 0, true
	info.IdxNum = 1
	info.EstimatedRows, info.EstimatedCost = 100, 100
	if len(info.OrderBy) == 1 && !info.OrderBy[0].Desc && info.OrderBy[0].Column == kpPos {
		info.OrderByConsumed = true
	}
	return nil
}

func (keyPositionsTable) Open() (vtab.Cursor, error) { return &keyPositionsCursor{}, nil }
func (keyPositionsTable) Disconnect() error          { return nil }
func (keyPositionsTable) Destroy() error             { return nil }

type keyPositionsCursor struct {
	buf, b    []byte // the list, copied: SQLite's bytes do not outlive Filter
	pos, upto int64
	eof       bool
	row       int64
}

func (c *keyPositionsCursor) Filter(idxNum int, _ string, vals []vtab.Value) error {
	if idxNum != 1 || len(vals) != 1 {
		return fmt.Errorf("eventlog: %s needs a list", keyPositionsName)
	}
	b, ok := vals[0].([]byte)
	if !ok && vals[0] != nil {
		return fmt.Errorf("eventlog: %s: list is %T, not a blob", keyPositionsName, vals[0])
	}
	c.buf = append(c.buf[:0], b...)
	c.b, c.row, c.eof = c.buf, 0, false
	return c.Next()
}

func (c *keyPositionsCursor) Next() error {
	if len(c.b) == 0 {
		c.eof = true
		return nil
	}
	pos, n := binary.Uvarint(c.b)
	if n <= 0 || pos > 1<<62 {
		return fmt.Errorf("eventlog: %s: damaged list", keyPositionsName)
	}
	span, m := binary.Uvarint(c.b[n:])
	if m <= 0 || span == 0 || span > 1<<62 {
		return fmt.Errorf("eventlog: %s: damaged list", keyPositionsName)
	}
	c.b = c.b[n+m:]
	c.pos, c.upto = int64(pos), int64(pos+span)
	c.row++
	return nil
}

func (c *keyPositionsCursor) Eof() bool             { return c.eof }
func (c *keyPositionsCursor) Rowid() (int64, error) { return c.row, nil }
func (c *keyPositionsCursor) Close() error          { return nil }

func (c *keyPositionsCursor) Column(col int) (vtab.Value, error) {
	switch col {
	case kpPos:
		return c.pos, nil
	case kpUpto:
		return c.upto, nil
	}
	return nil, nil
}

// appendPositions appends the range [pos, upto) to a key_positions list.
func appendPositions(b []byte, pos, upto int64) []byte {
	b = binary.AppendUvarint(b, uint64(pos))
	return binary.AppendUvarint(b, uint64(upto-pos))
}
