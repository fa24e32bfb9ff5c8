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
// own connection: PASSIVE checkpoints, which never wait for the writer, and,
// once the WAL has grown past walLarge (PASSIVE copies the frames but the WAL
// only starts again from its beginning when the writer finds no reader in
// it, which under steady reads is seldom), a RESTART taken under the write
// lock, so the writer waits on a Go mutex, not in SQLite's busy handler.
// RESTART, not TRUNCATE: the file is reused in place. Truncating it cost a
// file-system journal commit under the write lock and a file that grew again
// on every commit: 85-214 ms stalls every 4 s at 20,000 events/s, where a
// RESTART holds the lock some 4 ms.
//
// checkpointEvery: small copies often. Paced at 20,000 events/s, ack p99 was
// 54-74 ms with 200 ms here against 68-186 with 500 (six alternating pairs),
// and 124-194 with 2 s: a copy into the database file holds back the
// writer's fsync, the longer the larger it is.
const checkpointEvery = 200 * time.Millisecond

// walCheckpointAt: a WAL file smaller than this is left alone, as SQLite's
// automatic checkpoint (1,000 pages) would: copying a few pages at a time
// costs a database fsync each, and on a nearly full disk the copy would take
// the room a commit needs. It reads the file's size, which a restart keeps:
// once the file has grown this large, every tick with new commits
// checkpoints, and the commits reuse the file's room. A variable for tests
// (export_test.go).
var walCheckpointAt int64 = 4 << 20

// walLarge bounds the WAL: past it the checkpointer restarts it. The
// writer's connection also has journal_size_limit at walLarge, so a WAL
// file that grew past it is cut back to it when it restarts. A variable for
// tests (export_test.go).
var walLarge int64 = 64 << 20

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
// than walLarge, a RESTART one under the write lock.
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
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &frames, &done); err != nil {
		return fmt.Errorf("eventlog: wal checkpoint: %w", err)
	}
	// Busy is usual (a reader in the WAL for 20 ms): the next tick tries
	// again. A WAL four times its bound means a reader holds on for long.
	if busy != 0 {
		ev := s.log.Debug()
		if frames*s.pageSize > 4*walLarge {
			ev = s.log.Warn()
		}
		ev.Int64("frames", frames).Int64("checkpointed", done).Msg("WAL not restarted: readers hold old snapshots; trying again")
	}
	return nil
}
