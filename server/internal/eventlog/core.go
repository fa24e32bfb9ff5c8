package eventlog

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/shared/event"
)

// maxGroupEvents bounds one group commit: large enough to amortise the fsync
// over many batches, small enough to keep commit latency in milliseconds.
const maxGroupEvents = 8192

// core is what every backend shares: validation, the request queue, group
// commit planning (dedup, chain checks, gap events, Merkle hashes; see
// writer.go), the committed heads and frontier, and the reads, which are
// written once in SQL both SQLite and PostgreSQL accept. A backend embeds it,
// sets rdb and bind, and runs loop with its own backend on one goroutine.
type core struct {
	log  zerolog.Logger
	now  func() time.Time
	rdb  *sql.DB               // read pool
	bind func(q string) string // rewrites the ? placeholders for the backend
	// readTx begins a Query's read transaction: one snapshot for the plan
	// and the page.
	readTx *sql.TxOptions
	// noNUL: the backend's text columns cannot hold U+0000 (PostgreSQL).
	noNUL bool
	// keys: the query indexes are key runs behind a watermark (SQLite,
	// indexer.go, keyruns.go), not indexes on events.
	keys bool
	// ranges: control and type are indexed by range keys the writer
	// commits (event_ranges, SQLite), not by indexes on events.
	ranges bool
	// records: the log may hold records (records.go, SQLite); recFrom is
	// the first record's log index, noRecords before one.
	records bool
	recFrom atomic.Int64

	mu     sync.RWMutex // held shared while sending on reqs, exclusively to close it
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the writer has exited

	size   atomic.Int64 // committed tree size
	agents atomic.Int64 // committed number of streams

	// Owned by the writer goroutine.
	heads map[string]*head
	front frontier
	// rebuilt lists streams whose head checkHeads rebuilt, to record.
	rebuilt []string
	// dirty: streams whose head checkHeads rebuilt in memory only. The next
	// commit writes them (a stream no longer in heads: deletes its row),
	// which is the commit of the rebuild's record, so the table is never
	// fixed without the record of it.
	dirty map[string]bool
	tail  []byte       // stored Merkle hashes of the last committed record
	halt  atomic.Value // error: set once the database was found rolled back
	// epoch is written with every commit (fence.go); reload has the writer
	// reload its state before the next group, after a claim.
	epoch  atomic.Int64
	reload atomic.Bool
	// follow is the read side's view of a deposed store (follow.go).
	follow follower
}

func newCore(log zerolog.Logger) core {
	return core{
		log:   log.With().Str("component", "eventlog").Logger(),
		now:   time.Now,
		reqs:  make(chan *request, 256),
		done:  make(chan struct{}),
		heads: make(map[string]*head),
	}
}

// backend is the part of a group commit that touches the database. Its
// methods run on the writer goroutine only.
type backend interface {
	// prepare runs before each group is planned; it may reload heads and
	// frontier (after a lost connection).
	prepare(ctx context.Context) error
	// storedHashes calls fn with the seq and raw hash of each stored event of
	// agent with seq in [lo, hi].
	storedHashes(ctx context.Context, agent string, lo, hi uint64, fn func(seq uint64, hash []byte)) error
	// write runs t in one transaction: t.rows with log indexes first,
	// first+1, ... and their t.merkle, the heads in t.heads, t.cps.
	write(ctx context.Context, first int64, t *txn) error
}

// head is the writer's view of one stream's last stored event.
type head struct {
	seq      uint64
	hash     string // hex
	lastSeen int64
	events   int64
	// skewed: the stream's last event was stamped far from its received
	// time and a server.clock_skew event said so (one per episode; memory
	// only, so a restart may say it once more).
	skewed bool
	// latest is the latest event time of the stream seen since start
	// (unix ns, 0 = none yet); rewound: a ClockRewoundType episode is on.
	latest  int64
	rewound bool
}

// request is one Append, AppendServer or PutCheckpoint waiting for the writer.
type request struct {
	agent  string
	evs    []event.Event // validated agent events
	rows   []row         // their column values
	server *event.Event  // or one server-stream event to seal
	cp     *Checkpoint   // or a checkpoint to store
	res    Result
	err    error
	done   chan struct{}
}

// load reads, through db, the heads, the tree size and the Merkle frontier.
func (s *core) load(ctx context.Context, db dbtx) error {
	rows, err := db.QueryContext(ctx, `SELECT agent, seq, hash, last_seen, events FROM heads`)
	if err != nil {
		return fmt.Errorf("eventlog: load heads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			agent string
			seq   int64
			hash  []byte
			h     head
		)
		if err := rows.Scan(&agent, &seq, &hash, &h.lastSeen, &h.events); err != nil {
			return fmt.Errorf("eventlog: load heads: %w", err)
		}
		h.seq, h.hash = uint64(seq), hex.EncodeToString(hash)
		s.heads[agent] = &h
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("eventlog: load heads: %w", err)
	}
	rows.Close()
	if s.records {
		if err := s.loadRecordsFrom(ctx, db); err != nil {
			return err
		}
	}
	if err := s.checkHeads(ctx, db); err != nil {
		return err
	}
	var n int64
	if err := db.QueryRowContext(ctx, s.sizeSQL()).Scan(&n); err != nil {
		return fmt.Errorf("eventlog: load tree size: %w", err)
	}
	levels, indexes := frontierIndexes(n)
	hashes, err := s.readHashes(ctx, db, n, indexes)
	if err != nil {
		return fmt.Errorf("eventlog: load merkle frontier: %w", err)
	}
	s.front = frontier{n: n}
	for i, level := range levels {
		s.front.set(level, n>>uint(level)-1, hashes[i])
	}
	if err := s.loadTail(ctx, db, n); err != nil {
		return err
	}
	s.size.Store(n)
	s.agents.Store(int64(len(s.heads)))
	return nil
}

