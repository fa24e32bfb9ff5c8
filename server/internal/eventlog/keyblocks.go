package eventlog

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// A run's keys are stored in blocks: rows of a few KiB, each holding keys in
// order, named by its first key. SQLite inserted and merged key rows at
// 1.3-1.8 µs a key (each a cell in a B-tree of long keys), two thirds of
// the indexer's CPU; a block is one cell for hundreds of keys, and merges are
// made in Go over decoded blocks (docs/ingest.md, "Runs of key blocks").
// Readers seek a run by its blocks' first keys and decode the blocks a
// read needs (scanRun).
const runSchema = `CREATE TABLE %s (k BLOB PRIMARY KEY, b BLOB NOT NULL)`

// blockBytes is a block's size, about: one or two of SQLite's pages.
const blockBytes = 4000

// A key in a block: kind (one byte), the length of the prefix its value
// shares with the key before it in the block, the rest of the value (length
// and bytes), pos, and upto-pos (0 for none), all uvarints.

// orderKey appends the bytes that order as (kind, val, pos) do, for a
// block's name and the bounds of a seek: kind, val with each 0 byte
// written 0 0xff, then 0 1 and pos big-endian.
func orderKey[S ~string | ~[]byte](b []byte, kind int, val S, pos int64) []byte {
	b = orderVal(b, kind, val)
	b = append(b, 0, 1)
	return binary.BigEndian.AppendUint64(b, uint64(pos))
}

// orderVal appends kind and val as orderKey does, without the end of val:
// every key of that kind whose val is val or greater orders at or after it.
func orderVal[S ~string | ~[]byte](b []byte, kind int, val S) []byte {
	b = append(b, byte(kind))
	for i := 0; i < len(val); i++ {
		if val[i] == 0 {
			b = append(b, 0, 0xff)
		} else {
			b = append(b, val[i])
		}
	}
	return b
}

// blockWriter writes keys, given in key order, as the blocks of a run.
type blockWriter struct {
	ctx   context.Context
	stmt  *sql.Stmt
	buf   []byte // the block being filled
	first []byte // its name
	prev  []byte // the value of the last key written
	n     int    // keys in buf
}

func newBlockWriter(ctx context.Context, tx *sql.Tx, run string) (*blockWriter, error) {
	st, err := tx.PrepareContext(ctx, "INSERT INTO "+run+" (k, b) VALUES (?, ?)")
	if err != nil {
		return nil, err
	}
	return &blockWriter{ctx: ctx, stmt: st, buf: make([]byte, 0, blockBytes+512)}, nil
}

// addKey appends a key; upto 0 for none.
func addKey[S ~string | ~[]byte](w *blockWriter, kind int, val S, pos, upto int64) error {
	shared := 0
	if w.n == 0 {
		w.first = orderKey(w.first[:0], kind, val, pos)
	} else {
		shared = sharedPrefix(val, w.prev)
	}
	w.buf = append(w.buf, byte(kind))
	w.buf = binary.AppendUvarint(w.buf, uint64(shared))
	w.buf = binary.AppendUvarint(w.buf, uint64(len(val)-shared))
	w.buf = append(w.buf, val[shared:]...)
	w.buf = binary.AppendUvarint(w.buf, uint64(pos))
	var span uint64
	if upto != 0 {
		span = uint64(upto - pos)
	}
	w.buf = binary.AppendUvarint(w.buf, span)
	w.prev = append(w.prev[:shared], val[shared:]...)
	w.n++
	if len(w.buf) >= blockBytes {
		return w.flush()
	}
	return nil
}

