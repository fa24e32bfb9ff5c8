package eventlog

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/mamori/mamori/shared/event"
)

// HeadsRebuiltType is the server event recorded when the heads table (each
// stream's cached last seq and hash) disagreed with the log on open and was
// rebuilt from it. attrs: "streams" (how many), "agents" (up to 20 ids).
const HeadsRebuiltType = "server.heads_rebuilt"

// checkHeads compares the heads just loaded with the log itself, through
// db, and rebuilds each one that disagrees. The heads table is a cache the
// chain checks trust: one edited to a higher seq would have an agent's next
// events taken for duplicates, acknowledged and dropped; one with another
// hash would refuse the agent's real chain. It costs two index lookups per
// stream, not a scan of the log: through the (agent, seq) index, or on
// SQLite through agent_runs, whose last run of a stream ends at its last
// event.
func (s *core) checkHeads(ctx context.Context, db dbtx) error {
	nextSQL := `SELECT agent FROM events WHERE agent > ? ORDER BY agent LIMIT 1`
	lastSQL := `SELECT seq, hash, received FROM events WHERE agent = ? ORDER BY seq DESC LIMIT 1`
	countSQL := `SELECT COUNT(*) FROM events WHERE agent = ?`
	if s.ranges {
		nextSQL = `SELECT stream FROM agent_runs WHERE stream > ? ORDER BY stream LIMIT 1`
		lastSQL = `SELECT seq, hash, received FROM agent_runs CROSS JOIN events ON idx = pos + n - 1
			WHERE stream = ? ORDER BY seq_lo DESC LIMIT 1`
		countSQL = `SELECT COUNT(*) FROM agent_runs CROSS JOIN events ON idx >= pos AND idx < pos + n
			WHERE stream = ?1 AND +agent = ?1`
	}
	if s.records {
		// The last run that still has its last event, as rows or as a
		// record (an exact run): a run whose rows were cut by hand is
		// passed over, as the log says, not the runs.
		last := `SELECT seq, hash, received, seq_lo FROM agent_runs CROSS JOIN events ON idx = pos + n - 1
			WHERE stream = ?1 ORDER BY seq_lo DESC LIMIT 1`
		lastSQL = `SELECT seq, hash, received FROM (SELECT * FROM (` + last + `) UNION ALL SELECT * FROM (` +
			runsOverRecords(last) + `)) ORDER BY seq_lo DESC LIMIT 1`
		countSQL = `SELECT (SELECT COUNT(*) FROM agent_runs CROSS JOIN events ON idx >= pos AND idx < pos + n
			WHERE stream = ?1 AND pos < ?2 AND +agent = ?1) + (SELECT coalesce(sum(n), 0) FROM agent_runs WHERE stream = ?1 AND pos >= ?2)`
	}
	s.rebuilt, s.dirty = nil, map[string]bool{}
	var (
		agents []string
		last   string
	)
	for {
		var a string
		err := db.QueryRowContext(ctx, s.bind(nextSQL), last).Scan(&a)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return fmt.Errorf("eventlog: check heads: %w", err)
		}
		agents, last = append(agents, a), a
	}
	seen := make(map[string]bool, len(agents))
	for _, a := range agents {
		seen[a] = true
		var (
			seq, recv int64
			hash      []byte
		)
		err := db.QueryRowContext(ctx, s.bind(lastSQL), a).Scan(&seq, &hash, &recv)
		if err != nil {
			return fmt.Errorf("eventlog: check head %q: %w", a, err)
		}
		if h := s.heads[a]; h != nil && h.seq == uint64(seq) && h.hash == hex.EncodeToString(hash) {
			continue
		}
		var n int64
		args := []any{a}
		if s.records {
			args = append(args, s.recordsFrom())
		}
		if err := db.QueryRowContext(ctx, s.bind(countSQL), args...).Scan(&n); err != nil {
			return fmt.Errorf("eventlog: rebuild head %q: %w", a, err)
		}
		s.log.Error().Str("agent", a).Int64("seq", seq).Msg("stream head disagreed with the log: rebuilt from the log")
		s.heads[a] = &head{seq: uint64(seq), hash: hex.EncodeToString(hash), lastSeen: recv, events: n}
		s.rebuilt, s.dirty[a] = append(s.rebuilt, a), true
	}
	for a := range s.heads {
		if seen[a] {
			continue
		}
		s.log.Error().Str("agent", a).Msg("stream head without events in the log: dropped")
		delete(s.heads, a)
		s.rebuilt, s.dirty[a] = append(s.rebuilt, a), true
	}
	return nil
}

// writeDirty adds to t the heads checkHeads rebuilt: their values, or
// their rows to delete.
func (s *core) writeDirty(t *txn) {
	for a := range s.dirty {
		if _, ok := t.heads[a]; ok {
			continue
		}
		if h, ok := s.heads[a]; ok {
			c := *h
			t.heads[a] = &c
		} else {
			t.drop = append(t.drop, a)
		}
	}
}

// recordRebuilt puts the heads checkHeads rebuilt on open into the log, so
// the edit is evidence rather than only a log line. The record's commit
// writes the rebuilt heads (writeDirty): until it lands, every open finds
// the table disagreeing again.
func (s *core) recordRebuilt(ctx context.Context) error {
	if len(s.rebuilt) == 0 {
		return nil
	}
	ids := s.rebuilt[:min(len(s.rebuilt), 20)]
	list := make([]any, len(ids))
	for i, a := range ids {
		list[i] = a
	}
	_, err := s.AppendServer(ctx, event.Event{Control: GapControl, Type: HeadsRebuiltType, Severity: event.Violation,
		Attrs: event.Attrs{"streams": len(s.rebuilt), "agents": list}})
	if err != nil {
		return fmt.Errorf("eventlog: record rebuilt heads: %w", err)
	}
	s.rebuilt = nil
	return nil
}
