package eventlog

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/tlog"
	_ "modernc.org/sqlite" // registers driver "sqlite"

	"github.com/mamori/mamori/shared/event"
)

// maxGroupEvents bounds one group commit: large enough to amortise the fsync
// over many batches, small enough to keep commit latency in milliseconds.
const maxGroupEvents = 8192

// SQLite is the SQLite (modernc.org/sqlite) Store. One writer goroutine owns
// the single write connection and commits queued batches together (group
// commit, synchronous=FULL in WAL mode); reads go through a read-only pool.
type SQLite struct {
	path string
	log  zerolog.Logger
	wdb  *sql.DB // write pool: one connection owned by the writer goroutine
	rdb  *sql.DB // read-only pool

	mu     sync.RWMutex // held shared while sending on reqs, exclusively to close it
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the writer has exited

	size   atomic.Int64 // committed tree size
	agents atomic.Int64 // committed number of streams

	now func() time.Time

	// Owned by the writer goroutine.
	heads map[string]*head
	front frontier
}

// head is the writer's view of one stream's last stored event.
type head struct {
	seq      uint64
	hash     string // hex
	lastSeen int64
	events   int64
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

// OpenSQLite opens (creating and migrating if needed) the event store at path.
func OpenSQLite(ctx context.Context, path string, log zerolog.Logger) (*SQLite, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	base := sqliteURI(abs)
	wdb, err := sql.Open("sqlite", base+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_pragma=cache_size(-65536)")
	if err != nil {
		return nil, fmt.Errorf("eventlog: open %s: %w", abs, err)
	}
	// The writer goroutine holds one connection for the store's lifetime; the
	// other serves reads at open. Nothing else writes.
	wdb.SetMaxOpenConns(2)
	wdb.SetMaxIdleConns(2)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	s := &SQLite{
		path:  abs,
		log:   log.With().Str("component", "eventlog").Logger(),
		wdb:   wdb,
		reqs:  make(chan *request, 256),
		done:  make(chan struct{}),
		now:   time.Now,
		heads: make(map[string]*head),
	}
	fail := func(err error) (*SQLite, error) {
		if s.rdb != nil {
			s.rdb.Close()
		}
		wdb.Close()
		return nil, err
	}
	from, to, err := migrate(ctx, wdb)
	if err != nil {
		return fail(err)
	}
	if from != to {
		s.log.Info().Int("from", from).Int("to", to).Msg("schema migrated")
	}
	rdb, err := sql.Open("sqlite", base+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return fail(fmt.Errorf("eventlog: open %s read-only: %w", abs, err))
	}
	s.rdb = rdb
	rdb.SetMaxOpenConns(8)
	rdb.SetMaxIdleConns(8)
	if err := s.load(ctx); err != nil {
		return fail(err)
	}
	conn, err := wdb.Conn(ctx)
	if err != nil {
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	ready := make(chan error, 1)
	go s.writer(conn, ready)
	if err := <-ready; err != nil {
		return fail(err)
	}
	s.log.Info().Str("path", abs).Int64("events", s.size.Load()).Int64("streams", s.agents.Load()).Msg("event store open")
	return s, nil
}

// sqliteURI turns an absolute path into an SQLite file: URI (also for
// Windows drive paths, which become file:///C:/...).
func sqliteURI(abs string) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return "file://" + (&url.URL{Path: p}).EscapedPath()
}

// load reads the heads, the tree size and the Merkle frontier.
func (s *SQLite) load(ctx context.Context) error {
	rows, err := s.wdb.QueryContext(ctx, `SELECT agent, seq, hash, last_seen, events FROM heads`)
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
	var n int64
	if err := s.wdb.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx)+1, 0) FROM events`).Scan(&n); err != nil {
		return fmt.Errorf("eventlog: load tree size: %w", err)
	}
	levels, indexes := frontierIndexes(n)
	hashes, err := readHashes(ctx, s.wdb, n, indexes)
	if err != nil {
		return fmt.Errorf("eventlog: load merkle frontier: %w", err)
	}
	s.front = frontier{n: n}
	for i, level := range levels {
		s.front.set(level, n>>uint(level)-1, hashes[i])
	}
	s.size.Store(n)
	s.agents.Store(int64(len(s.heads)))
	return nil
}

// Append implements Store.
func (s *SQLite) Append(ctx context.Context, agent string, evs []event.Event) (Result, error) {
	if agent == event.ServerStream {
		return Result{}, fmt.Errorf("eventlog: agent id %q is reserved for the server stream: %w", agent, event.ErrWrongAgent)
	}
	rows := make([]row, len(evs))
	for i := range evs {
		e := &evs[i]
		if e.Agent != agent {
			return Result{}, fmt.Errorf("eventlog: seq %d: %w: %q, batch is for %q", e.Seq, event.ErrWrongAgent, e.Agent, agent)
		}
		if err := checkStorable(e); err != nil {
			return Result{}, err
		}
		if i > 0 && e.Seq <= evs[i-1].Seq {
			return Result{}, fmt.Errorf("eventlog: seq %d after %d: %w: seqs must ascend within a batch", e.Seq, evs[i-1].Seq, event.ErrSeq)
		}
		if err := rows[i].set(e); err != nil {
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

// checkStorable validates e and the few things SQLite cannot represent.
func checkStorable(e *event.Event) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("eventlog: %w", err)
	}
	if e.Seq > math.MaxInt64 {
		return fmt.Errorf("eventlog: seq %d: %w: seq above 2^63-1", e.Seq, event.ErrInvalid)
	}
	if ns := e.Time.UnixNano(); !time.Unix(0, ns).Equal(e.Time) {
		return fmt.Errorf("eventlog: seq %d: %w: time %s outside years 1678-2262", e.Seq, event.ErrInvalid, e.Time.Format(time.RFC3339))
	}
	return nil
}

// AppendServer implements Store.
func (s *SQLite) AppendServer(ctx context.Context, e event.Event) (event.Event, error) {
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
func (s *SQLite) submit(ctx context.Context, r *request) error {
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

// Close implements Store: queued batches are committed (or answered with an
// error), then the databases are closed.
func (s *SQLite) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	err := errors.Join(s.rdb.Close(), s.wdb.Close())
	if err != nil {
		return fmt.Errorf("eventlog: close: %w", err)
	}
	s.log.Info().Int64("events", s.size.Load()).Msg("event store closed")
	return nil
}

// Head implements Store.
func (s *SQLite) Head(ctx context.Context, agent string) (Head, error) {
	var (
		h         = Head{Agent: agent}
		seq, seen int64
		hash      []byte
	)
	err := s.rdb.QueryRowContext(ctx, `SELECT seq, hash, last_seen, events FROM heads WHERE agent = ?`, agent).
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
func (s *SQLite) Agents(ctx context.Context) ([]Head, error) {
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
func (s *SQLite) TreeSize(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("eventlog: %w", err)
	}
	return s.size.Load(), nil
}

// ReadHashes implements Store and tlog.HashReader over committed hashes.
func (s *SQLite) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	return readHashes(context.Background(), s.rdb, s.size.Load(), indexes)
}

// TreeHash returns the Merkle root of the first n stored events.
func (s *SQLite) TreeHash(ctx context.Context, n int64) (tlog.Hash, error) {
	size := s.size.Load()
	if n < 0 || n > size {
		return tlog.Hash{}, fmt.Errorf("%w: tree size %d, have %d", ErrOutOfRange, n, size)
	}
	return tlog.TreeHash(n, tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return readHashes(ctx, s.rdb, size, indexes)
	}))
}

// readHashes reads stored hashes from the merkle column of a tree of size n.
func readHashes(ctx context.Context, db *sql.DB, n int64, indexes []int64) ([]tlog.Hash, error) {
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
	const chunk = 500 // well under SQLite's bound on parameters
	for len(recs) > 0 {
		part := recs[:min(chunk, len(recs))]
		recs = recs[len(part):]
		args := make([]any, len(part))
		for i, r := range part {
			args[i] = r
		}
		q := `SELECT idx, merkle FROM events WHERE idx IN (?` + strings.Repeat(",?", len(part)-1) + `)`
		k, err := readMerkle(ctx, db, q, args, indexes, records, out)
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

func readMerkle(ctx context.Context, db *sql.DB, q string, args []any, indexes []int64, records map[int64][]int, out []tlog.Hash) (int, error) {
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

// Stats implements Store.
func (s *SQLite) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, fmt.Errorf("eventlog: %w", err)
	}
	st := Stats{Events: s.size.Load(), Agents: s.agents.Load()}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(s.path + suffix); err == nil {
			st.BytesOnDisk += fi.Size()
		}
	}
	return st, nil
}

var _ Store = (*SQLite)(nil)
