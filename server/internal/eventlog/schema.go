package eventlog

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/rs/zerolog"
)

// migrations is the ordered SQLite schema history; entry i moves the schema
// from version i to i+1. Add new migrations at the end, never edit old ones.
//
// events keeps the chain fields (agent, seq, time, prev, hash) and the Merkle
// hashes NOT NULL; every other column may be set to NULL later by retention
// ("payload cleared, hash kept") without breaking the log.
var migrations = []string{
	`CREATE TABLE events (
		idx         INTEGER PRIMARY KEY, -- Merkle log index, 0-based, commit order
		agent       TEXT    NOT NULL,
		seq         INTEGER NOT NULL,
		time        INTEGER NOT NULL,    -- event time, Unix ns
		received    INTEGER NOT NULL,    -- commit time, Unix ns
		control     TEXT,
		type        TEXT,
		severity    TEXT,
		user        TEXT,
		process     TEXT,
		object      TEXT,
		register_id TEXT,
		attrs       TEXT,                -- JSON
		prev        BLOB,                -- 32 bytes, NULL for a chain's first event
		hash        BLOB    NOT NULL,    -- 32 bytes
		merkle      BLOB    NOT NULL     -- tlog.StoredHashes for this record, 32 bytes each
	);
	CREATE UNIQUE INDEX events_agent_seq ON events(agent, seq);
	CREATE INDEX events_time ON events(time);
	CREATE INDEX events_control_type ON events(control, type);
	CREATE INDEX events_user ON events(user) WHERE user IS NOT NULL;
	CREATE INDEX events_object ON events(object) WHERE object IS NOT NULL;
	CREATE INDEX events_register_id ON events(register_id) WHERE register_id IS NOT NULL;
	CREATE TABLE heads (
		agent     TEXT PRIMARY KEY,
		seq       INTEGER NOT NULL,
		hash      BLOB    NOT NULL,
		last_seen INTEGER NOT NULL,
		events    INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE checkpoints (
		size    INTEGER PRIMARY KEY,
		root    BLOB    NOT NULL,
		note    TEXT    NOT NULL, -- signed note text
		created INTEGER NOT NULL  -- Unix ns
	);`,
	// 2: event_spans keeps, per block of 1<<spanShift log indexes, the
	// range of event times in it (the writer widens it in the same
	// transaction), so a time filter walks only the blocks that can match,
	// in log order. events_control_type gives way to one index per column:
	// an SQLite index ends in the rowid (idx), so the rows of one value come
	// in log order and a page stops after limit rows instead of sorting them.
	`CREATE TABLE event_spans (
		block    INTEGER PRIMARY KEY, -- idx >> 12
		min_time INTEGER NOT NULL,
		max_time INTEGER NOT NULL
	);
	INSERT INTO event_spans SELECT idx >> 12, min(time), max(time) FROM events GROUP BY idx >> 12;
	DROP INDEX events_control_type;
	CREATE INDEX events_control ON events(control) WHERE control IS NOT NULL;
	CREATE INDEX events_type ON events(type) WHERE type IS NOT NULL;`,
	// 3: events_pruned holds only rows whose payload retention cleared
	// (none until the first pruning; nothing for ingest to maintain), so
	// start-up finds the newest one without reading the log.
	`CREATE INDEX events_pruned ON events(received) WHERE control IS NULL;`,
	// 4: the indexes of the columns with many distinct values (user, object
	// path, register id) leave the commit path (docs/ingest.md): random keys
	// there cost a B-tree page per event at commit. The indexer keeps them in
	// the keys file behind a watermark (keysSchema, indexer.go); a store
	// migrated from 3 has no keys file, and the open builds it. Time, control
	// and type stay: their inserts land on a few pages at the end of each
	// value's range, and the alert and compliance tails follow them.
	`DROP INDEX events_user;
	DROP INDEX events_object;
	DROP INDEX events_register_id;`,
	// 5: writer_epoch holds the epoch of the last writer that committed,
	// which fences out older writers (fence.go).
	`CREATE TABLE writer_epoch (epoch INTEGER NOT NULL);
	INSERT INTO writer_epoch (epoch) VALUES (0);`,
	// 6: the control and type indexes leave the commit path too: two index
	// entries per event cost the commit some 2 µs an event (docs/ingest.md,
	// "Control and type as range keys"). The writer writes range keys
	// (runkeys.go) in the same transaction instead, a few per batch, since
	// an agent's batch repeats a handful of controls and types; rows from
	// before get one key each, read in index order so the inserts append.
	`CREATE TABLE event_ranges (
		kind INTEGER NOT NULL, -- rangeKinds: 2 control, 3 type
		val  TEXT    NOT NULL,
		pos  INTEGER NOT NULL, -- events.idx of the first row with val
		upto INTEGER,          -- the same agent's rows below it may have val; NULL: pos alone
		PRIMARY KEY (kind, val, pos)
	) WITHOUT ROWID;
	INSERT INTO event_ranges (kind, val, pos) SELECT 2, control, idx FROM events INDEXED BY events_control
		WHERE control IS NOT NULL ORDER BY control, idx;
	INSERT INTO event_ranges (kind, val, pos) SELECT 3, type, idx FROM events INDEXED BY events_type
		WHERE type IS NOT NULL ORDER BY type, idx;
	DROP INDEX events_control;
	DROP INDEX events_type;`,
	// 7: the (agent, seq) index leaves the commit path as well (about
	// 1.5 µs an event): agent_runs maps each run of one agent's consecutive
	// seqs stored at consecutive log indexes, one row per batch, which is
	// what resend checks, the heads check and an agent's pages read. Rows
	// from before are grouped by (agent, idx - seq) in blocks of runMax
	// seqs: such a group is consecutive unless a gap in the agent's seqs let
	// another stream's rows in between, so every reader checks the row's
	// agent (and seq) again.
	`CREATE TABLE agent_runs (
		stream TEXT    NOT NULL, -- the agent
		seq_lo INTEGER NOT NULL, -- the run's first seq
		pos    INTEGER NOT NULL, -- its events.idx
		n      INTEGER NOT NULL, -- seq_lo + i is at pos + i for i < n (n <= runMax)
		PRIMARY KEY (stream, seq_lo)
	) WITHOUT ROWID;
	CREATE UNIQUE INDEX agent_runs_pos ON agent_runs(stream, pos);
	INSERT INTO agent_runs (stream, seq_lo, pos, n)
		SELECT agent, min(seq), min(idx), max(seq) - min(seq) + 1 FROM events GROUP BY agent, idx - seq, seq >> 10;
	DROP INDEX events_agent_seq;`,
	// 8: records, one row per agent run (agent_runs) holding its events in
	// the payload encoding (payload.go, docs/record-store.md): the log is
	// events below the first record's lo and records from it. Readers read
	// a record's events through record_events, as rows.
	// Small columns first: a walk of records reads no payload it skips.
	`CREATE TABLE records (
		lo       INTEGER PRIMARY KEY, -- log index of the first event
		hi       INTEGER NOT NULL,    -- the record holds [lo, hi), at most runMax
		agent    TEXT    NOT NULL,
		received INTEGER NOT NULL,
		tmin     INTEGER NOT NULL,    -- the events' time range (Unix ns), so a time
		tmax     INTEGER NOT NULL,    -- filter skips a record without decoding it
		pruned   INTEGER,             -- events retention cleared; NULL before it looked
		merkle   BLOB    NOT NULL,    -- the events' stored Merkle hashes, in order
		payload  BLOB    NOT NULL
	);
	CREATE INDEX records_pruned ON records(received) WHERE pruned > 0;`,
}

