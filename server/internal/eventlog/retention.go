package eventlog

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

// MinRetention is the shortest retention the store accepts: Privacy Mark
// renewal reviews the last two years of records.
const MinRetention = evidence.MinRetention

// DefaultRetention keeps payloads three years.
const DefaultRetention = 3 * 365 * 24 * time.Hour

// pruneChunk bounds one pruning transaction so ingest is never held long.
const pruneChunk = 5000

// Prune clears the payload of events received before cutoff (the server's
// commit time, signed in the Merkle leaf; never the agent's clock, which may
// be years off): every field but agent, seq, time, prev, hash and the Merkle
// hashes becomes NULL. Retention records (evidence.RetentionType server
// events) are kept whole, since they are what authorises the clearing; the
// caller appends one, and has it signed, before calling Prune.
// The log, each agent's chain and every old checkpoint and proof stay
// verifiable; the pruned events read back with Pruned set. It returns how
// many events it pruned.
func (s *SQLite) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	return s.prune(ctx, s.wdb, cutoff) // SQLite has one writer connection
}

// prune clears payloads in chunks of pruneChunk rows through db, in log
// order from where the last chunk ended, so the whole prune reads the log
// once (no index serves "not yet cleared" on SQLite since control left the
// commit path: restarting each chunk from the start read the cleared rows
// again every time).
func (c *core) prune(ctx context.Context, db *sql.DB, cutoff time.Time) (int64, error) {
	q := c.bind(`UPDATE events SET control = NULL, type = NULL, severity = NULL,
		"user" = NULL, process = NULL, object = NULL, register_id = NULL, attrs = NULL
		WHERE idx IN (SELECT idx FROM events WHERE idx >= ? AND received < ? AND control IS NOT NULL
			AND NOT (agent = ? AND type = ?) ORDER BY idx LIMIT ?) RETURNING idx`)
	var total, from int64
	for {
		rows, err := db.QueryContext(ctx, q, from, clampNano(cutoff), event.ServerStream, evidence.RetentionType, pruneChunk)
		if err != nil {
			return total, fmt.Errorf("eventlog: prune: %w", err)
		}
		var n int64
		for rows.Next() {
			var idx int64
			if err := rows.Scan(&idx); err != nil {
				rows.Close()
				return total, fmt.Errorf("eventlog: prune: %w", err)
			}
			n, from = n+1, max(from, idx+1)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return total, fmt.Errorf("eventlog: prune: %w", err)
		}
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}

// Prunable counts the events Prune(cutoff) would clear now.
func (c *core) Prunable(ctx context.Context, cutoff time.Time) (int64, error) {
	var n int64
	err := c.rdb.QueryRowContext(ctx, c.bind(`SELECT COUNT(*) FROM events WHERE received < ? AND control IS NOT NULL
		AND NOT (agent = ? AND type = ?)`), clampNano(cutoff), event.ServerStream, evidence.RetentionType).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("eventlog: prunable: %w", err)
	}
	return n, nil
}

// SetClock replaces the clock the store stamps received times with. It is
// for tests and must be called before the first append.
func (c *core) SetClock(now func() time.Time) { c.now = now }

// NewestPruned returns the pruned event (payload cleared) received last,
// with ok false when there is none. It reads the events_pruned index, not
// the log.
func (c *core) NewestPruned(ctx context.Context) (st Stored, ok bool, err error) {
	var (
		seq, recv int64
		hash      []byte
	)
	err = c.rdb.QueryRowContext(ctx, `SELECT idx, agent, seq, received, hash FROM events WHERE control IS NULL
		ORDER BY received DESC LIMIT 1`).Scan(&st.Index, &st.Agent, &seq, &recv, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return Stored{}, false, nil
	}
	if err != nil {
		return Stored{}, false, fmt.Errorf("eventlog: newest pruned: %w", err)
	}
	st.Seq, st.Received, st.Hash, st.Pruned = uint64(seq), time.Unix(0, recv).UTC(), hex.EncodeToString(hash), true
	return st, true, nil
}
