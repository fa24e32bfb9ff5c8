package eventlog

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Following the log on a standby. A store that is not the writer (deposed)
// commits nothing, so its own tree size and stream count stay at what it
// loaded or last committed while the writer goes on. Its read side (tree
// size, proofs, /metrics) follows the database instead: the committed size
// is one primary-key lookup, read at most every followEvery however many
// requests ask. Every index below it is committed with its Merkle hashes
// (the writer commits groups one after another, each in one transaction).

// followEvery bounds how often a deposed store reads the committed size.
const followEvery = 500 * time.Millisecond

type follower struct {
	mu     sync.Mutex // held across the read: one query at a time
	at     time.Time
	size   int64
	agents int64
}

// readSize is the committed tree size reads are bounded by: the writer's
// own, or on a deposed store the database's (never below what this store
// committed or saw before).
func (s *core) readSize(ctx context.Context) (int64, error) {
	n := s.size.Load()
	if s.epoch.Load() != deposedEpoch {
		return n, nil
	}
	f := &s.follow
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.at) >= followEvery {
		var m int64
		if err := s.rdb.QueryRowContext(ctx, s.sizeSQL()).Scan(&m); err != nil {
			return 0, fmt.Errorf("eventlog: committed tree size: %w", err)
		}
		f.size, f.at = max(f.size, m), time.Now()
	}
	return max(n, f.size), nil
}

// readSizeAtLeast is readSize, read from the database at once when a
// deposed store's followed size is below need: a reader may hold the
// writer's newer checkpoint (a standby serves it) and must not be told its
// size is out of range until the next followEvery.
func (s *core) readSizeAtLeast(ctx context.Context, need int64) (int64, error) {
	n, err := s.readSize(ctx)
	if err != nil || n >= need || s.epoch.Load() != deposedEpoch {
		return n, err
	}
	s.follow.mu.Lock()
	s.follow.at = time.Time{}
	s.follow.mu.Unlock()
	return s.readSize(ctx)
}

// readAgents is the number of streams for /metrics, followed as readSize.
// Counting the heads reads one row per agent, so it is only done for
// Stats, which a scraper asks every few seconds at most.
func (s *core) readAgents(ctx context.Context) (int64, error) {
	n := s.agents.Load()
	if s.epoch.Load() != deposedEpoch {
		return n, nil
	}
	var m int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM heads`).Scan(&m); err != nil {
		return 0, fmt.Errorf("eventlog: stream count: %w", err)
	}
	return max(n, m), nil
}
