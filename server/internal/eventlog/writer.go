package eventlog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

// Insert statement shape. The writer talks to the driver directly (no
// database/sql per-row overhead) and inserts rowsPerInsert rows per statement.
const (
	eventColumns  = 16
	rowsPerInsert = 32
	// OR FAIL rather than the default ABORT: a conflict fails the whole group
	// anyway, and ABORT would make SQLite keep a statement journal for every
	// multi-row statement.
	insertPrefix = `INSERT OR FAIL INTO events (idx, received, merkle, agent, seq, time, control, type, severity,
		user, process, object, register_id, attrs, prev, hash) VALUES `
	upsertHeadSQL = `INSERT INTO heads (agent, seq, hash, last_seen, events) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (agent) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
		last_seen = excluded.last_seen, events = excluded.events`
	// storedHashesSQL reads an agent's stored seqs in [?2, ?3] through its
	// runs (at most runMax seqs each, so the run holding ?2 starts after
	// ?2 - runMax), checking each row's agent and seq.
	storedHashesSQL = `SELECT seq, hash FROM agent_runs CROSS JOIN events ON idx >= pos AND idx < pos + n
		WHERE stream = ?1 AND seq_lo > ?2 - 1024 AND seq_lo <= ?3 AND +agent = ?1 AND +seq BETWEEN ?2 AND ?3`
	insertRunSQL     = `INSERT OR FAIL INTO agent_runs (stream, seq_lo, pos, n) VALUES (?, ?, ?, ?)`
	insertRecordSQL  = `INSERT OR FAIL INTO records (lo, hi, agent, received, tmin, tmax, merkle, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	putCheckpointSQL = `INSERT OR REPLACE INTO checkpoints (size, root, note, created) VALUES (?, ?, ?, ?)`
	rangesPerInsert  = 32
	upsertSpanSQL    = `INSERT INTO event_spans (block, min_time, max_time) VALUES (?, ?, ?)
		ON CONFLICT (block) DO UPDATE SET min_time = min(min_time, excluded.min_time),
		max_time = max(max_time, excluded.max_time)`
)

func insertRangesSQL(keys int) string {
	return "INSERT OR FAIL INTO " + rangesTable + " (kind, val, pos, upto) VALUES " +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?),", keys), ",")
}

// runMax bounds an agent run (agent_runs): readers seek a seq or log index
// from runMax before it. Migration 7 groups old rows by seq >> 10.
const runMax = 1 << 10

// agentRun is a row of agent_runs.
type agentRun struct {
	stream string
	seqLo  int64
	pos, n int64
}

// agentRuns returns the runs of rows stored from first: a new run where
// the agent changes, its seq does not follow, or the run is full.
func agentRuns(first int64, rows []*row) []agentRun {
	var out []agentRun
	for i, r := range rows {
		agent, seq := r.agent, r.seq
		if k := len(out) - 1; k >= 0 && out[k].stream == agent && out[k].seqLo+out[k].n == seq && out[k].n < runMax {
			out[k].n++
			continue
		}
		out = append(out, agentRun{agent, seq, first + int64(i), 1})
	}
	return out
}

// rangeKeys makes the control and type range keys of rows stored from
// first: a few per batch, where indexes on events took two entries an
// event.
func rangeKeys(first int64, rows []*row) []runKey {
	var g ranger
	for i, r := range rows {
		pos := first + int64(i)
		g.row(r.agent)
		g.add(rangeKinds["control"], r.control, pos)
		g.add(rangeKinds["type"], r.typ, pos)
	}
	return g.sorted()
}

func insertSQL(rows int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", eventColumns), ",") + ")"
	return insertPrefix + strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}

// row holds what the writer needs of an event, computed in the caller's
// goroutine so the writer does not have to: the columns it groups by, the
// raw event hash it makes the Merkle leaf of together with the commit's
// received time (evidence.RecordLeaf, so that time is signed too), and the
// event and its canonical attrs for the record's payload. The boxed values
// of a row of events are built only where rows are written (vals): a record
// store paid some eight allocations an event for values it never read.
type row struct {
	agent, control, typ string
	seq, time           int64
	raw                 []byte
	ev                  *event.Event
	attrs               []byte
}

// set fills r from e and attrs, e's attrs as checkStorable encoded them.
func (r *row) set(e *event.Event, attrs []byte) error {
	hash, err := hex.DecodeString(e.Hash)
	if err != nil {
		return fmt.Errorf("eventlog: seq %d hash: %w", e.Seq, err)
	}
	*r = row{agent: e.Agent, control: e.Control, typ: e.Type, seq: int64(e.Seq), time: e.Time.UnixNano(),
		raw: hash, ev: e, attrs: attrs}
	return nil
}

// vals returns the row's column values from agent to hash.
func (r *row) vals() ([eventColumns - 3]any, error) {
	e := r.ev
	var prev any
	if e.Prev != "" {
		b, err := hex.DecodeString(e.Prev)
		if err != nil {
			return [eventColumns - 3]any{}, fmt.Errorf("eventlog: seq %d prev: %w", e.Seq, err)
		}
		prev = b
	}
	var a any
	if r.attrs != nil {
		a = string(r.attrs)
	}
	return [...]any{r.agent, r.seq, r.time, r.control, r.typ, string(e.Severity),
		nullable(e.User), nullable(e.Process), nullable(e.Object), nullable(e.RegisterID), a, prev, r.raw}, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// wconn is the writer's connection with its prepared statements.
type wconn struct {
	begin               driver.ConnBeginTx
	insN, ins1, upd, cp driver.StmtExecContext
	span                driver.StmtExecContext
	rngN, rng1          driver.StmtExecContext // event_ranges inserts
	run                 driver.StmtExecContext // agent_runs insert
	rec                 driver.StmtExecContext // records insert
	recBuf              struct {               // writeRecords' buffers
		evs     []event.Event
		attrs   [][]byte
		merkle  []byte
		payload []byte
	}
	records  bool                    // write records, not rows of events
	recFrom  *atomic.Int64           // the store's first record index (records.go)
	fence    driver.StmtExecContext  // writer_epoch update (fence.go)
	dropHead driver.StmtExecContext  // a heads row deleted (writeDirty)
	epoch    *atomic.Int64           // the store's writer epoch
	stored   driver.StmtQueryContext // hashes of stored seqs, to check resends
	stmts    []driver.Stmt
	lock     *sync.Mutex // the store's write lock, held around each transaction
}

func newWconn(ctx context.Context, dc any) (*wconn, error) {
	begin, ok1 := dc.(driver.ConnBeginTx)
	prep, ok2 := dc.(driver.ConnPrepareContext)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("eventlog: driver connection %T lacks BeginTx/PrepareContext", dc)
	}
	w := &wconn{begin: begin}
	// A run is rows or a record; each form finds nothing of the other.
	st, err := prep.PrepareContext(ctx, storedHashesSQL+" UNION ALL "+runsOverRecords(storedHashesSQL))
	if err != nil {
		return nil, fmt.Errorf("eventlog: prepare: %w", err)
	}
	w.stmts = append(w.stmts, st)
	q, ok := st.(driver.StmtQueryContext)
	if !ok {
		w.close()
		return nil, fmt.Errorf("eventlog: driver statement %T lacks QueryContext", st)
	}
	w.stored = q
	for _, p := range []struct {
		dst *driver.StmtExecContext
		sql string
	}{
		{&w.insN, insertSQL(rowsPerInsert)}, {&w.ins1, insertSQL(1)}, {&w.upd, upsertHeadSQL}, {&w.cp, putCheckpointSQL}, {&w.span, upsertSpanSQL},
		{&w.fence, fenceSQL}, {&w.rngN, insertRangesSQL(rangesPerInsert)}, {&w.rng1, insertRangesSQL(1)},
		{&w.run, insertRunSQL}, {&w.rec, insertRecordSQL}, {&w.dropHead, `DELETE FROM heads WHERE agent = ?`},
	} {
		st, err := prep.PrepareContext(ctx, p.sql)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("eventlog: prepare: %w", err)
		}
		w.stmts = append(w.stmts, st)
		ex, ok := st.(driver.StmtExecContext)
		if !ok {
			w.close()
			return nil, fmt.Errorf("eventlog: driver statement %T lacks ExecContext", st)
		}
		*p.dst = ex
	}
	return w, nil
}

func (w *wconn) close() error {
	var errs []error
	for _, st := range w.stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

// prepare implements backend; SQLite's connection is a file and stays.
func (w *wconn) prepare(context.Context) error { return nil }

// storedHashes implements backend.
func (w *wconn) storedHashes(ctx context.Context, agent string, lo, hi uint64, fn func(seq uint64, hash []byte)) error {
	rows, err := w.stored.QueryContext(ctx, named(agent, int64(lo), int64(hi)))
	if err != nil {
		return err
	}
	defer rows.Close()
	dest := make([]driver.Value, 2)
	for {
		if err := rows.Next(dest); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		seq, _ := dest[0].(int64)
		raw, _ := dest[1].([]byte)
		fn(uint64(seq), raw)
	}
}

// writer runs the group commit loop on the write connection it owns for the
// store's lifetime.
func (s *SQLite) writer(conn *sql.Conn, ready chan<- error) {
	defer close(s.done)
	err := conn.Raw(func(dc any) error {
		w, err := newWconn(context.Background(), dc)
		if err != nil {
			return err
		}
		w.epoch = &s.epoch
		w.lock = &s.wmu
		w.records, w.recFrom = writeRecordsDefault || s.recFrom.Load() != noRecords, &s.recFrom
		ready <- nil
		ready = nil
		s.loop(claimed{w, &s.core})
		return w.close()
	})
	if ready != nil {
		ready <- err
	} else if err != nil {
		s.log.Error().Err(err).Msg("writer connection")
	}
	conn.Close()
}

// loop is the writer: the only goroutine that writes. It takes every request
// already queued (up to maxGroupEvents) and commits them in one transaction
// through b, until the queue is closed and drained.
func (s *core) loop(b backend) {
	group := make([]*request, 0, 64)
	for {
		r, ok := <-s.reqs
		if !ok {
			return
		}
		group = append(group[:0], r)
		n := len(r.evs) + 1
	fill:
		for n < maxGroupEvents {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break fill // commit what we have; the next receive sees the close
				}
				group = append(group, r)
				n += len(r.evs) + 1
			default:
				break fill
			}
		}
		s.commit(b, group)
		for _, r := range group {
			close(r.done)
		}
	}
}

// txn is the plan of one group commit.
type txn struct {
	received int64
	heads    map[string]*head // streams touched, new values
	drop     []string         // streams whose heads row is deleted (writeDirty)
	rows     []*row           // to insert, in log order
	merkle   [][]byte         // their stored Merkle hashes
	cps      []*Checkpoint
	planned  map[string]map[uint64]string // agent -> seq -> hash planned in this group
}

// headOf returns the stream's head as the group sees it.
func (s *core) headOf(t *txn, agent string) head {
	if h, ok := t.heads[agent]; ok {
		return *h
	}
	if h, ok := s.heads[agent]; ok {
		return *h
	}
	return head{}
}

// commit stores a group of requests in one transaction. Every check happens
// while planning, before the first write: a request refused by the chain
// check gets its own error and contributes nothing; a database error fails
// the whole group and leaves memory as it was.
func (s *core) commit(b backend, group []*request) {
	ctx := context.Background() // a commit, once started, is not abandoned
	if err := s.Halted(); err != nil {
		for _, r := range group {
			r.err = err
		}
		return
	}
	if err := b.prepare(ctx); err != nil {
		if errors.Is(err, ErrRolledBack) {
			s.stop(err)
		}
		s.log.Error().Err(err).Int("batches", len(group)).Msg("group commit failed")
		for _, r := range group {
			r.err = fmt.Errorf("eventlog: batch not stored: %w", err)
		}
		return
	}
	saved := s.front
	t := &txn{received: s.now().UnixNano(), heads: make(map[string]*head)}
	fail := func(err error) {
		s.front = saved
		if errors.Is(err, ErrRolledBack) {
			s.stop(err)
		}
		s.log.Error().Err(err).Int("batches", len(group)).Msg("group commit failed")
		for _, r := range group {
			if r.err == nil {
				r.err = fmt.Errorf("eventlog: batch not stored: %w", err)
			}
			r.res = Result{}
		}
	}
	for _, r := range group {
		var err error
		switch {
		case r.cp != nil:
			t.cps = append(t.cps, r.cp)
		case r.server != nil:
			err = s.planServer(t, r.server)
			if errors.Is(err, event.ErrInvalid) {
				r.err, err = err, nil
			}
		default:
			err = s.planBatch(ctx, b, t, r)
		}
		if err != nil {
			fail(err)
			return
		}
	}
	if len(t.rows) == 0 && len(t.cps) == 0 {
		return // only duplicates and refusals
	}
	s.writeDirty(t)
	var tail []byte
	if len(t.merkle) > 0 {
		tail = t.merkle[len(t.merkle)-1]
	}
	if err := b.write(ctx, s.front.n-int64(len(t.rows)), t); err != nil {
		fail(err)
		return
	}
	if tail != nil {
		s.tail = tail
	}
	for agent, h := range t.heads {
		s.heads[agent] = h
	}
	clear(s.dirty)
	s.size.Store(s.front.n)
	s.agents.Store(int64(len(s.heads)))
}

// write implements backend.
func (w *wconn) write(ctx context.Context, first int64, t *txn) (err error) {
	w.lock.Lock()
	defer w.lock.Unlock()
	tx, err := w.begin.BeginTx(ctx, driver.TxOptions{})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	// First, so that a fenced writer writes nothing (fence.go).
	e := w.epoch.Load()
	res, err := w.fence.ExecContext(ctx, named(e, e))
	if err != nil {
		return fmt.Errorf("writer epoch: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("writer epoch: %w", err)
	}
	if err := fenceResult(e, n); err != nil {
		return err
	}
	// Before the loop below consumes t.rows.
	spans, ranges, runs := groupSpans(first, t.rows), rangeKeys(first, t.rows), agentRuns(first, t.rows)
	args := make([]driver.NamedValue, 0, rowsPerInsert*eventColumns)
	if w.records {
		if len(runs) > 0 && w.recFrom.Load() == noRecords {
			w.recFrom.Store(first) // before the commit: see records.go
		}
		if err := w.writeRecords(ctx, t, runs); err != nil {
			return err
		}
	}
	idx := first
	for len(t.rows) > 0 {
		n, st := rowsPerInsert, w.insN
		if len(t.rows) < rowsPerInsert {
			n, st = 1, w.ins1
		}
		args = args[:0]
		for i, r := range t.rows[:n] {
			args = append(args, driver.NamedValue{Value: idx}, driver.NamedValue{Value: t.received},
				driver.NamedValue{Value: t.merkle[i]})
			vals, err := r.vals()
			if err != nil {
				return err
			}
			for _, v := range vals {
				args = append(args, driver.NamedValue{Value: v})
			}
			idx++
		}
		for i := range args {
			args[i].Ordinal = i + 1
		}
		if _, err := st.ExecContext(ctx, args); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		t.rows, t.merkle = t.rows[n:], t.merkle[n:]
	}
	for len(ranges) > 0 {
		n, st := rangesPerInsert, w.rngN
		if len(ranges) < rangesPerInsert {
			n, st = 1, w.rng1
		}
		args = args[:0]
		for _, k := range ranges[:n] {
			var upto driver.Value
			if k.upto != 0 {
				upto = k.upto
			}
			args = append(args, driver.NamedValue{Value: int64(k.kind)}, driver.NamedValue{Value: k.val},
				driver.NamedValue{Value: k.pos}, driver.NamedValue{Value: upto})
		}
		for i := range args {
			args[i].Ordinal = i + 1
		}
		if _, err := st.ExecContext(ctx, args); err != nil {
			return fmt.Errorf("insert ranges: %w", err)
		}
		ranges = ranges[n:]
	}
	for _, r := range runs {
		if _, err := w.run.ExecContext(ctx, named(r.stream, r.seqLo, r.pos, r.n)); err != nil {
			return fmt.Errorf("insert agent runs: %w", err)
		}
	}
	for _, sp := range spans {
		if _, err := w.span.ExecContext(ctx, named(sp.block, sp.min, sp.max)); err != nil {
			return fmt.Errorf("update spans: %w", err)
		}
	}
	for agent, h := range t.heads {
		raw, _ := hex.DecodeString(h.hash)
		if _, err := w.upd.ExecContext(ctx, named(agent, int64(h.seq), raw, h.lastSeen, h.events)); err != nil {
			return fmt.Errorf("update head: %w", err)
		}
	}
	for _, agent := range t.drop {
		if _, err := w.dropHead.ExecContext(ctx, named(agent)); err != nil {
			return fmt.Errorf("drop head: %w", err)
		}
	}
	for _, c := range t.cps {
		if _, err := w.cp.ExecContext(ctx, named(c.Size, c.Root[:], c.Note, c.Created.UnixNano())); err != nil {
			return fmt.Errorf("store checkpoint: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// writeRecords stores t's rows as records, one an agent run, and consumes
// them.
func (w *wconn) writeRecords(ctx context.Context, t *txn, runs []agentRun) error {
	// The buffers last from commit to commit: growing them anew each time
	// was most of the encoding's cost. The driver copies what it binds.
	b := &w.recBuf
	evs, attrs, merkle, payload := b.evs, b.attrs, b.merkle, b.payload
	defer func() {
		clear(evs[:cap(evs)]) // no event or attrs outlives its commit here
		clear(attrs[:cap(attrs)])
		b.evs, b.attrs, b.merkle, b.payload = evs[:0], attrs[:0], merkle[:0], payload[:0]
	}()
	var err error
	for _, r := range runs {
		n := int(r.n)
		evs, attrs, merkle = evs[:0], attrs[:0], merkle[:0]
		tmin, tmax := int64(math.MaxInt64), int64(math.MinInt64)
		for i, row := range t.rows[:n] {
			evs, attrs, merkle = append(evs, *row.ev), append(attrs, row.attrs), append(merkle, t.merkle[i]...)
			tmin, tmax = min(tmin, row.time), max(tmax, row.time)
			// The indexer keeps the row's values a while; not the event.
			row.ev, row.attrs = nil, nil
		}
		if payload, err = appendPayload(payload[:0], evs, attrs); err != nil {
			return fmt.Errorf("record: %w", err)
		}
		if _, err := w.rec.ExecContext(ctx, named(r.pos, r.pos+r.n, r.stream, t.received, tmin, tmax, merkle, payload)); err != nil {
			return fmt.Errorf("insert records: %w", err)
		}
		t.rows, t.merkle = t.rows[n:], t.merkle[n:]
	}
	return nil
}

func named(vals ...any) []driver.NamedValue {
	out := make([]driver.NamedValue, len(vals))
	for i, v := range vals {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return out
}

// add appends a row to the plan as the next Merkle log record.
func (s *core) add(t *txn, r *row) error {
	hashes, err := s.front.append(evidence.RecordLeaf(r.raw, t.received))
	if err != nil {
		return err
	}
	merkle := make([]byte, 0, len(hashes)*tlog.HashSize)
	for _, h := range hashes {
		merkle = append(merkle, h[:]...)
	}
	t.rows = append(t.rows, r)
	t.merkle = append(t.merkle, merkle)
	return nil
}

// planBatch checks r against the stream head and, if it passes, plans its
// rows. A refusal is recorded in r.err and is not a transaction error.
func (s *core) planBatch(ctx context.Context, b backend, t *txn, r *request) error {
	h := s.headOf(t, r.agent)
	if ok, err := s.checkResent(ctx, b, t, r, h.seq); err != nil || !ok {
		return err
	}
	type gap struct {
		before   int // index in r.evs of the first event after the gap
		from, to uint64
	}
	var gaps []gap
	first := -1 // first event not yet stored
	last, lastHash := h.seq, h.hash
	for i := range r.evs {
		e := &r.evs[i]
		if e.Seq <= h.seq {
			r.res.Duplicates++
			continue
		}
		if first < 0 {
			first = i
		}
		if e.Seq == last+1 {
			if e.Prev != lastHash {
				r.err = fmt.Errorf("eventlog: agent %q seq %d: %w", r.agent, e.Seq, event.ErrChain)
				r.res = Result{}
				return nil
			}
		} else {
			gaps = append(gaps, gap{i, last + 1, e.Seq - 1})
		}
		last, lastHash = e.Seq, e.Hash
	}
	r.res.AckedSeq = h.seq
	if first < 0 {
		return nil // all duplicates
	}
	skewed, latest, rewound := h.skewed, h.latest, h.rewound
	for i := first; i < len(r.evs); i++ {
		if len(gaps) > 0 && gaps[0].before == i {
			g := gaps[0]
			gaps = gaps[1:]
			ge := event.Event{
				Time: time.Unix(0, t.received).UTC(), Control: GapControl, Type: GapType, Severity: event.Warning,
				Attrs: event.Attrs{"agent": r.agent, "from_seq": g.from, "to_seq": g.to},
			}
			if err := s.planServer(t, &ge); err != nil {
				return err
			}
			s.log.Warn().Str("agent", r.agent).Uint64("from_seq", g.from).Uint64("to_seq", g.to).Msg("gap in agent's events")
			r.res.Gap = true
		}
		if skew := time.Duration(t.received - r.evs[i].Time.UnixNano()); skew > MaxClockLag || skew < -MaxClockLead {
			if !skewed {
				skewed = true
				ce := event.Event{
					Time: time.Unix(0, t.received).UTC(), Control: GapControl, Type: ClockSkewType, Severity: event.Warning,
					Attrs: event.Attrs{"agent": r.agent, "seq": r.evs[i].Seq, "time": r.evs[i].Time.UTC().Format(time.RFC3339Nano),
						"received": time.Unix(0, t.received).UTC().Format(time.RFC3339Nano), "skew": skew.Round(time.Second).String()},
				}
				if err := s.planServer(t, &ce); err != nil {
					return err
				}
				s.log.Warn().Str("agent", r.agent).Uint64("seq", r.evs[i].Seq).Dur("skew", skew).Msg("agent's clock is off")
			}
		} else {
			skewed = false
		}
		switch et := r.evs[i].Time.UnixNano(); {
		case latest != 0 && et < latest-int64(MaxClockRewind):
			if !rewound {
				rewound = true
				re := event.Event{
					Time: time.Unix(0, t.received).UTC(), Control: GapControl, Type: ClockRewoundType, Severity: event.Warning,
					Attrs: event.Attrs{"agent": r.agent, "seq": r.evs[i].Seq, "time": r.evs[i].Time.UTC().Format(time.RFC3339Nano),
						"latest_time": time.Unix(0, latest).UTC().Format(time.RFC3339Nano),
						"rewind":      time.Duration(latest - et).Round(time.Second).String()},
				}
				if err := s.planServer(t, &re); err != nil {
					return err
				}
				s.log.Warn().Str("agent", r.agent).Uint64("seq", r.evs[i].Seq).Msg("agent's event time ran back")
			}
		default:
			rewound = false
			latest = max(latest, et)
		}
		if err := s.add(t, &r.rows[i]); err != nil {
			return err
		}
		if t.planned == nil {
			t.planned = make(map[string]map[uint64]string)
		}
		if t.planned[r.agent] == nil {
			t.planned[r.agent] = make(map[uint64]string)
		}
		t.planned[r.agent][r.evs[i].Seq] = r.evs[i].Hash
		r.res.Stored++
	}
	t.heads[r.agent] = &head{seq: last, hash: lastHash, lastSeen: t.received, events: h.events + int64(r.res.Stored), skewed: skewed,
		latest: latest, rewound: rewound}
	r.res.AckedSeq = last
	return nil
}

// checkResent compares the events of r at or below the head (resends) with
// what is stored: an agent whose spool started over under the same id would
// otherwise have new events taken for duplicates, acknowledged and dropped.
// It reports false, with r.err set, if one differs.
func (s *core) checkResent(ctx context.Context, b backend, t *txn, r *request, headSeq uint64) (bool, error) {
	if len(r.evs) == 0 || r.evs[0].Seq > headSeq {
		return true, nil
	}
	lo, hi := r.evs[0].Seq, headSeq
	known := make(map[uint64]string)
	for seq, h := range t.planned[r.agent] {
		if seq >= lo && seq <= hi {
			known[seq] = h
		}
	}
	err := b.storedHashes(ctx, r.agent, lo, hi, func(seq uint64, hash []byte) {
		known[seq] = hex.EncodeToString(hash)
	})
	if err != nil {
		return false, fmt.Errorf("eventlog: read stored hashes: %w", err)
	}
	for i := range r.evs {
		e := &r.evs[i]
		if e.Seq > headSeq {
			break
		}
		if h, ok := known[e.Seq]; ok && h != e.Hash {
			r.err = fmt.Errorf("eventlog: agent %q seq %d: %w: already stored with another hash", r.agent, e.Seq, event.ErrChain)
			return false, nil
		}
	}
	return true, nil
}

// planServer seals e as the server stream's next event and plans its row.
func (s *core) planServer(t *txn, e *event.Event) error {
	h := s.headOf(t, event.ServerStream)
	e.Agent = event.ServerStream
	e.Seq = h.seq + 1
	if err := e.Seal(h.hash); err != nil {
		return fmt.Errorf("eventlog: server event: %w: %v", event.ErrInvalid, err)
	}
	attrs, err := s.checkStorable(e)
	if err != nil {
		return err
	}
	r := new(row)
	if err := r.set(e, attrs); err != nil {
		return err
	}
	if err := s.add(t, r); err != nil {
		return err
	}
	t.heads[event.ServerStream] = &head{seq: e.Seq, hash: e.Hash, lastSeen: t.received, events: h.events + 1}
	return nil
}
