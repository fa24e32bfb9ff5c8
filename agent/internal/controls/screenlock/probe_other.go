//go:build !windows && !linux && !darwin

package screenlock

import (
	"context"
	"errors"
	"fmt"

	"github.com/mamori/mamori/agent/internal/controls"
)

type unsupportedProbe struct{}

func newProbe(controls.Env) probe { return unsupportedProbe{} }

func (unsupportedProbe) read(context.Context) ([]Target, error) {
	return nil, fmt.Errorf("screenlock: %w on this OS", errors.ErrUnsupported)
}

func (unsupportedProbe) enforce(context.Context, Want, []Target) ([]Applied, error) {
	return nil, fmt.Errorf("screenlock: %w on this OS", errors.ErrUnsupported)
}
