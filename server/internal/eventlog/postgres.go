package eventlog

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/rs/zerolog"
)

// Postgres is the PostgreSQL Store (github.com/jackc/pgx/v5), for servers that
// outgrow one SQLite file. It shares everything but SQL execution with SQLite
// (core): one writer goroutine commits queued batches together, each group in
// one transaction that COPYs the rows with their Merkle hashes and upserts
// the heads; reads go through a database/sql pool.
//
// Several servers may open the store; one writes. The writer keeps the
// stream heads and the Merkle frontier in memory, so a second writer would
// fork the log: etcd elects the writer, which claims the store with its
// epoch (ClaimEpoch), and every commit is fenced by it (fence.go). There is
// no session lock: a frozen writer would hold it as long as its connection
// lives and block the takeover. The writer connection ends a transaction
// left idle (a writer frozen mid-commit) after pgWriterIdleTimeout, so its
// row locks do not hold up the next writer either. After the writer
// connection is lost, the store reconnects and reloads heads and frontier
// before the next group, since a commit whose reply was lost may have
// committed.
//
// Retention clears payloads in place (Prune), as in SQLite, and needs no
// time partitions: the rows and their hashes stay for ever, and dropping a
// partition would delete what proves the log. Partitioning would only pay
// if payloads moved to a table of their own, and one UPDATE per 5,000 rows
// a day does not need it.
type Postgres struct {
	core
	cfg       *pgx.ConnConfig
	w         *pgWriter
	writerPID atomic.Uint32 // backend of the writer connection, spared by ClaimEpoch
}

// Session settings of the writer connection: a transaction it leaves idle
// (the process froze mid-commit) or a statement that hangs is ended by the
// server, releasing the locks a new writer would wait on. The writer sends
// a commit's statements back to back, so the idle bound can be short: below
// the election's lease (election.DefaultTTL), so that it does not add to a
// takeover (a 10 s bound measured 10.0 s from SIGSTOP to the new writer).
const (
	pgWriterIdleTimeout      = "4s"
	pgWriterStatementTimeout = "60s"
)

// pgMigrations is the ordered PostgreSQL schema history (see migrations).
// Text that is compared or sorted uses the "C" collation: byte order, as in
// SQLite, whatever the database's locale.
var pgMigrations = []string{
	`CREATE TABLE events (
		idx         BIGINT PRIMARY KEY,
		agent       TEXT COLLATE "C" NOT NULL,
		seq         BIGINT NOT NULL,
		time        BIGINT NOT NULL,
		received    BIGINT NOT NULL,
		control     TEXT COLLATE "C",
		type        TEXT COLLATE "C",
		severity    TEXT,
		"user"      TEXT COLLATE "C",
		process     TEXT,
		object      TEXT COLLATE "C",
		register_id TEXT COLLATE "C",
		attrs       TEXT,
		prev        BYTEA,
		hash        BYTEA NOT NULL,
		merkle      BYTEA NOT NULL
	);
	CREATE UNIQUE INDEX events_agent_seq ON events(agent, seq);
	CREATE INDEX events_time ON events(time);
	CREATE INDEX events_control_type ON events(control, type);
	CREATE INDEX events_user ON events("user") WHERE "user" IS NOT NULL;
	CREATE INDEX events_object ON events(object) WHERE object IS NOT NULL;
	CREATE INDEX events_register_id ON events(register_id) WHERE register_id IS NOT NULL;
	CREATE TABLE heads (
		agent     TEXT COLLATE "C" PRIMARY KEY,
		seq       BIGINT NOT NULL,
		hash      BYTEA  NOT NULL,
		last_seen BIGINT NOT NULL,
		events    BIGINT NOT NULL
	);
	CREATE TABLE checkpoints (
		size    BIGINT PRIMARY KEY,
		root    BYTEA  NOT NULL,
		note    TEXT   NOT NULL,
		created BIGINT NOT NULL
	);`,
	// 2: event_spans (see migrations); equality indexes end in idx, so that
	// the rows of one value come in log order and a page stops early.
	`CREATE TABLE event_spans (
		block    BIGINT PRIMARY KEY,
		min_time BIGINT NOT NULL,
		max_time BIGINT NOT NULL
	);
	INSERT INTO event_spans SELECT idx >> 12, min(time), max(time) FROM events GROUP BY idx >> 12;
	DROP INDEX events_control_type;
	DROP INDEX events_user;
	DROP INDEX events_register_id;
	CREATE INDEX events_control ON events(control, idx) WHERE control IS NOT NULL;
	CREATE INDEX events_type ON events(type, idx) WHERE type IS NOT NULL;
	CREATE INDEX events_user ON events("user", idx) WHERE "user" IS NOT NULL;
	CREATE INDEX events_register_id ON events(register_id, idx) WHERE register_id IS NOT NULL;`,
	// 3: events_pruned holds only rows whose payload retention cleared
	// (none until the first pruning; nothing for ingest to maintain), so
	// start-up finds the newest one without reading the log.
	`CREATE INDEX events_pruned ON events(received) WHERE control IS NULL;`,
	// 4: writer_epoch fences out older writers (fence.go).
	`CREATE TABLE writer_epoch (epoch BIGINT NOT NULL);
	INSERT INTO writer_epoch (epoch) VALUES (0);`,
}

