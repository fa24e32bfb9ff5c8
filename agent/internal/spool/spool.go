// Package spool is the agent's durable, bounded event queue on bbolt: it
// numbers each event, links it into the agent's hash chain (shared/event)
// and fsyncs it before Emit returns, keeps it until the server acks it, and
// records as an event of its own how many events it had to refuse, at its
// bound or because the disk refused the write.
//
// Concurrent emitters share fsyncs: one writer goroutine takes every request
// waiting at the moment and commits them in one bbolt transaction (group
// commit), so throughput grows with the number of emitters while each Emit
// still returns only after its event is on disk.
package spool

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/mamori/mamori/shared/event"
)

// DefaultMaxBytes bounds the stored events when Options.MaxBytes is 0.
const DefaultMaxBytes int64 = 1 << 30

// resumePercent: after the spool was full, info events are accepted again
// once the stored bytes fall under this share of MaxBytes, so a spool at the
// edge does not flap between refusing and accepting on every ack.
const resumePercent = 90

// maxBatch caps how many emits share one transaction.
const maxBatch = 1024

// Errors returned by the spool; test with errors.Is.
var (
	// ErrFull is returned by Emit for an info event while the spool is at
	// its bound. The refusal is counted and reported later as agent.dropped.
	ErrFull = errors.New("spool: full")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrInUse is returned by Open when another process holds the spool:
	// an agent already runs with this state dir.
	ErrInUse = errors.New("spool: in use by another process")
)

// lockTimeout is how long Open waits for another holder to let go (an
// agent being restarted by its service manager).
var lockTimeout = 5 * time.Second

// DroppedType is the type of the event that reports refused events.
const DroppedType = "agent.dropped"

// Options configure a spool.
type Options struct {
	Agent    string // agent id put in each event
	MaxBytes int64  // bound on stored event bytes; default DefaultMaxBytes
	Log      zerolog.Logger
	Now      func() time.Time // default time.Now
}

// Stats describe the spool's content.
type Stats struct {
	Depth    uint64 `json:"depth"`     // events stored and not yet acked
	Bytes    int64  `json:"bytes"`     // their encoded size
	LastSeq  uint64 `json:"last_seq"`  // seq of the newest event
	AckedSeq uint64 `json:"acked_seq"` // every event <= this was acked and dropped
	Dropped  uint64 `json:"dropped"`   // info events refused and not yet reported
}

var (
	bucketEvents = []byte("events")
	bucketMeta   = []byte("meta")
	bucketState  = []byte("state") // one nested bucket per control's saved state

	keyLastTime = []byte("last_time")
	keyLastType = []byte("last_type")

	keyLastSeq      = []byte("last_seq")
	keyLastHash     = []byte("last_hash")
	keyAcked        = []byte("acked_seq")
	keyBytes        = []byte("bytes")
	keyDropped      = []byte("dropped")
	keyWriteFailed  = []byte("dropped_write_failed")
	keyDroppedSince = []byte("dropped_since")
	keyDroppedUntil = []byte("dropped_until")
)

// state is the spool's metadata; it is persisted in the meta bucket in the
// same transaction as the events it describes.
type state struct {
	lastSeq      uint64
	lastHash     string
	acked        uint64
	bytes        int64
	dropped      uint64 // refused events not yet reported, writeFailed included
	writeFailed  uint64 // of those, refused because a commit failed (disk full)
	droppedSince time.Time
	droppedUntil time.Time
	lastTime     time.Time // of the newest event appended
	lastType     string
}

// Previous describes the newest event stored before this Open: the agent's
// last sign of life before it stopped (or was killed).
type Previous struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Type string    `json:"type"`
}

// State is a change to a control's saved state, committed in the same
// transaction as the event it goes with (EmitState), so the saved state
// never runs ahead of, or lags behind, the events that describe it. A nil
// value deletes the key.
type State struct {
	Bucket string
	Puts   map[string][]byte
}

type request struct {
	e     event.Event
	state *State
	done  chan error
}

// Spool is a durable event queue. All methods are safe for concurrent use.
type Spool struct {
	db    *bolt.DB
	opt   Options
	reqs  chan request
	wake  chan struct{}
	quit  chan struct{}
	ended chan struct{}

	prev Previous // newest event before Open

	closeMu sync.RWMutex
	writeMu sync.Mutex // serialises write transactions with the in-memory state they update
	mu      sync.Mutex // guards st and closed
	st      state
	closed  bool
}