// Append implements Store.
func (s *core) Append(ctx context.Context, agent string, evs []event.Event) (Result, error) {
	if agent == event.ServerStream {
		return Result{}, fmt.Errorf("eventlog: agent id %q is reserved for the server stream: %w", agent, event.ErrWrongAgent)
	}
	rows := make([]row, len(evs))
	for i := range evs {
		e := &evs[i]
		if e.Agent != agent {
			return Result{}, fmt.Errorf("eventlog: seq %d: %w: %q, batch is for %q", e.Seq, event.ErrWrongAgent, e.Agent, agent)
		}
		attrs, err := s.checkStorable(e)
		if err != nil {
			return Result{}, err
		}
		if i > 0 && e.Seq <= evs[i-1].Seq {
			return Result{}, fmt.Errorf("eventlog: seq %d after %d: %w: seqs must ascend within a batch", e.Seq, evs[i-1].Seq, event.ErrSeq)
		}
		if err := rows[i].set(e, attrs); err != nil {
			return Result{}, err
		}
	}
	if len(evs) == 0 {
		h, err := s.Head(ctx, agent)
		return Result{AckedSeq: h.Seq}, err
	}
	r := &request{agent: agent, evs: evs, rows: rows, done: make(chan struct{})}
	if err := s.submit(ctx, r); err != nil {
		return Result{}, err
	}
	return r.res, r.err
}

// checkStorable validates e and the few things the backends cannot
// represent, so that such an event is refused alone and never fails a group.
// It returns the attrs' canonical encoding, which the row stores.
func (s *core) checkStorable(e *event.Event) ([]byte, error) {
	attrs, err := e.ValidateAttrs()
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	if e.Seq > math.MaxInt64 {
		return nil, fmt.Errorf("eventlog: seq %d: %w: seq above 2^63-1", e.Seq, event.ErrInvalid)
	}
	if ns := e.Time.UnixNano(); !time.Unix(0, ns).Equal(e.Time) {
		return nil, fmt.Errorf("eventlog: seq %d: %w: time %s outside years 1678-2262", e.Seq, event.ErrInvalid, e.Time.Format(time.RFC3339))
	}
	if s.noNUL {
		for _, v := range [...]string{e.Control, e.Type, e.User, e.Process, e.Object, e.RegisterID} {
			if strings.IndexByte(v, 0) >= 0 {
				return nil, fmt.Errorf("eventlog: seq %d: %w: NUL character in a text field", e.Seq, event.ErrInvalid)
			}
		}
	}
	return attrs, nil
}

// AppendServer implements Store.
func (s *core) AppendServer(ctx context.Context, e event.Event) (event.Event, error) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	r := &request{agent: event.ServerStream, server: &e, done: make(chan struct{})}
	if err := s.submit(ctx, r); err != nil {
		return event.Event{}, err
	}
	if r.err != nil {
		return event.Event{}, r.err
	}
	return *r.server, nil
}

// submit queues r for the writer and waits for its commit. Once queued, r is
// always answered: the writer drains the queue before it exits.
func (s *core) submit(ctx context.Context, r *request) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- r:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return fmt.Errorf("eventlog: %w", ctx.Err())
	}
	<-r.done
	return nil
}

// closeQueue stops taking requests and waits until the writer has answered
// every queued one and returned.
func (s *core) closeQueue() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	return nil
}

// Head implements Store.
func (s *core) Head(ctx context.Context, agent string) (Head, error) {
	var (
		h         = Head{Agent: agent}
		seq, seen int64
		hash      []byte
	)
	err := s.rdb.QueryRowContext(ctx, s.bind(`SELECT seq, hash, last_seen, events FROM heads WHERE agent = ?`), agent).
		Scan(&seq, &hash, &seen, &h.Events)
	if errors.Is(err, sql.ErrNoRows) {
		return Head{}, nil
	}
	if err != nil {
		return Head{}, fmt.Errorf("eventlog: head %q: %w", agent, err)
	}
	h.Seq, h.Hash, h.LastSeen = uint64(seq), hex.EncodeToString(hash), time.Unix(0, seen).UTC()
	return h, nil
}