// pgEventColumns is the COPY column order; row.vals holds agent to hash.
var pgEventColumns = []string{"idx", "received", "merkle", "agent", "seq", "time", "control", "type", "severity",
	"user", "process", "object", "register_id", "attrs", "prev", "hash"}

const (
	pgUpsertHeadsSQL = `INSERT INTO heads (agent, seq, hash, last_seen, events)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bigint[])
		ON CONFLICT (agent) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
		last_seen = excluded.last_seen, events = excluded.events`
	pgPutCheckpointSQL = `INSERT INTO checkpoints (size, root, note, created) VALUES ($1, $2, $3, $4)
		ON CONFLICT (size) DO UPDATE SET root = excluded.root, note = excluded.note, created = excluded.created`
	pgUpsertSpansSQL = `INSERT INTO event_spans (block, min_time, max_time)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])
		ON CONFLICT (block) DO UPDATE SET min_time = LEAST(event_spans.min_time, excluded.min_time),
		max_time = GREATEST(event_spans.max_time, excluded.max_time)`
	pgStoredHashesSQL = `SELECT seq, hash FROM events WHERE agent = $1 AND seq BETWEEN $2 AND $3`
	// Migrations take this lock (per database and schema) so that servers
	// starting together migrate one after the other; it is held only while
	// migrating.
	pgMigrateLockSQL   = `SELECT pg_advisory_lock(hashtext('mamori.eventlog.migrate.' || current_database() || '.' || current_schema()))`
	pgMigrateUnlockSQL = `SELECT pg_advisory_unlock(hashtext('mamori.eventlog.migrate.' || current_database() || '.' || current_schema()))`
	// Writer connections are named per database and schema, so that a new
	// writer can end those of the others (ClaimEpoch).
	pgWriterName    = `'mamori-writer:' || current_database() || '.' || current_schema()`
	pgNameWriterSQL = `SELECT set_config('application_name', ` + pgWriterName + `, false)`
	pgEndWritersSQL = `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = ` + pgWriterName + ` AND pid <> pg_backend_pid() AND pid <> $1`
)

// OpenPostgres opens (creating and migrating if needed) the event store in the
// database dsn names (postgres://... or key=value; a search_path parameter
// selects the schema). Other servers may have it open too: only the one
// that claims it with the newest epoch (ClaimEpoch) can commit.
func OpenPostgres(ctx context.Context, dsn string, log zerolog.Logger) (*Postgres, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("eventlog: postgres DSN: %w", err)
	}
	s := &Postgres{core: newCore(log), cfg: cfg}
	s.bind, s.noNUL = pgBind, true
	// READ COMMITTED would give each statement its own snapshot.
	s.readTx = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	w, err := s.connectWriter(ctx)
	if err != nil {
		return nil, err
	}
	s.w = w
	s.rdb = stdlib.OpenDB(*cfg)
	s.rdb.SetMaxOpenConns(8)
	s.rdb.SetMaxIdleConns(8)
	s.rdb.SetConnMaxIdleTime(5 * time.Minute)
	fail := func(err error) (*Postgres, error) {
		s.rdb.Close()
		w.conn.Close(context.Background())
		return nil, err
	}
	from, to, err := s.migrate(ctx)
	if err != nil {
		return fail(err)
	}
	if from != to {
		s.log.Info().Int("from", from).Int("to", to).Msg("schema migrated")
	}
	if err := s.loadSnapshot(ctx); err != nil {
		return fail(err)
	}
	go func() {
		defer close(s.done)
		s.loop(claimed{w, &s.core})
		if err := w.conn.Close(context.Background()); err != nil {
			s.log.Warn().Err(err).Msg("close writer connection")
		}
	}()
	if err := s.recordRebuilt(ctx); errors.Is(err, ErrFenced) {
		// Another server writes this store: the claim, if this one is ever
		// elected, checks the heads again and records what it rebuilt.
		s.log.Warn().Err(err).Msg("rebuilt stream heads not recorded: this server is not the writer")
	} else if err != nil {
		s.Close()
		return nil, err
	}
	s.log.Info().Str("host", cfg.Host).Str("database", cfg.Database).Int64("events", s.size.Load()).
		Int64("streams", s.agents.Load()).Msg("event store open (postgres)")
	return s, nil
}

