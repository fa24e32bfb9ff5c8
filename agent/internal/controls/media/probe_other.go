//go:build !windows && !linux && !darwin

package media

import (
	"context"
	"errors"
	"fmt"

	"github.com/mamori/mamori/agent/internal/controls"
)

func newProbe(controls.Env) probe { return unsupported{} }

var errUnsupported = fmt.Errorf("media: removable media on this OS: %w", errors.ErrUnsupported)

type unsupported struct{}

func (unsupported) list(context.Context) ([]Device, error) { return nil, errUnsupported }
func (unsupported) enforce(context.Context, Device, string) (string, error) {
	return "", errUnsupported
}
func (unsupported) classPolicy(context.Context, bool, bool) error { return errUnsupported }

func (unsupported) release(Device) {}
