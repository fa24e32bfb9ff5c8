package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"
)

// WAL checkpoints run off the commit path. Every connection of the write
// pool has wal_autocheckpoint off, so no commit copies WAL frames into the
// database file (11% of the writer's time at saturation when SQLite did it
// inside the commit, see docs/ingest.md). checkpointer does it instead on its
// own connection: PASSIVE checkpoints, which never wait for the writer, and
// a TRUNCATE when the WAL has grown past walLarge (readers holding old
// snapshots keep PASSIVE from ever finishing), taken under the write lock so
// the writer waits on a Go mutex, not in SQLite's busy handler.
const (
	checkpointEvery = 500 * time.Millisecond
	// walCheckpointAt: a WAL file smaller than this is left alone, as
	// SQLite's automatic checkpoint (1,000 pages) would: copying a few pages
	// at a time costs a database fsync each, and on a nearly full disk the
	// copy would take the room a commit needs.
	walCheckpointAt = 4 << 20
	// walLarge bounds the WAL: past it the checkpointer truncates it. The
	// writer's connection also has journal_size_limit at walLarge, so a WAL
	// that SQLite restarts from the beginning is cut back to it.
	walLarge = 64 << 20
)

// checkpointer runs until the store closes.
func (s *SQLite) checkpointer(conn *sql.Conn) {
	defer s.bg.Done()
	defer conn.Close()
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	var last int64 = -1
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		n := s.size.Load()
		if n == last {
			continue // nothing committed since the last checkpoint
		}
		if fi, err := os.Stat(s.path + "-wal"); err != nil || fi.Size() < walCheckpointAt {
			continue
		}
		last = n
		if err := s.checkpointWAL(context.Background(), conn); err != nil {
			s.log.Warn().Err(err).Msg("WAL checkpoint")
		}
	}
}

// checkpointWAL runs one PASSIVE checkpoint and, if the WAL is still larger
// than walLarge, a TRUNCATE one under the write lock.
func (s *SQLite) checkpointWAL(ctx context.Context, conn *sql.Conn) error {
	var busy, frames, done int64
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &done); err != nil {
		return fmt.Errorf("eventlog: wal checkpoint: %w", err)
	}
	if frames*s.pageSize <= walLarge {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done); err != nil {
		return fmt.Errorf("eventlog: wal checkpoint: %w", err)
	}
	if busy != 0 {
		s.log.Info().Int64("frames", frames).Int64("checkpointed", done).Msg("WAL not truncated: readers hold old snapshots")
	}
	return nil
}
