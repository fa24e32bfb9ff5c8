package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

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
	Log    Log
	Signer note.Signer
	Mirror func(ctx context.Context, signed []byte) error // e.g. state.PutCheckpoint (etcd); may be nil
	// Advance, when set, replaces Mirror: it stores signed only if the
	// extends check accepts the copy it holds (state.AdvanceCheckpoint,
	// compare-and-swap), so the outside copy only moves forward. Verifier
	// (the log's public key) opens that copy.
	Advance   func(ctx context.Context, signed []byte, extends func(old []byte) error) error
	Verifier  note.Verifier
	Interval  time.Duration
	MaxEvents int64
	Logger    zerolog.Logger
	// Signing, when set, says whether this server signs (the writer). When
	// it says no (a standby), Latest and SignNow return the newest
	// checkpoint in the store, which the writer signed, and sign nothing.
	Signing func() bool

	mu   sync.Mutex
	last eventlog.Checkpoint
}

// Latest returns the newest checkpoint signed or loaded.
func (c *Checkpointer) Latest(ctx context.Context) (eventlog.Checkpoint, error) {
	if c.following() {
		return c.Log.LatestCheckpoint(ctx)
	}
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
// already covers it, and returns it. A server that does not sign returns
// the newest one stored.
func (c *Checkpointer) SignNow(ctx context.Context) (eventlog.Checkpoint, error) {
	if c.following() {
		return c.Log.LatestCheckpoint(ctx)
	}
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
	if c.Advance != nil {
		if err := c.Advance(ctx, msg, func(old []byte) error { return c.extends(ctx, old, cp) }); err != nil {
			level := c.Logger.Warn()
			if errors.Is(err, ErrNotExtension) {
				level = c.Logger.Error() // the store is behind or forked from etcd's copy
			}
			level.Err(err).Int64("size", n).Msg("checkpoint not mirrored to etcd")
		}
	} else if c.Mirror != nil {
		// The etcd copy lives apart from the store, so start-up checks the
		// store against it (VerifyLogAgainst). It may lag behind the store,
		// which only weakens that check, so a failure here only warns.
		if err := c.Mirror(ctx, msg); err != nil {
			c.Logger.Warn().Err(err).Int64("size", n).Msg("checkpoint not mirrored to etcd")
		}
	}
	return cp, nil
}

// following reports whether this server reads the writer's checkpoints
// rather than signing its own (Signing).
func (c *Checkpointer) following() bool { return c.Signing != nil && !c.Signing() }

// ErrNotExtension is returned when a new checkpoint is not a consistent
// extension of the one kept outside the store: the store was rolled back or
// forked, and the outside copy is left as it is.
var ErrNotExtension = errors.New("audit: checkpoint is not a consistent extension of the one kept outside the store")

// extends checks that cp extends the signed checkpoint old (nil: none): at
// least as large, and the tlog consistency proof from old to cp verifies.
func (c *Checkpointer) extends(ctx context.Context, old []byte, cp eventlog.Checkpoint) error {
	if old == nil {
		return nil
	}
	if c.Verifier == nil {
		return fmt.Errorf("%w: no verifier to open it", ErrNotExtension)
	}
	oc, err := evidence.Open(old, c.Verifier)
	if err != nil {
		return fmt.Errorf("%w: it does not verify: %v", ErrNotExtension, err)
	}
	return ConsistentExtension(ctx, c.Log, oc, cp.Size, cp.Root)
}

// ConsistentExtension checks that the stored tree of size n with root root
// extends the signed checkpoint old, with a consistency proof from l.
func ConsistentExtension(ctx context.Context, l Log, old evidence.Checkpoint, n int64, root tlog.Hash) error {
	switch {
	case old.Size == 0:
		return nil // every log extends the empty one (and tlog proves no tree from size 0)
	case old.Size > n:
		return fmt.Errorf("%w: the outside copy covers %d events, this one %d: the store is behind it", ErrNotExtension, old.Size, n)
	case old.Size == n:
		if old.Root != root {
			return fmt.Errorf("%w: both cover %d events with different roots (%s, %s): the log forked", ErrNotExtension, n, old.Root, root)
		}
		return nil
	}
	proof, err := tlog.ProveTree(n, old.Size, l)
	if err != nil {
		return fmt.Errorf("audit: consistency proof %d..%d: %w", old.Size, n, err)
	}
	if err := tlog.CheckTree(proof, n, root, old.Size, old.Root); err != nil {
		return fmt.Errorf("%w: the log at %d does not extend the outside copy at %d: %v", ErrNotExtension, n, old.Size, err)
	}
	return nil
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
