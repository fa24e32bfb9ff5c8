package eventlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Fencing. Several servers may have a store open on one database, but only
// the elected writer may commit (server/internal/election). Its epoch (the
// election's leader revision, larger for every later writer) is written to
// the one-row table writer_epoch in the same transaction as every commit,
// by an UPDATE that matches only while the stored epoch is not newer; a
// commit that matches no row fails with ErrFenced and stores nothing. So a
// writer that lost its lease while frozen or cut off cannot append once its
// successor has claimed the store, whatever its memory says.
//
// This replaces a session lock on the database: a frozen writer holds such
// a lock for as long as its TCP connection lives, which blocks a takeover.

// ErrFenced is wrapped by commits of a store whose writer epoch is older
// than the one the database holds (a newer writer has taken over), or that
// was deposed, and by ClaimEpoch when the database holds a newer epoch.
var ErrFenced = errors.New("eventlog: another server has taken over writing this event store (writer epoch fenced)")

// Fencing SQL; the same text for both backends after bind.
const (
	fenceSQL       = `UPDATE writer_epoch SET epoch = ? WHERE epoch <= ?`
	storedEpochSQL = `SELECT epoch FROM writer_epoch`
)

// deposedEpoch is below every real epoch (0 is the epoch of a new store).
const deposedEpoch = -1

// fenceResult checks the rows an epoch update matched.
func fenceResult(epoch, matched int64) error {
	switch {
	case matched == 1:
	case epoch == deposedEpoch:
		return fmt.Errorf("%w: this server stepped down as writer and may not commit", ErrFenced)
	default:
		// epoch is this server's; the store holds a newer writer's.
		return fmt.Errorf("%w: this server's writer epoch %d is older than the store's", ErrFenced, epoch)
	}
	return nil
}

// StoredEpoch returns the writer epoch the database holds.
func (s *core) StoredEpoch(ctx context.Context) (int64, error) {
	var e int64
	if err := s.rdb.QueryRowContext(ctx, storedEpochSQL).Scan(&e); err != nil {
		return 0, fmt.Errorf("eventlog: writer epoch: %w", err)
	}
	return e, nil
}

// Epoch returns the epoch this store commits with (-1 when deposed).
func (s *core) Epoch() int64 { return s.epoch.Load() }

// Depose makes every later commit of this store fail with ErrFenced, at
// once and without a database round trip deciding it, until the next
// ClaimEpoch: for a writer that has lost its lease. Reads go on.
func (s *core) Depose() { s.epoch.Store(deposedEpoch) }

// claimEpoch records epoch in the database through db (a connection other
// than the writer's) unless it holds a newer one, and then has the writer
// reload the heads, the Merkle frontier and the last record before its next
// group: an older writer may have committed up to the claim, and nothing
// after it.
func (s *core) claimEpoch(ctx context.Context, db *sql.DB, epoch int64) error {
	if epoch < 0 {
		return fmt.Errorf("eventlog: writer epoch %d is negative", epoch)
	}
	res, err := db.ExecContext(ctx, s.bind(fenceSQL), epoch, epoch)
	if err != nil {
		return fmt.Errorf("eventlog: claim writer epoch %d: %w", epoch, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("eventlog: claim writer epoch %d: %w", epoch, err)
	}
	if n != 1 {
		stored, _ := s.StoredEpoch(ctx)
		return fmt.Errorf("%w: claiming epoch %d, the store holds %d", ErrFenced, epoch, stored)
	}
	s.epoch.Store(epoch)
	s.reload.Store(true)
	// An empty request runs one group (nothing to write) and so the reload
	// on the writer goroutine, which owns the state it replaces.
	r := &request{done: make(chan struct{})}
	if err := s.submit(ctx, r); err != nil {
		return err
	}
	if err := s.reloadErr(); err != nil {
		return fmt.Errorf("eventlog: claim writer epoch %d: %w", epoch, err)
	}
	s.log.Info().Int64("epoch", epoch).Int64("events", s.size.Load()).Msg("writer epoch claimed, log head reloaded")
	if err := s.recordRebuilt(ctx); err != nil {
		return fmt.Errorf("eventlog: claim writer epoch %d: %w", epoch, err)
	}
	return nil
}

// reloadErr is the outcome of the last reload (nil while none failed).
func (s *core) reloadErr() error {
	if s.reload.Load() {
		return errors.New("log head not reloaded (see the log)")
	}
	return nil
}

// claimed wraps a backend so that a claim's reload runs on the writer
// goroutine before the next group is planned.
type claimed struct {
	backend
	s *core
}

func (c claimed) prepare(ctx context.Context) error {
	if err := c.backend.prepare(ctx); err != nil {
		return err
	}
	s := c.s
	if !s.reload.Load() {
		return nil
	}
	old := s.heads
	s.heads = make(map[string]*head)
	if err := s.loadConsistent(ctx); err != nil {
		s.heads = old
		return err // reload stays set: the next group tries again
	}
	s.reload.Store(false)
	return nil
}