// Open opens or creates the spool file at path (mode 0600). Reopening
// resumes the sequence, the chain and the ack point where they were.
func Open(path string, opt Options) (*Spool, error) {
	if opt.Agent == "" {
		return nil, errors.New("spool: agent id missing")
	}
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = DefaultMaxBytes
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        lockTimeout, // another agent holding the file
		NoFreelistSync: true,        // the freelist is rebuilt on open; fewer pages to fsync per commit
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrInUse, path)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	s := &Spool{
		db: db, opt: opt,
		reqs:  make(chan request, maxBatch),
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		ended: make(chan struct{}),
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketEvents); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketState); err != nil {
			return err
		}
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return s.st.load(m)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	s.prev = Previous{Seq: s.st.lastSeq, Time: s.st.lastTime, Type: s.st.lastType}
	go s.writer()
	opt.Log.Debug().Uint64("last_seq", s.st.lastSeq).Uint64("acked_seq", s.st.acked).
		Int64("bytes", s.st.bytes).Uint64("dropped", s.st.dropped).Msg("spool opened")
	return s, nil
}

func (st *state) load(m *bolt.Bucket) error {
	u := func(k []byte) (uint64, error) {
		v := m.Get(k)
		if v == nil {
			return 0, nil
		}
		if len(v) != 8 {
			return 0, fmt.Errorf("meta %s: %d bytes, want 8", k, len(v))
		}
		return binary.BigEndian.Uint64(v), nil
	}
	t := func(k []byte) (time.Time, error) {
		v := m.Get(k)
		if v == nil {
			return time.Time{}, nil
		}
		return time.Parse(time.RFC3339Nano, string(v))
	}
	var err error
	var b uint64
	if st.lastSeq, err = u(keyLastSeq); err != nil {
		return err
	}
	if st.acked, err = u(keyAcked); err != nil {
		return err
	}
	if b, err = u(keyBytes); err != nil {
		return err
	}
	st.bytes = int64(b)
	if st.dropped, err = u(keyDropped); err != nil {
		return err
	}
	if st.writeFailed, err = u(keyWriteFailed); err != nil {
		return err
	}
	if st.droppedSince, err = t(keyDroppedSince); err != nil {
		return err
	}
	if st.droppedUntil, err = t(keyDroppedUntil); err != nil {
		return err
	}
	st.lastHash = string(m.Get(keyLastHash))
	if st.lastTime, err = t(keyLastTime); err != nil {
		return err
	}
	st.lastType = string(m.Get(keyLastType))
	if st.acked > st.lastSeq {
		return fmt.Errorf("meta: acked seq %d beyond last seq %d", st.acked, st.lastSeq)
	}
	return nil
}

func (st *state) save(m *bolt.Bucket) error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{keyLastSeq, st.lastSeq}, {keyAcked, st.acked}, {keyBytes, uint64(st.bytes)}, {keyDropped, st.dropped}, {keyWriteFailed, st.writeFailed}} {
		if err := m.Put(kv.k, u64(kv.v)); err != nil {
			return err
		}
	}
	if err := m.Put(keyLastHash, []byte(st.lastHash)); err != nil {
		return err
	}
	if err := m.Put(keyLastType, []byte(st.lastType)); err != nil {
		return err
	}
	for _, kv := range []struct {
		k []byte
		v time.Time
	}{{keyDroppedSince, st.droppedSince}, {keyDroppedUntil, st.droppedUntil}, {keyLastTime, st.lastTime}} {
		var err error
		if kv.v.IsZero() {
			err = m.Delete(kv.k)
		} else {
			err = m.Put(kv.k, []byte(kv.v.UTC().Format(time.RFC3339Nano)))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// Emit makes e durable as the agent's next event: it sets Agent, Seq, Time
// (when zero), Prev and Hash, and returns once the commit is fsync'd. It
// implements controls.Emitter.
//
// While the spool is full, info events are refused with ErrFull (and
// counted); warning and violation events are always stored, because they
// are the evidence an audit needs most and are rare compared with routine
// info events, so they cannot fill a disk on their own. When the disk
// refuses the commit (full), Emit returns that error, the event takes no
// seq, and it is counted as dropped too, so the server learns of it.
func (s *Spool) Emit(ctx context.Context, e event.Event) error {
	return s.EmitState(ctx, e, nil)
}

// EmitState is Emit that also commits st (may be nil) in the same
// transaction as e: both are stored or neither is. A refused event
// (ErrFull) leaves the state unchanged.
func (s *Spool) EmitState(ctx context.Context, e event.Event, st *State) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool: emit: %w", err)
	}
	if st != nil && st.Bucket == "" {
		return errors.New("spool: emit: state without a bucket name")
	}
	r := request{e: e, state: st, done: make(chan error, 1)}
	// closeMu held for reading while queueing: Close cannot slip between the
	// check and the send, so every queued request is answered.
	s.closeMu.RLock()
	if s.isClosed() {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- r:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return fmt.Errorf("spool: emit: %w", ctx.Err())
	}
	// Once queued the request is committed or failed within one fsync; the
	// caller waits for the verdict so that it never mistakes a stored event
	// for a lost one.
	return <-r.done
}

