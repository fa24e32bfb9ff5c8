package register

import (
	"context"
	"fmt"
)

// Return records that an approved carry-out's device came back: the
// approval becomes returned (its window no longer opens the device) with
// when, by whom and the result (e.g. "データ消去を確認"). rev 0 returns
// whatever revision is current.
func (s *Service) Return(ctx context.Context, who, id string, rev int64, result string) (Change, error) {
	if len(result) > maxField {
		return Change{}, ValidationError{{Field: "result", Msg: fmt.Sprintf("longer than %d bytes", maxField)}}
	}
	e, err := s.Get(ctx, KindApprovals, id)
	if err != nil {
		return Change{}, err
	}
	a := e.(*Approval)
	if rev != 0 && a.Revision != rev {
		return Change{}, fmt.Errorf("register: approval %s is at revision %d, not %d: %w", id, a.Revision, rev, ErrConflict)
	}
	if a.Status != StatusApproved {
		return Change{}, fmt.Errorf("register: approval %s is %s, not approved: %w", id, a.Status, ErrConflict)
	}
	before, err := encode(a)
	if err != nil {
		return Change{}, err
	}
	a.Status, a.Returned = StatusReturned, s.now().UTC()
	if result != "" {
		a.Result = result
	}
	cs, err := s.commit(ctx, who, []write{{e: a, rev: a.Revision, before: before, action: ActionReturned}})
	if err != nil {
		return Change{}, err
	}
	return cs[0], nil
}
