// Package controls is the framework every agent control plugs into: the
// Control interface, the environment a control gets (event emitter, clock,
// logger, state dir) and the status a control reports.
//
// A control package (screenlock, media, fileaccess, backup, posture) exports
// New(Env) Control; the list of controls lives in package controls/all.
package controls

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// Emitter makes an event durable. It fills Agent, Seq, Prev and Hash (and
// Time when zero) and returns only once the event is on disk, so a control
// may act (block a device, say) knowing its record exists. It returns an
// error when the spool refuses the event (full, closed).
type Emitter interface {
	Emit(ctx context.Context, e event.Event) error
}

// EmitterFunc adapts a function to Emitter.
type EmitterFunc func(ctx context.Context, e event.Event) error

// Emit calls f.
func (f EmitterFunc) Emit(ctx context.Context, e event.Event) error { return f(ctx, e) }

// Clock is time as a control sees it; tests use controlstest.FakeClock.
type Clock interface {
	Now() time.Time
	// After is time.After.
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time                         { return time.Now() }
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Env is what a control gets from the agent.
type Env struct {
	Emit     Emitter
	Clock    Clock
	Log      zerolog.Logger
	StateDir string // a directory of the control's own for snapshots, bookmarks, manifests
}

// Control is one safety control on the agent.
type Control interface {
	// Name is the control's policy key and event "control" field.
	Name() string
	// Apply adopts a new policy. It is called once before Run and again on
	// every policy change, possibly while Run runs; a control whose mode is
	// off stops observing. It returns an error for settings it cannot use
	// and keeps the previous ones then.
	Apply(ctx context.Context, p *policy.Policy) error
	// Run observes (and enforces) until ctx is done.
	Run(ctx context.Context) error
	// Status is the control's current verdict.
	Status() Status
}

// Factory makes a control.
type Factory func(Env) Control

// State is a control's verdict.
type State string

const (
	Pass    State = "pass"
	Fail    State = "fail"
	Unknown State = "unknown"
	Off     State = "off"
)

// Status is what a control reports about this host: a verdict, a reason key
// (stable, for dashboards to translate) and the reason in Japanese and
// English, and since when the verdict holds.
type Status struct {
	State    State     `json:"state"`
	Reason   string    `json:"reason,omitempty"` // message key, e.g. "screenlock.timeout_too_long"
	ReasonJA string    `json:"reason_ja,omitempty"`
	ReasonEN string    `json:"reason_en,omitempty"`
	Since    time.Time `json:"since"`
}

// Same reports whether two statuses carry the same verdict and reason.
func (s Status) Same(o Status) bool {
	return s.State == o.State && s.Reason == o.Reason && s.ReasonEN == o.ReasonEN
}

// ErrUnsupported is wrapped by probes on systems where a check cannot run;
// the control then reports Unknown with the reason, once, not an error storm.
var ErrUnsupported = errors.ErrUnsupported
