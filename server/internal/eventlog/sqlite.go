package eventlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	_ "modernc.org/sqlite" // registers driver "sqlite"
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
	wmu       sync.Mutex
	pageSize  int64
	watermark atomic.Int64 // events below it have their keys in event_keys (indexer.go)
	// indexPaused holds the indexer, for tests that place the watermark.
	indexPaused atomic.Bool
	stop        chan struct{} // closed by Close: background goroutines return
	bg          sync.WaitGroup
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
	wdb, err := sql.Open("sqlite", base+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_pragma=cache_size(-65536)"+
		fmt.Sprintf("&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(%d)", walLarge))
	if err != nil {
		return nil, fmt.Errorf("eventlog: open %s: %w", abs, err)
	}
	// The writer goroutine, the checkpointer and the indexer hold one
	// connection each for the store's lifetime; the others serve reads at
	// open and Prune.
	wdb.SetMaxOpenConns(5)
	wdb.SetMaxIdleConns(5)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	s := &SQLite{core: newCore(log), path: abs, wdb: wdb, stop: make(chan struct{})}
	fail := func(err error) (*SQLite, error) {
		if s.rdb != nil {
			s.rdb.Close()
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
	rdb, err := sql.Open("sqlite", base+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return fail(fmt.Errorf("eventlog: open %s read-only: %w", abs, err))
	}
	s.rdb, s.bind, s.keys = rdb, sqliteBind, true
	rdb.SetMaxOpenConns(8)
	rdb.SetMaxIdleConns(8)
	if err := s.load(ctx, wdb); err != nil {
		return fail(err)
	}
	if err := s.loadWatermark(ctx); err != nil {
		return fail(err)
	}
	if err := wdb.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&s.pageSize); err != nil {
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	iconn, err := wdb.Conn(ctx)
	if err != nil {
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	// The indexer sorts each batch's keys: in memory, not in temp files.
	if _, err := iconn.ExecContext(ctx, `PRAGMA temp_store = MEMORY`); err != nil {
		iconn.Close()
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	cconn, err := wdb.Conn(ctx)
	if err != nil {
		iconn.Close()
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	// A TRUNCATE checkpoint holds the write lock while it waits for readers:
	// give up soon and try again later rather than stall ingest.
	if _, err := cconn.ExecContext(ctx, `PRAGMA busy_timeout = 200`); err != nil {
		cconn.Close()
		iconn.Close()
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	conn, err := wdb.Conn(ctx)
	if err != nil {
		cconn.Close()
		iconn.Close()
		return fail(fmt.Errorf("eventlog: %w", err))
	}
	ready := make(chan error, 1)
	go s.writer(conn, ready)
	if err := <-ready; err != nil {
		cconn.Close()
		iconn.Close()
		return fail(err)
	}
	s.bg.Add(2)
	go s.checkpointer(cconn)
	go s.indexer(iconn)
	if err := s.recordRebuilt(ctx); err != nil {
		s.Close()
		return nil, err
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

// Close implements Store: queued batches are committed (or answered with an
// error), then the databases are closed.
func (s *SQLite) Close() error {
	if err := s.closeQueue(); err != nil {
		return err
	}
	close(s.stop)
	s.bg.Wait()
	err := errors.Join(s.rdb.Close(), s.wdb.Close())
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
	st := Stats{Events: s.size.Load(), Agents: s.agents.Load()}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(s.path + suffix); err == nil {
			st.BytesOnDisk += fi.Size()
		}
	}
	return st, nil
}

var _ Store = (*SQLite)(nil)
