package app

import (
	"errors"
	"fmt"
)

// raiseFDLimit: Windows has no per-process descriptor limit for sockets
// (handles are bounded by memory), so the connection cap is the default.
func raiseFDLimit() (uint64, error) {
	return 0, fmt.Errorf("app: fd limit: no per-process limit on Windows: %w", errors.ErrUnsupported)
}
