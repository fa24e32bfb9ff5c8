package eventlog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	"modernc.org/sqlite" // also registers driver "sqlite"
)

// SQLite is the SQLite (modernc.org/sqlite) Store. One writer goroutine owns
// the single write connection and commits queued batches together (group
// commit, synchronous=FULL in WAL mode); reads go through a read-only pool.
type SQLite struct {
	core
	path string
	wdb  *sql.DB // write pool: one connection owned by the writer goroutine
	// wmu is the write lock: held by the writer around each transaction and
	// by whatever else writes on its own connection (checkpointer), so they
	// queue on it instead of in SQLite's busy handler, which sleeps.
	wmu      sync.Mutex
	pageSize int64
	// kdb is the keys file (indexer.go) with the log attached read-only:
	// the indexer's own database, so its transactions never wait for the
	// writer's nor the writer's for its.
	kdb       *sql.DB
	watermark atomic.Int64 // events below it have their keys in the runs
	// imu is held around each indexer transaction; indexPaused holds the
	// indexer, for tests that place the watermark.
	imu         sync.Mutex
	runs        []keyRun     // the key runs in log order, under imu
	nruns       atomic.Int64 // len(runs), for IndexLag without imu (held through merges)
	indexPaused atomic.Bool
	indexRuns   atomic.Int64  // indexer transactions, for tests
	merges      atomic.Int64  // key run merges, for tests
	stop        chan struct{} // closed by Close: background goroutines return
	bg          sync.WaitGroup
}

// recordPageSize is the page size of a new events.db. A record is one
// agent's batch, some 160 KB for 500 office events, stored in overflow
// pages, and the WAL writes each page as two system calls (frame header and
// page), which the checkpoint then reads and writes again: with 4 KiB pages
// those calls were 3.5 µs of a paced event's 21 µs of server CPU. 16 KiB
// pages take a quarter of the calls; 64 KiB made each small index page a
// large write and gained nothing (docs/ingest.md, "Pages of 16 KiB").
const recordPageSize = 16 << 10

