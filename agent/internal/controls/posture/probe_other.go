//go:build !windows && !linux && !darwin

package posture

import (
	"context"
	"errors"
	"fmt"

	"github.com/mamori/mamori/agent/internal/controls"
)

// otherProbe: no checks on this OS; every check reports unknown.
type otherProbe struct{}

func newProbe(controls.Env) probe { return otherProbe{} }

var errOther = fmt.Errorf("posture: %w on this OS", errors.ErrUnsupported)

func (otherProbe) diskEncryption(context.Context) (diskFact, error) { return diskFact{}, errOther }
func (otherProbe) antivirus(context.Context) (avFact, error)        { return avFact{}, errOther }
func (otherProbe) lastUpdate(context.Context) (updateFact, error)   { return updateFact{}, errOther }
func (otherProbe) firewall(context.Context) (firewallFact, error)   { return firewallFact{}, errOther }