// keysSchema is the keys file's. The query indexes' entries (kind, val,
// pos, upto) live in runs: key_runs names each run's table (of key blocks,
// keyblocks.go) and the log indexes
// [lo, hi) whose keys it holds; the runs cover [0, index_state.watermark)
// without overlap. The indexer (indexer.go) adds the keys of new events as a
// new run, sorted, and moves the watermark in the same transaction; it
// merges runs of like size into one. Readers use the runs below the
// watermark and scan the log above it, and re-check every key against the
// row (retention clears values, not keys). The file is derived from the
// log: it can be deleted while the server is stopped and is rebuilt at open.
//
// event_keys is the one table of keys files from before runs: the first
// open registers it as the run [0, watermark), and finds it of another
// format (keysFormat) and rebuilds the keys.
const keysSchema = `CREATE TABLE IF NOT EXISTS event_keys (
		kind INTEGER NOT NULL, -- keyKinds: 4 user, 5 object, 6 register_id
		val           NOT NULL, -- the column's value
		pos  INTEGER NOT NULL, -- events.idx
		PRIMARY KEY (kind, val, pos)
	) WITHOUT ROWID;
	-- last: the hash of the event below the watermark, so keys built from
	-- another log (events.db restored from a backup that is not a prefix
	-- of this one) are noticed at open and rebuilt.
	CREATE TABLE IF NOT EXISTS index_state (watermark INTEGER NOT NULL, last BLOB);
	INSERT INTO index_state (watermark) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM index_state);
	CREATE TABLE IF NOT EXISTS key_runs (name TEXT PRIMARY KEY, lo INTEGER NOT NULL, hi INTEGER NOT NULL);
	INSERT INTO key_runs (name, lo, hi) SELECT 'event_keys', 0, watermark FROM index_state
		WHERE watermark > 0 AND NOT EXISTS (SELECT 1 FROM key_runs);`