// connectWriter opens the writer connection.
func (s *Postgres) connectWriter(ctx context.Context) (*pgWriter, error) {
	cfg := s.cfg.Copy()
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = pgWriterIdleTimeout
	cfg.RuntimeParams["statement_timeout"] = pgWriterStatementTimeout
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("eventlog: postgres connect: %w", err)
	}
	if _, err := conn.Exec(ctx, pgNameWriterSQL); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("eventlog: postgres writer connection: %w", err)
	}
	s.writerPID.Store(conn.PgConn().PID())
	return &pgWriter{s: s, conn: conn}, nil
}

// migrate brings the schema up to date while holding the migration lock
// on a connection of its own.
func (s *Postgres) migrate(ctx context.Context) (from, to int, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.cfg)
	if err != nil {
		return 0, 0, fmt.Errorf("eventlog: postgres connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, pgMigrateLockSQL); err != nil {
		return 0, 0, fmt.Errorf("eventlog: postgres migration lock: %w", err)
	}
	from, to, err = migrate(ctx, s.rdb, pgMigrations, pgBind, s.log)
	if _, uerr := conn.Exec(context.WithoutCancel(ctx), pgMigrateUnlockSQL); uerr != nil && err == nil {
		s.log.Warn().Err(uerr).Msg("release migration lock")
	}
	return from, to, err
}

// ClaimEpoch makes epoch the writer epoch every later commit is fenced
// with, unless the database holds a newer one (then it fails with ErrFenced
// and changes nothing), and reloads the log head from the database. Call it
// once elected, before appending.
//
// First it ends the other stores' writer sessions on this schema: a writer
// that froze in the middle of a commit holds locks the claim would wait for
// until PostgreSQL's timeouts ended its statement (up to
// pgWriterStatementTimeout). Their transactions roll back; what they had
// not committed was not acked. A store whose session ended reconnects
// before its next commit, which the epoch then refuses.
func (s *Postgres) ClaimEpoch(ctx context.Context, epoch int64) error {
	// A stale claimant ends nobody's session (a read waits for no lock).
	if stored, err := s.StoredEpoch(ctx); err == nil && stored > epoch {
		return fmt.Errorf("%w: claiming epoch %d, the store holds %d", ErrFenced, epoch, stored)
	}
	var ended int64
	if err := s.rdb.QueryRowContext(ctx, pgEndWritersSQL, int64(s.writerPID.Load())).Scan(&ended); err != nil {
		// Without the right to end them, the timeouts still do.
		s.log.Warn().Err(err).Msg("could not end other writers' sessions")
	} else if ended > 0 {
		s.log.Warn().Int64("sessions", ended).Msg("ended other writers' database sessions before claiming the store")
	}
	return s.claimEpoch(ctx, s.rdb, epoch)
}

// pgBind rewrites ? placeholders as $1, $2, ... (the shared SQL has no ?
// in literals).
func pgBind(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// Close implements Store: queued batches are committed (or answered with an
// error), then the connections are closed.
func (s *Postgres) Close() error {
	if err := s.closeQueue(); err != nil {
		return err
	}
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("eventlog: close: %w", err)
	}
	s.log.Info().Int64("events", s.size.Load()).Msg("event store closed")
	return nil
}

// Stats implements Store; BytesOnDisk is the tables' size with their
// indexes and TOAST.
func (s *Postgres) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	var err error
	if st.Events, err = s.readSize(ctx); err != nil {
		return Stats{}, err
	}
	if st.Agents, err = s.readAgents(ctx); err != nil {
		return Stats{}, err
	}
	err = s.rdb.QueryRowContext(ctx, `SELECT pg_total_relation_size('events') +
		pg_total_relation_size('heads') + pg_total_relation_size('checkpoints')`).Scan(&st.BytesOnDisk)
	if err != nil {
		return Stats{}, fmt.Errorf("eventlog: stats: %w", err)
	}
	return st, nil
}

// Prune implements retention as SQLite.Prune does: payloads of events before
// cutoff are cleared in chunks; agent, seq, time, prev, hash and the Merkle
// hashes stay.
func (s *Postgres) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	return s.prune(ctx, s.rdb, cutoff)
}

// pgWriter is the writer goroutine's connection, the backend of core.loop.
type pgWriter struct {
	s    *Postgres
	conn *pgx.Conn
	vals []any // one COPY row, reused: pgx encodes each row before the next
}

