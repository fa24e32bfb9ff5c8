package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// MinRetention is the shortest retention the store accepts: Privacy Mark
// renewal reviews the last two years of records.
const MinRetention = 2 * 365 * 24 * time.Hour

// DefaultRetention keeps payloads three years.
const DefaultRetention = 3 * 365 * 24 * time.Hour

// pruneChunk bounds one pruning transaction so ingest is never held long.
const pruneChunk = 5000

// Prune clears the payload of events whose time is before cutoff: every
// field but agent, seq, time, prev, hash and the Merkle hashes becomes NULL.
// The log, each agent's chain and every old checkpoint and proof stay
// verifiable; the pruned events read back with Pruned set. It returns how
// many events it pruned.
func (s *SQLite) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	return s.prune(ctx, s.wdb, cutoff) // SQLite has one writer connection
}

// prune clears payloads in chunks of pruneChunk rows through db.
func (c *core) prune(ctx context.Context, db *sql.DB, cutoff time.Time) (int64, error) {
	q := c.bind(`UPDATE events SET control = NULL, type = NULL, severity = NULL,
		"user" = NULL, process = NULL, object = NULL, register_id = NULL, attrs = NULL
		WHERE idx IN (SELECT idx FROM events WHERE time < ? AND control IS NOT NULL LIMIT ?)`)
	var total int64
	for {
		res, err := db.ExecContext(ctx, q, clampNano(cutoff), pruneChunk)
		if err != nil {
			return total, fmt.Errorf("eventlog: prune: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}