// OpenSQLite opens (creating and migrating if needed) the event store at path.
func OpenSQLite(ctx context.Context, path string, log zerolog.Logger) (*SQLite, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	reserve := abs + "-reserve"
	released, err := releaseReserve(reserve)
	if err != nil {
		return nil, err
	}
	base := sqliteURI(abs)
	if err := registerRecordEvents(); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	// A new file gets pages of recordPageSize: the driver runs the _pragma
	// list before _journal_mode, and a page size holds once the WAL exists.
	// A file from an older server keeps its pages (the pragma does nothing).
	wdb := openDB(base+fmt.Sprintf("?_pragma=busy_timeout(10000)&_pragma=page_size(%d)&_journal_mode=WAL&_pragma=synchronous(FULL)"+
		"&_pragma=foreign_keys(1)&_pragma=cache_size(-65536)&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(%d)",
		recordPageSize, walLarge), "", "", "")
	// The writer goroutine and the checkpointer hold one connection each
	// for the store's lifetime; the others serve reads at open and Prune.
	wdb.SetMaxOpenConns(4)
	wdb.SetMaxIdleConns(4)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	s := &SQLite{core: newCore(log), path: abs, wdb: wdb, stop: make(chan struct{})}
	fail := func(err error) (*SQLite, error) {
		if s.rdb != nil {
			s.rdb.Close()
		}
		if s.kdb != nil {
			s.kdb.Close()
		}
		wdb.Close()
		return nil, err
	}
	from, to, err := migrate(ctx, wdb, migrations, sqliteBind, s.log)
	if err != nil {
		return fail(err)
	}
	if from != to {
		s.log.Info().Int("from", from).Int("to", to).Msg("schema migrated")
	}
	// The keys file is derived data, rebuilt from its watermark: a commit
	// there need not reach the disk before the next (synchronous NORMAL).
	keys := sqliteURI(abs + "-keys")
	s.kdb = openDB(keys+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=temp_store(MEMORY)&_pragma=cache_size(-65536)",
		base+"?mode=ro", "log", "")
	s.kdb.SetMaxOpenConns(2)
	if _, err = s.kdb.ExecContext(ctx, keysSchema); err != nil {
		// Never a reason not to serve the log (a full disk cannot take the
		// keys file's WAL, say): without it queries scan the log, exactly.
		s.log.Error().Err(err).Msg("query indexes unavailable until a restart: queries scan the log")
		s.kdb.Close()
		s.kdb = nil
	}
	ro, roKeys := base+"?mode=ro&_pragma=busy_timeout(10000)", ""
	if s.kdb != nil {
		roKeys = keys + "?mode=ro"
	}
	rdb := openDB(ro, roKeys, "keys", "PRAGMA query_only = 1")
	s.rdb, s.bind, s.keys, s.ranges = rdb, sqliteBind, s.kdb != nil, true
	rdb.SetMaxOpenConns(8)
	rdb.SetMaxIdleConns(8)
	s.records = true
	if err := s.load(ctx, wdb); err != nil {
		return fail(err)
	}
	if s.kdb != nil {
		if err := s.loadWatermark(ctx); err != nil {
			return fail(err)
		}
		if err := s.catchUp(ctx); err != nil {
			// Queries stay exact over the longer tail (a full disk, say);
			// the indexer tries again.
			s.log.Error().Err(err).Msg("building the query indexes")
		}
	}
	if err := wdb.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&s.pageSize); err != nil {
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	cconn, err := wdb.Conn(ctx)
	if err != nil {
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	// A RESTART checkpoint holds the write lock while it waits for readers:
	// give up soon and try again at the next tick rather than stall ingest
	// (paced at 20,000 events/s, 200 ms here held the writer 105-215 ms in
	// 3 restarts of 5; 10 ms held it about 4 ms in 4 of 5).
	if _, err := cconn.ExecContext(ctx, `PRAGMA busy_timeout = 20`); err != nil {
		cconn.Close()
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	conn, err := wdb.Conn(ctx)
	if err != nil {
		cconn.Close()
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	ready := make(chan error, 1)
	go s.writer(conn, ready)
	if err := <-ready; err != nil {
		cconn.Close()
		return fail(err)
	}
	s.bg.Add(1)
	go s.checkpointer(cconn)
	if s.kdb != nil {
		iconn, err := s.kdb.Conn(ctx)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("eventlog: %w", err)
		}
		s.bg.Add(1)
		go s.indexer(iconn)
	}
	if err := s.recordRebuilt(ctx); errors.Is(err, ErrFenced) {
		// The store is written under an election's epochs: the claim
		// checks the heads again (the table is fixed only by the record's
		// commit) and records what it rebuilt.
		s.log.Warn().Int("streams", len(s.rebuilt)).Msg("rebuilt stream heads are recorded once this server claims the writer epoch")
	} else if err != nil {
		s.Close()
		return nil, err
	}
	if err := makeReserve(reserve); err != nil {
		s.log.Warn().Err(err).Msg("no room for the reserve that lets the store open on a full disk; it is made at the next start with room")
	}
	s.log.Info().Str("path", abs).Int64("events", s.size.Load()).Int64("streams", s.agents.Load()).Bool("reserve_released", released).Msg("event store open")
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

// openDB opens the SQLite database dsn. Every connection has
// record_events, and the database at the URI other attached as schema as
// (if other is set); after runs last, so that a query_only connection
// still creates its temp table.
func openDB(dsn, other, as, after string) *sql.DB {
	return sql.OpenDB(connector{&sqlite.Driver{}, dsn, other, as, after})
}

type connector struct {
	d                     *sqlite.Driver
	dsn, other, as, after string
}

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.d.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("eventlog: driver connection %T lacks ExecContext", conn)
	}
	var steps []func() error
	if c.other != "" {
		steps = append(steps, func() error {
			_, err := ex.ExecContext(ctx, "ATTACH DATABASE ? AS "+c.as, []driver.NamedValue{{Ordinal: 1, Value: c.other}})
			return err
		})
	}
	for _, q := range []string{recordEventsSQL, keyPositionsSQL, c.after} {
		if q != "" {
			steps = append(steps, func() error { _, err := ex.ExecContext(ctx, q, nil); return err })
		}
	}
	for _, step := range steps {
		if err := step(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("eventlog: connection setup: %w", err)
		}
	}
	return conn, nil
}

func (c connector) Driver() driver.Driver { return c.d }

// Close implements Store: queued batches are committed (or answered with an
// error), then the databases are closed.
func (s *SQLite) Close() error {
	if err := s.closeQueue(); err != nil {
		return err
	}
	close(s.stop)
	s.bg.Wait()
	// SQLite checkpoints a WAL into its database file and removes it only
	// when the last connection to the file closes: the readers attach the
	// keys file and the keys file's connections attach the log, so the
	// readers go first, the write pool last.
	err := s.rdb.Close()
	if s.kdb != nil {
		err = errors.Join(err, s.kdb.Close())
	}
	err = errors.Join(err, s.wdb.Close())
	if err != nil {
		return fmt.Errorf("eventlog: close: %w", err)
	}
	s.log.Info().Int64("events", s.size.Load()).Msg("event store closed")
	return nil
}

// sqliteBind leaves the ? placeholders the shared SQL is written with.
func sqliteBind(q string) string { return q }

// Stats implements Store.
func (s *SQLite) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, fmt.Errorf("eventlog: %w", err)
	}
	var st Stats
	var err error
	if st.Events, err = s.readSize(ctx); err != nil {
		return Stats{}, err
	}
	if st.Agents, err = s.readAgents(ctx); err != nil {
		return Stats{}, err
	}
	for _, suffix := range []string{"", "-wal", "-shm", "-keys", "-keys-wal", "-keys-shm", "-reserve"} {
		if fi, err := os.Stat(s.path + suffix); err == nil {
			st.BytesOnDisk += fi.Size()
		}
	}
	return st, nil
}

var _ Store = (*SQLite)(nil)

// ClaimEpoch makes epoch the writer epoch every later commit is fenced
// with, unless the database holds a newer one (then it fails with ErrFenced
// and changes nothing), and reloads the log head from the database. Call it
// once elected, before appending.
func (s *SQLite) ClaimEpoch(ctx context.Context, epoch int64) error {
	return s.claimEpoch(ctx, s.wdb, epoch)
}