// sharedPrefix is the length of the prefix a and b share, eight bytes at a
// time: a folder's paths share tens of bytes, and a byte loop over them was
// half of writing a block.
func sharedPrefix[S ~string | ~[]byte](a S, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		x := uint64(a[i]) | uint64(a[i+1])<<8 | uint64(a[i+2])<<16 | uint64(a[i+3])<<24 |
			uint64(a[i+4])<<32 | uint64(a[i+5])<<40 | uint64(a[i+6])<<48 | uint64(a[i+7])<<56
		if x ^= binary.LittleEndian.Uint64(b[i:]); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

func (w *blockWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	if _, err := w.stmt.ExecContext(w.ctx, w.first, w.buf); err != nil {
		return fmt.Errorf("write key block: %w", err)
	}
	w.buf, w.n = w.buf[:0], 0
	return nil
}

// close writes the last block.
func (w *blockWriter) close() error {
	err := w.flush()
	return errors.Join(err, w.stmt.Close())
}

// blockKeys reads the keys of one block in order. val is valid until the
// next call of next.
type blockKeys struct {
	b    []byte
	kind int
	val  []byte
	pos  int64
	upto int64 // 0 for none
}

var errBadBlock = errors.New("eventlog: damaged key block")

// next decodes the next key; false at the block's end.
func (d *blockKeys) next() (bool, error) {
	if len(d.b) == 0 {
		return false, nil
	}
	d.kind = int(d.b[0])
	b := d.b[1:]
	shared, n1 := binary.Uvarint(b)
	if n1 <= 0 || shared > uint64(len(d.val)) {
		return false, errBadBlock
	}
	b = b[n1:]
	rest, n2 := binary.Uvarint(b)
	if n2 <= 0 || rest > uint64(len(b)-n2) {
		return false, errBadBlock
	}
	b = b[n2:]
	d.val = append(d.val[:shared], b[:rest]...)
	b = b[rest:]
	pos, n3 := binary.Uvarint(b)
	if n3 <= 0 || pos > 1<<62 {
		return false, errBadBlock
	}
	b = b[n3:]
	span, n4 := binary.Uvarint(b)
	if n4 <= 0 || span > 1<<62 {
		return false, errBadBlock
	}
	d.b = b[n4:]
	d.pos, d.upto = int64(pos), 0
	if span != 0 {
		d.upto = d.pos + int64(span)
	}
	return true, nil
}

// compareKeys orders keys as the runs do: kind, val, pos.
func compareKeys(ak int, av []byte, ap int64, bk int, bv []byte, bp int64) int {
	if ak != bk {
		return cmp.Compare(ak, bk)
	}
	if c := bytes.Compare(av, bv); c != 0 {
		return c
	}
	return cmp.Compare(ap, bp)
}

// writeKeys writes keys, sorted as the run's order, into the run's table.
func writeKeys(ctx context.Context, tx *sql.Tx, run string, keys []runKey) error {
	w, err := newBlockWriter(ctx, tx, run)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := addKey(w, k.kind, k.val, k.pos, k.upto); err != nil {
			w.close()
			return err
		}
	}
	return w.close()
}

