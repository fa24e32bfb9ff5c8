package state

import (
	"context"
	"strings"
)

// ListJSON returns the keys (below dir) and raw JSON values of every key
// under dir, a relative key prefix such as "incidents/", sorted by key.
func (s *State) ListJSON(ctx context.Context, dir string) ([]string, [][]byte, error) {
	if err := checkKey(strings.TrimSuffix(dir, "/")); err != nil {
		return nil, nil, err
	}
	return s.list(ctx, dir, false)
}
