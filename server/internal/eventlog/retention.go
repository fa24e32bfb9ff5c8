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
	n, err := s.prune(ctx, s.wdb, cutoff) // SQLite has one writer connection
	if err != nil {
		return n, err
	}
	m, err := s.pruneRecords(ctx, cutoff)
	return n + m, err
}

// pruneRecordsChunk bounds the records one transaction rewrites (each at
// most runMax events).
const pruneRecordsChunk = 8

// pruneRecords is prune for records: each record received before cutoff
// and not yet looked at is rewritten with its events' payload fields
// cleared, retention records kept, in log order, a chunk a transaction.
func (s *SQLite) pruneRecords(ctx context.Context, cutoff time.Time) (int64, error) {
	var total, from int64
	keep := func(r *rawEvent) bool { return string(r.str[fType]) == evidence.RetentionType }
	for {
		n, next, err := s.pruneRecordChunk(ctx, from, clampNano(cutoff), keep)
		if total += n; err != nil {
			return total, fmt.Errorf("eventlog: prune records: %w", err)
		}
		if next < 0 {
			return total, nil
		}
		from = next
	}
}

// pruneRecordChunk rewrites up to pruneRecordsChunk records from log index
// from on and returns the events it cleared and where the next chunk
// starts (-1: none left).
func (s *SQLite) pruneRecordChunk(ctx context.Context, from, cutoff int64, keep func(*rawEvent) bool) (int64, int64, error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT lo, agent, payload FROM records WHERE lo >= ? AND received < ? AND pruned IS NULL
		ORDER BY lo LIMIT ?`, from, cutoff, pruneRecordsChunk)
	if err != nil {
		return 0, 0, err
	}
	type rewrite struct {
		lo      int64
		payload []byte
		cleared int
	}
	var todo []rewrite
	for rows.Next() {
		var (
			lo    int64
			agent string
			b     []byte
		)
		if err := rows.Scan(&lo, &agent, &b); err != nil {
			rows.Close()
			return 0, 0, err
		}
		p, err := parsePayload(b)
		if err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("record %d: %w", lo, err)
		}
		k := func(*rawEvent) bool { return false }
		if agent == event.ServerStream {
			k = keep
		}
		out, cleared, err := prunedPayload(p, k)
		if err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("record %d: %w", lo, err)
		}
		todo = append(todo, rewrite{lo, out, cleared})
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, 0, err
	}
	var n int64
	for _, r := range todo {
		if _, err := tx.ExecContext(ctx, `UPDATE records SET payload = ?, pruned = ? WHERE lo = ?`, r.payload, r.cleared, r.lo); err != nil {
			return 0, 0, err
		}
		n += int64(r.cleared)
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, err
	}
	if len(todo) < pruneRecordsChunk {
		return n, -1, nil
	}
	return n, todo[len(todo)-1].lo + 1, nil
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
	if c.records {
		var m int64
		err := c.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM records CROSS JOIN record_events(records.payload, records.lo, records.hi) AS e
			WHERE received < ? AND pruned IS NULL AND NOT (agent = ? AND e.type = ?)`,
			clampNano(cutoff), event.ServerStream, evidence.RetentionType).Scan(&m)
		if err != nil {
			return 0, fmt.Errorf("eventlog: prunable: %w", err)
		}
		n += m
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
	q := `SELECT idx, agent, seq, received, hash FROM events WHERE control IS NULL ORDER BY received DESC LIMIT 1`
	if c.records {
		// The last cleared event of the record pruned last, or the row.
		q = `SELECT * FROM (` + q + `) UNION ALL SELECT * FROM (SELECT events.idx, agent, events.seq, received, events.hash
			FROM (SELECT lo, hi, agent, received, payload FROM records WHERE pruned > 0 ORDER BY received DESC LIMIT 1) AS records
			CROSS JOIN record_events(records.payload, records.lo, records.hi) AS events WHERE events.control IS NULL ORDER BY events.idx DESC LIMIT 1)
			ORDER BY received DESC, idx DESC LIMIT 1`
	}
	err = c.rdb.QueryRowContext(ctx, q).Scan(&st.Index, &st.Agent, &seq, &recv, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return Stored{}, false, nil
	}
	if err != nil {
		return Stored{}, false, fmt.Errorf("eventlog: newest pruned: %w", err)
	}
	st.Seq, st.Received, st.Hash, st.Pruned = uint64(seq), time.Unix(0, recv).UTC(), hex.EncodeToString(hash), true
	return st, true, nil
}
