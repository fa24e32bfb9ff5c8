//go:build !linux && !darwin && !windows

package app

import (
	"errors"
	"fmt"
)

// raiseFDLimit is not implemented here; the connection cap is the default.
func raiseFDLimit() (uint64, error) {
	return 0, fmt.Errorf("app: fd limit: %w", errors.ErrUnsupported)
}