// readBlocks reads every block of run, in order.
func readBlocks(ctx context.Context, tx *sql.Tx, run string) ([][]byte, error) {
	rows, err := tx.QueryContext(ctx, "SELECT b FROM "+run+" ORDER BY k")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// runCursor reads a run's keys in order across its blocks.
type runCursor struct {
	blocks [][]byte
	d      blockKeys
}

func (c *runCursor) next() (bool, error) {
	for {
		ok, err := c.d.next()
		if ok || err != nil {
			return ok, err
		}
		if len(c.blocks) == 0 {
			return false, nil
		}
		c.d.b, c.blocks = c.blocks[0], c.blocks[1:]
	}
}

// mergeKeys writes the keys of the runs from, which hold disjoint ranges of
// the log, into the run to in key order. The runs are read whole: the
// largest merge (runFinal) is some 10 MB of blocks.
func mergeKeys(ctx context.Context, tx *sql.Tx, from []keyRun, to string) error {
	cs := make([]*runCursor, 0, len(from))
	for _, r := range from {
		bs, err := readBlocks(ctx, tx, r.name)
		if err != nil {
			return fmt.Errorf("read run %s: %w", r.name, err)
		}
		c := &runCursor{blocks: bs}
		switch ok, err := c.next(); {
		case err != nil:
			return fmt.Errorf("read run %s: %w", r.name, err)
		case ok:
			cs = append(cs, c)
		}
	}
	w, err := newBlockWriter(ctx, tx, to)
	if err != nil {
		return err
	}
	for len(cs) > 0 {
		m := 0
		for i := 1; i < len(cs); i++ {
			a, b := &cs[i].d, &cs[m].d
			if compareKeys(a.kind, a.val, a.pos, b.kind, b.val, b.pos) < 0 {
				m = i
			}
		}
		d := &cs[m].d
		if err := addKey(w, d.kind, d.val, d.pos, d.upto); err != nil {
			w.close()
			return err
		}
		ok, err := cs[m].next()
		if err != nil {
			w.close()
			return fmt.Errorf("read run: %w", err)
		}
		if !ok {
			cs = slices.Delete(cs, m, m+1)
		}
	}
	return w.close()
}

// keySeek is what a read takes of a run: the keys of kind with val equal
// to eq (hasEq), or in [lo, hi) (hasHi: else no upper bound), and pos at
// or after from.
type keySeek struct {
	kind         int
	eq, lo, hi   string
	hasEq, hasHi bool
	from         int64
}

// seekOf is the seek of a query's key predicate from pos from.
func seekOf(p pred, from int64) keySeek {
	k := keySeek{kind: keyKinds[p.col], from: from}
	if p.eq != nil {
		k.eq, k.hasEq = p.eq.(string)
		return k
	}
	if s, ok := p.lo.(string); ok {
		k.lo = s
	}
	if s, ok := p.hi.(string); ok {
		k.hi, k.hasHi = s, true
	}
	return k
}

// bounds are the seek's first key and the end of its block names.
func (k keySeek) bounds() (lo, hi []byte) {
	switch {
	case k.hasEq:
		lo = orderKey(nil, k.kind, k.eq, max(k.from, 0))
		hi = append(orderVal(nil, k.kind, k.eq), 0, 2)
	case k.hasHi:
		lo = orderVal(nil, k.kind, k.lo)
		hi = orderVal(nil, k.kind, k.hi)
	default:
		lo = orderVal(nil, k.kind, k.lo)
		hi = []byte{byte(k.kind + 1)}
	}
	return lo, hi
}

// matcher returns where a key stands to the seek: -1 before it, 0 in it,
// 1 past its end (no later key is in it).
func (k keySeek) matcher() func(kind int, val []byte, pos int64) int {
	eq, lo, hi := []byte(k.eq), []byte(k.lo), []byte(k.hi) // converted once, not per key
	return func(kind int, val []byte, pos int64) int {
		if c := cmp.Compare(kind, k.kind); c != 0 {
			return c
		}
		if k.hasEq {
			if c := bytes.Compare(val, eq); c != 0 {
				return c
			}
		} else {
			if bytes.Compare(val, lo) < 0 {
				return -1
			}
			if k.hasHi && bytes.Compare(val, hi) >= 0 {
				return 1
			}
		}
		if pos < k.from {
			return -1 // a later key of the value, or of another in the range, may be in it
		}
		return 0
	}
}

// scanRun calls fn with each key of run in the seek, in key order, until
// fn returns false. The blocks read are the one that may hold the seek's
// first key and those named below its end.
func scanRun(ctx context.Context, tx *sql.Tx, run string, k keySeek, fn func(pos, upto int64) bool) error {
	lo, hi := k.bounds()
	match := k.matcher()
	rows, err := tx.QueryContext(ctx, `SELECT b FROM `+run+` WHERE k >= coalesce((SELECT k FROM `+run+
		` WHERE k <= ?1 ORDER BY k DESC LIMIT 1), x'') AND k < ?2 ORDER BY k`, lo, hi)
	if err != nil {
		return fmt.Errorf("eventlog: read key run: %w", err)
	}
	defer rows.Close()
	var (
		d   blockKeys
		raw sql.RawBytes // the driver's copy, valid until Next
	)
	for rows.Next() {
		if err := rows.Scan(&raw); err != nil {
			return fmt.Errorf("eventlog: read key run: %w", err)
		}
		d.b, d.val = raw, d.val[:0]
		for {
			ok, err := d.next()
			if err != nil {
				return fmt.Errorf("eventlog: key run %s: %w", run, err)
			}
			if !ok {
				break
			}
			switch match(d.kind, d.val, d.pos) {
			case 1:
				return nil
			case 0:
				if !fn(d.pos, d.upto) {
					return nil
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("eventlog: read key run: %w", err)
	}
	return nil
}