// Agents implements Store.
func (s *core) Agents(ctx context.Context) ([]Head, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT agent, seq, hash, last_seen, events FROM heads ORDER BY agent`)
	if err != nil {
		return nil, fmt.Errorf("eventlog: agents: %w", err)
	}
	defer rows.Close()
	var out []Head
	for rows.Next() {
		var (
			h         Head
			seq, seen int64
			hash      []byte
		)
		if err := rows.Scan(&h.Agent, &seq, &hash, &seen, &h.Events); err != nil {
			return nil, fmt.Errorf("eventlog: agents: %w", err)
		}
		h.Seq, h.Hash, h.LastSeen = uint64(seq), hex.EncodeToString(hash), time.Unix(0, seen).UTC()
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("eventlog: agents: %w", err)
	}
	return out, nil
}

// TreeSize implements Store.
func (s *core) TreeSize(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("eventlog: %w", err)
	}
	return s.readSize(ctx)
}

// ReadHashes implements Store and tlog.HashReader over committed hashes.
func (s *core) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	ctx := context.Background()
	size, err := s.readSize(ctx)
	if err != nil {
		return nil, err
	}
	hs, err := s.readHashes(ctx, s.rdb, size, indexes)
	if errors.Is(err, ErrOutOfRange) && s.epoch.Load() == deposedEpoch {
		// A standby asked for hashes of the writer's newer checkpoint.
		if size, err = s.readSizeAtLeast(ctx, size+1); err != nil {
			return nil, err
		}
		return s.readHashes(ctx, s.rdb, size, indexes)
	}
	return hs, err
}

// TreeHash returns the Merkle root of the first n stored events.
func (s *core) TreeHash(ctx context.Context, n int64) (tlog.Hash, error) {
	size, err := s.readSizeAtLeast(ctx, n)
	if err != nil {
		return tlog.Hash{}, err
	}
	if n < 0 || n > size {
		return tlog.Hash{}, fmt.Errorf("%w: tree size %d, have %d", ErrOutOfRange, n, size)
	}
	return tlog.TreeHash(n, tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return s.readHashes(ctx, s.rdb, size, indexes)
	}))
}

// readHashes reads stored hashes from the merkle column of a tree of size n.
func (s *core) readHashes(ctx context.Context, db dbtx, n int64, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	records := make(map[int64][]int, len(indexes)) // record -> positions in indexes
	var recs []int64
	for i, x := range indexes {
		if x < 0 {
			return nil, fmt.Errorf("%w: index %d", ErrOutOfRange, x)
		}
		rec, _ := hashLocation(x)
		if rec >= n {
			return nil, fmt.Errorf("%w: index %d needs record %d, tree size %d", ErrOutOfRange, x, rec, n)
		}
		if _, ok := records[rec]; !ok {
			recs = append(recs, rec)
		}
		records[rec] = append(records[rec], i)
	}
	found := 0
	// The boundary as db sees it: a deposed store follows another writer's.
	from := noRecords
	if s.records {
		var err error
		if from, err = readRecordsFrom(ctx, db); err != nil {
			return nil, err
		}
	}
	if from != noRecords {
		// Records' hashes, one lookup each: a proof needs a few dozen.
		var rows []int64
		for _, rec := range recs {
			if rec < from {
				rows = append(rows, rec)
				continue
			}
			merkle, err := recordMerkle(ctx, db, rec)
			if err != nil {
				return nil, fmt.Errorf("eventlog: read hashes: %w", err)
			}
			for _, i := range records[rec] {
				_, level := hashLocation(indexes[i])
				if len(merkle) < (level+1)*tlog.HashSize {
					return nil, fmt.Errorf("eventlog: record %d has %d merkle bytes, need level %d", rec, len(merkle), level)
				}
				copy(out[i][:], merkle[level*tlog.HashSize:])
				found++
			}
		}
		recs = rows
	}
	const chunk = 500 // well under SQLite's (and PostgreSQL's) bound on parameters
	for len(recs) > 0 {
		part := recs[:min(chunk, len(recs))]
		recs = recs[len(part):]
		args := make([]any, len(part))
		for i, r := range part {
			args[i] = r
		}
		q := `SELECT idx, merkle FROM events WHERE idx IN (?` + strings.Repeat(",?", len(part)-1) + `)`
		k, err := readMerkle(ctx, db, s.bind(q), args, indexes, records, out)
		if err != nil {
			return nil, err
		}
		found += k
	}
	if found != len(indexes) {
		return nil, fmt.Errorf("eventlog: read hashes: %d of %d found", found, len(indexes))
	}
	return out, nil
}

func readMerkle(ctx context.Context, db dbtx, q string, args []any, indexes []int64, records map[int64][]int, out []tlog.Hash) (int, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("eventlog: read hashes: %w", err)
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var (
			rec    int64
			merkle []byte
		)
		if err := rows.Scan(&rec, &merkle); err != nil {
			return 0, fmt.Errorf("eventlog: read hashes: %w", err)
		}
		for _, i := range records[rec] {
			_, level := hashLocation(indexes[i])
			if len(merkle) < (level+1)*tlog.HashSize {
				return 0, fmt.Errorf("eventlog: record %d has %d merkle bytes, need level %d", rec, len(merkle), level)
			}
			copy(out[i][:], merkle[level*tlog.HashSize:])
			found++
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("eventlog: read hashes: %w", err)
	}
	return found, nil
}
