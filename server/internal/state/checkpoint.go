package state

import (
	"context"
	"errors"
	"fmt"
)

// AdvanceCheckpoint replaces the latest checkpoint with b only if extends
// accepts the one stored (nil when there is none) and nobody replaced it in
// between (compare-and-swap on its revision, retried a few times). The
// caller's extends checks that b is a consistent extension (a larger or
// equal tree whose consistency proof from the stored one verifies), so
// etcd's copy only ever moves forward: a server on a rolled-back store
// cannot overwrite it with a smaller one. extends' error is returned as is.
func (s *State) AdvanceCheckpoint(ctx context.Context, b []byte, extends func(old []byte) error) error {
	if len(b) == 0 {
		return fmt.Errorf("state: %w: empty checkpoint", ErrInvalid)
	}
	for range 5 {
		old, rev, err := s.get(ctx, checkpointKey)
		switch {
		case errors.Is(err, ErrNotFound):
			old, rev = nil, 0
		case err != nil:
			return err
		}
		if err := extends(old); err != nil {
			return err
		}
		if _, err := s.putIf(ctx, checkpointKey, b, rev); !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("state: checkpoint: %w: changed concurrently five times", ErrConflict)
}