// writer is the one goroutine that appends: it takes every request waiting
// and commits them together.
func (s *Spool) writer() {
	defer close(s.ended)
	batch := make([]request, 0, maxBatch)
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.quit:
			s.failPending()
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

func (s *Spool) failPending() {
	for {
		select {
		case r := <-s.reqs:
			r.done <- ErrClosed
		default:
			return
		}
	}
}

// full reports whether an info event must be refused at st.
func (s *Spool) full(st *state) bool {
	if st.bytes >= s.opt.MaxBytes {
		return true
	}
	return st.dropped > 0 && st.bytes >= s.opt.MaxBytes*resumePercent/100
}

type record struct {
	e   event.Event
	raw []byte
}

func (s *Spool) commit(batch []request) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()

	now := s.opt.Now()
	errs := make([]error, len(batch))
	recs := make([]record, 0, len(batch)+1)
	appendEvent := func(e event.Event) error {
		e.Agent = s.opt.Agent
		e.Seq = st.lastSeq + 1
		if e.Time.IsZero() {
			e.Time = now
		}
		if err := e.Seal(st.lastHash); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if err := e.Validate(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		raw, err := json.Marshal(&e)
		if err != nil {
			return fmt.Errorf("spool: encode: %w", err)
		}
		recs = append(recs, record{e, raw})
		st.lastSeq, st.lastHash = e.Seq, e.Hash
		st.lastTime, st.lastType = e.Time, e.Type
		st.bytes += int64(len(raw))
		return nil
	}
	refused := 0
	var states []*State
	for i, r := range batch {
		if r.e.Severity == event.Info && s.full(&st) {
			if st.dropped == 0 {
				st.droppedSince = now
			}
			st.dropped++
			st.droppedUntil = now
			errs[i] = ErrFull
			refused++
			continue
		}
		if st.dropped > 0 && !s.full(&st) {
			// Space is back: say how many were refused before anything else.
			d := event.Event{Time: now, Control: "agent", Type: DroppedType, Severity: event.Warning,
				Attrs: event.Attrs{
					"count": st.dropped,
					"since": st.droppedSince.UTC().Format(time.RFC3339Nano),
					"until": st.droppedUntil.UTC().Format(time.RFC3339Nano),
				}}
			if st.writeFailed > 0 {
				// Any severity: the disk refused them, not the bound.
				d.Attrs["write_failed"] = st.writeFailed
			}
			if err := appendEvent(d); err != nil {
				errs[i] = err // cannot happen for this fixed shape; keep counting
			} else {
				st.dropped, st.writeFailed, st.droppedSince, st.droppedUntil = 0, 0, time.Time{}, time.Time{}
			}
		}
		errs[i] = appendEvent(r.e)
		if errs[i] == nil && r.state != nil {
			states = append(states, r.state)
		}
	}
	if len(recs) == 0 && refused == 0 {
		for i, r := range batch {
			r.done <- errs[i]
		}
		return
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		for _, rec := range recs {
			if err := b.Put(u64(rec.e.Seq), rec.raw); err != nil {
				return err
			}
		}
		for _, sv := range states {
			if err := putState(tx, sv); err != nil {
				return err
			}
		}
		return st.save(tx.Bucket(bucketMeta))
	})
	if err != nil {
		err = fmt.Errorf("spool: commit: %w", err)
		s.opt.Log.Error().Err(err).Int("events", len(recs)).Msg("spool commit failed")
		s.countFailed(len(batch), now)
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	for i, r := range batch {
		r.done <- errs[i]
	}
	if len(recs) > 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// countFailed counts n events whose commit failed as dropped. Nothing of
// the failed transaction is kept, so the count starts from the committed
// state. Saving it is worth a try: the meta page may fit in pages the file
// already has where the events did not. If that fails too, the count lives
// in memory and is saved with the next commit.
func (s *Spool) countFailed(n int, now time.Time) {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	if st.dropped == 0 {
		st.droppedSince = now
	}
	st.dropped += uint64(n)
	st.writeFailed += uint64(n)
	st.droppedUntil = now
	if err := s.db.Update(func(tx *bolt.Tx) error { return st.save(tx.Bucket(bucketMeta)) }); err != nil {
		s.opt.Log.Warn().Err(err).Uint64("dropped", st.dropped).Msg("spool: dropped count kept in memory only")
	}
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
}

func putState(tx *bolt.Tx, sv *State) error {
	b, err := tx.Bucket(bucketState).CreateBucketIfNotExists([]byte(sv.Bucket))
	if err != nil {
		return err
	}
	for k, v := range sv.Puts {
		if v == nil {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// SaveState commits st without an event, for state no event describes
// (a baseline taken when a folder is first watched, a folder forgotten).
func (s *Spool) SaveState(st State) error {
	if st.Bucket == "" {
		return errors.New("spool: save state: no bucket name")
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.isClosed() {
		return ErrClosed
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return putState(tx, &st) }); err != nil {
		return fmt.Errorf("spool: save state %s: %w", st.Bucket, err)
	}
	return nil
}

// LoadState calls fn for every key of the named state bucket in key order;
// fn must copy what it keeps. A bucket never saved has no keys.
func (s *Spool) LoadState(bucket string, fn func(k, v []byte) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(fn)
	})
	if err != nil {
		return fmt.Errorf("spool: load state %s: %w", bucket, err)
	}
	return nil
}

// Previous is the newest event stored before this Open (zero for a new
// spool): when the agent was last known to run.
func (s *Spool) Previous() Previous { return s.prev }

// Peek returns up to max of the oldest unacked events, in seq order.
func (s *Spool) Peek(max int) ([]event.Event, error) { return s.PeekAfter(0, max) }

// PeekAfter is Peek starting after seq (or after the ack point, whichever is
// later), so a shipper topping up a batch reads only what is new.
func (s *Spool) PeekAfter(seq uint64, n int) ([]event.Event, error) {
	if n <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	from, closed := s.st.acked+1, s.closed
	s.mu.Unlock()
	from = max(from, seq+1)
	if closed {
		return nil, ErrClosed
	}
	var out []event.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(u64(from)); k != nil && len(out) < n; k, v = c.Next() {
			var e event.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode seq %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: peek: %w", err)
	}
	// An Ack between reading the ack point and the View may have removed
	// the head already: drop what it covers so callers never resend.
	s.mu.Lock()
	acked := s.st.acked
	s.mu.Unlock()
	for len(out) > 0 && out[0].Seq <= acked {
		out = out[1:]
	}
	return out, nil
}

// Ack drops every event with seq <= seq, durably. Acking at or below the
// current ack point does nothing; acking beyond the last seq is an error
// and changes nothing.
func (s *Spool) Ack(seq uint64) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	st, closed := s.st, s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if seq <= st.acked {
		return nil
	}
	if seq > st.lastSeq {
		return fmt.Errorf("spool: ack %d beyond last seq %d", seq, st.lastSeq)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		// seqs are contiguous, so the keys to drop are known without a cursor.
		for q := st.acked + 1; q <= seq; q++ {
			k := u64(q)
			st.bytes -= int64(len(b.Get(k)))
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if st.bytes < 0 {
			st.bytes = 0
		}
		st.acked = seq
		return st.save(tx.Bucket(bucketMeta))
	})
	if err != nil {
		return fmt.Errorf("spool: ack %d: %w", seq, err)
	}
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	return nil
}

func (s *Spool) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Stats returns the spool's current figures.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Depth: s.st.lastSeq - s.st.acked, Bytes: s.st.bytes,
		LastSeq: s.st.lastSeq, AckedSeq: s.st.acked, Dropped: s.st.dropped,
	}
}

// Wait returns a channel that receives (coalesced, never blocking the
// writer) after new events were appended.
func (s *Spool) Wait() <-chan struct{} { return s.wake }

// Close stops accepting events, fails those still queued with ErrClosed
// and closes the file.
func (s *Spool) Close() error {
	s.closeMu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.closeMu.Unlock()
	close(s.quit)
	<-s.ended
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}