// hashAtSQL reads the hash of the event at log index ?1, a row or in a
// record; NULL if there is none.
const hashAtSQL = `SELECT coalesce((SELECT hash FROM events WHERE idx = ?1), (SELECT e.hash FROM records
	CROSS JOIN record_events(records.payload, records.lo, records.hi) AS e WHERE records.lo = (SELECT rr.lo FROM records AS rr WHERE rr.lo <= ?1 ORDER BY rr.lo DESC LIMIT 1) AND e.idx = ?1))`

// keyKinds maps a query column, as written in SQL, to its key kind in the
// keys file; rangeKinds those whose range keys the writer commits with the
// rows, in event_ranges. The other query columns are indexed on events.
var (
	keyKinds   = map[string]int{`"user"`: 4, "object": 5, "register_id": 6}
	rangeKinds = map[string]int{"control": 2, "type": 3}
)

// migrate brings the schema to len(migrations) in one transaction; bind
// rewrites placeholders for the backend.
func migrate(ctx context.Context, db *sql.DB, migrations []string, bind func(string) string, log zerolog.Logger) (from, to int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("eventlog: migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return 0, 0, fmt.Errorf("eventlog: migrate: %w", err)
	}
	var v int
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err {
	case nil:
	case sql.ErrNoRows:
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return 0, 0, fmt.Errorf("eventlog: migrate: %w", err)
		}
	default:
		return 0, 0, fmt.Errorf("eventlog: migrate: %w", err)
	}
	if v > len(migrations) {
		return v, v, fmt.Errorf("eventlog: database schema version %d is newer than this program (%d)", v, len(migrations))
	}
	if v < len(migrations) && v > 0 {
		// Rebuilding indexes of a large store takes a while (about 45 s for
		// 10 million events): say why start-up waits.
		log.Info().Int("from", v).Int("to", len(migrations)).Msg("migrating the event store schema")
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return v, v, fmt.Errorf("eventlog: migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, bind(`UPDATE schema_version SET version = ?`), len(migrations)); err != nil {
		return v, v, fmt.Errorf("eventlog: migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return v, v, fmt.Errorf("eventlog: migrate: %w", err)
	}
	return v, len(migrations), nil
}