// prepare implements backend: after a lost connection it reconnects and
// reloads heads and frontier, which a commit whose outcome was unknown may
// have moved.
func (w *pgWriter) prepare(ctx context.Context) error {
	if w.s.reload.Load() && !w.conn.IsClosed() {
		// Just claimed: another server's claim may have ended this idle
		// session (ClaimEpoch ends every other writer's), which pgx learns
		// only by failing the first commit, the record of this start.
		if err := w.conn.Ping(ctx); err != nil {
			w.conn.Close(ctx)
		}
	}
	if !w.conn.IsClosed() {
		return nil
	}
	s := w.s
	nw, err := s.connectWriter(ctx)
	if err != nil {
		return err
	}
	w.conn = nw.conn
	// The server most likely restarted: drop the read pool's idle
	// connections too rather than fail a query on each.
	s.rdb.SetMaxIdleConns(0)
	s.rdb.SetMaxIdleConns(8)
	s.heads = make(map[string]*head)
	old := s.front
	if err := s.loadConsistent(ctx); err != nil {
		w.conn.Close(ctx) // next group tries again
		return err
	}
	// The database may have been restored or failed over to a replica
	// that missed commits: it must hold the log this writer committed.
	if err := s.checkReloaded(&old); err != nil {
		return err
	}
	s.log.Warn().Int64("events", s.size.Load()).Msg("writer reconnected, state reloaded")
	return nil
}

// storedHashes implements backend.
func (w *pgWriter) storedHashes(ctx context.Context, agent string, lo, hi uint64, fn func(seq uint64, hash []byte)) error {
	rows, err := w.conn.Query(ctx, pgStoredHashesSQL, agent, int64(lo), int64(hi))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			seq  int64
			hash []byte
		)
		if err := rows.Scan(&seq, &hash); err != nil {
			return err
		}
		fn(uint64(seq), hash)
	}
	return rows.Err()
}

// write implements backend: one transaction, the rows by COPY.
func (w *pgWriter) write(ctx context.Context, first int64, t *txn) (err error) {
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback(ctx)
		}
	}()
	// First: a fenced writer writes nothing, and the row lock orders this
	// commit against a claim (fence.go).
	e := w.s.epoch.Load()
	tag, err := tx.Exec(ctx, pgBind(fenceSQL), e, e)
	if err != nil {
		return fmt.Errorf("writer epoch: %w", err)
	}
	if err := fenceResult(e, tag.RowsAffected()); err != nil {
		return err
	}
	// The database's end must be this writer's last commit: a restore
	// under a live connection is caught before anything is appended.
	var (
		lastIdx int64 = -1
		merkle  []byte
	)
	switch err := tx.QueryRow(ctx, `SELECT idx, merkle FROM events ORDER BY idx DESC LIMIT 1`).Scan(&lastIdx, &merkle); {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("read the last record: %w", err)
	}
	if err := w.s.checkTail(first, lastIdx, merkle); err != nil {
		return err
	}
	if len(t.rows) > 0 {
		src := pgx.CopyFromSlice(len(t.rows), func(i int) ([]any, error) {
			vals, err := t.rows[i].vals()
			if err != nil {
				return nil, err
			}
			w.vals = append(w.vals[:0], first+int64(i), t.received, t.merkle[i])
			w.vals = append(w.vals, vals[:]...)
			return w.vals, nil
		})
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, pgEventColumns, src)
		if err != nil {
			return fmt.Errorf("copy events: %w", err)
		}
		if n != int64(len(t.rows)) {
			return fmt.Errorf("copy events: %d of %d rows", n, len(t.rows))
		}
		var blocks, mins, maxs []int64
		for _, sp := range groupSpans(first, t.rows) {
			blocks, mins, maxs = append(blocks, sp.block), append(mins, sp.min), append(maxs, sp.max)
		}
		if _, err := tx.Exec(ctx, pgUpsertSpansSQL, blocks, mins, maxs); err != nil {
			return fmt.Errorf("update spans: %w", err)
		}
	}
	if len(t.heads) > 0 {
		var (
			agents      []string
			seqs, seens []int64
			evs         []int64
			hashes      [][]byte
		)
		for agent, h := range t.heads {
			raw, err := hex.DecodeString(h.hash)
			if err != nil {
				return fmt.Errorf("head %q: %w", agent, err)
			}
			agents, hashes = append(agents, agent), append(hashes, raw)
			seqs, seens, evs = append(seqs, int64(h.seq)), append(seens, h.lastSeen), append(evs, h.events)
		}
		if _, err := tx.Exec(ctx, pgUpsertHeadsSQL, agents, seqs, hashes, seens, evs); err != nil {
			return fmt.Errorf("update heads: %w", err)
		}
	}
	if len(t.drop) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM heads WHERE agent = ANY($1)`, t.drop); err != nil {
			return fmt.Errorf("drop heads: %w", err)
		}
	}
	for _, c := range t.cps {
		if _, err := tx.Exec(ctx, pgPutCheckpointSQL, c.Size, c.Root[:], c.Note, c.Created.UnixNano()); err != nil {
			return fmt.Errorf("store checkpoint: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

var (
	_ Store   = (*Postgres)(nil)
	_ backend = (*pgWriter)(nil)
)
