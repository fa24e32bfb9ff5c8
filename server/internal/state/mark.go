package state

import (
	"context"
	"errors"
	"fmt"
)

const verifiedMarkKey = "verified-mark"

// VerifiedMark returns the latest signed "verified through N" mark (opaque
// bytes; server/internal/audit signs and reads it), or nil when none.
func (s *State) VerifiedMark(ctx context.Context) ([]byte, error) {
	b, _, err := s.get(ctx, verifiedMarkKey)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return b, err
}

// PutVerifiedMark stores the latest verified mark.
func (s *State) PutVerifiedMark(ctx context.Context, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("state: %w: empty mark", ErrInvalid)
	}
	_, err := s.putIf(ctx, verifiedMarkKey, b, -1)
	return err
}

// DropVerifiedMark forgets the mark, so the next start checks the whole
// log: the scrubber does so when it finds the log changed.
func (s *State) DropVerifiedMark(ctx context.Context) error {
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	defer s.avail.forget(verifiedMarkKey)
	if _, err := s.cli.Delete(ctx, key(verifiedMarkKey)); err != nil {
		return fmt.Errorf("state: delete mark: %w", s.etcdErr(ctx, err))
	}
	return nil
}
