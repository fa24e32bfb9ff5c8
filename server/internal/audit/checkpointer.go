package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/evidence"
)

// Checkpoint cadence: a new signed checkpoint when the log has grown and
// Interval has passed, or at once when it has grown by MaxEvents.
const (
	DefaultInterval  = 10 * time.Second
	DefaultMaxEvents = 10000
)

// Checkpointer signs checkpoints of the log.
type Checkpointer struct {
	Log       Log
	Signer    note.Signer
	Mirror    func(ctx context.Context, signed []byte) error // e.g. state.PutCheckpoint (etcd); may be nil
	Interval  time.Duration
	MaxEvents int64
	Logger    zerolog.Logger

	mu   sync.Mutex
	last eventlog.Checkpoint
}

// Latest returns the newest checkpoint signed or loaded.
func (c *Checkpointer) Latest(ctx context.Context) (eventlog.Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.Note == "" {
		cp, err := c.Log.LatestCheckpoint(ctx)
		if err != nil {
			return eventlog.Checkpoint{}, err
		}
		c.last = cp
	}
	return c.last, nil
}

// SignNow signs a checkpoint of the whole log now, unless the newest one
// already covers it, and returns it.
func (c *Checkpointer) SignNow(ctx context.Context) (eventlog.Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.signLocked(ctx)
}

func (c *Checkpointer) signLocked(ctx context.Context) (eventlog.Checkpoint, error) {
	if c.last.Note == "" {
		cp, err := c.Log.LatestCheckpoint(ctx)
		if err != nil && !errors.Is(err, eventlog.ErrNoCheckpoint) {
			return eventlog.Checkpoint{}, fmt.Errorf("audit: %w", err)
		}
		c.last = cp
	}
	n, err := c.Log.TreeSize(ctx)
	if err != nil {
		return eventlog.Checkpoint{}, fmt.Errorf("audit: %w", err)
	}
	if c.last.Note != "" && n == c.last.Size {
		return c.last, nil
	}
	root, err := c.Log.TreeHash(ctx, n)
	if err != nil {
		return eventlog.Checkpoint{}, fmt.Errorf("audit: tree hash at %d: %w", n, err)
	}
	msg, err := evidence.Sign(evidence.Checkpoint{Origin: c.Signer.Name(), Size: n, Root: root}, c.Signer)
	if err != nil {
		return eventlog.Checkpoint{}, err
	}
	cp := eventlog.Checkpoint{Size: n, Root: root, Note: string(msg), Created: time.Now().UTC()}
	if err := c.Log.PutCheckpoint(ctx, cp); err != nil {
		return eventlog.Checkpoint{}, fmt.Errorf("audit: store checkpoint: %w", err)
	}
	c.last = cp
	if c.Mirror != nil {
		// The etcd copy lives apart from the store, so start-up checks the
		// store against it (VerifyLogAgainst). It may lag behind the store,
		// which only weakens that check, so a failure here only warns.
		if err := c.Mirror(ctx, msg); err != nil {
			c.Logger.Warn().Err(err).Int64("size", n).Msg("checkpoint not mirrored to etcd")
		}
	}
	return cp, nil
}

// Run signs checkpoints on the cadence until ctx ends.
func (c *Checkpointer) Run(ctx context.Context) {
	interval, maxEvents := c.Interval, c.MaxEvents
	if interval <= 0 {
		interval = DefaultInterval
	}
	if maxEvents <= 0 {
		maxEvents = DefaultMaxEvents
	}
	poll := min(interval, 500*time.Millisecond)
	t := time.NewTicker(poll)
	defer t.Stop()
	lastSigned := time.Now()
	for {
		select {
		case <-ctx.Done():
			// A final checkpoint so a clean shutdown leaves everything signed.
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := c.SignNow(sctx); err != nil {
				c.Logger.Warn().Err(err).Msg("final checkpoint")
			}
			cancel()
			return
		case <-t.C:
		}
		n, err := c.Log.TreeSize(ctx)
		if err != nil {
			continue
		}
		c.mu.Lock()
		grown := n - c.last.Size
		due := c.last.Note == "" && n > 0 || grown > 0 && (time.Since(lastSigned) >= interval || grown >= maxEvents)
		if due {
			if cp, err := c.signLocked(ctx); err != nil {
				if ctx.Err() == nil {
					c.Logger.Error().Err(err).Msg("checkpoint")
				}
			} else {
				lastSigned = time.Now()
				c.Logger.Debug().Int64("size", cp.Size).Msg("checkpoint signed")
			}
		}
		c.mu.Unlock()
	}
}
