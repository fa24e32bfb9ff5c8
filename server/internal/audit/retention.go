package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// Retainer clears the payload of events older than Keep, once a day. The
// hashes stay, so every chain, checkpoint and proof still verifies; each run
// that pruned something is recorded as a retention.pruned server event.
type Retainer struct {
	Log interface {
		Prune(ctx context.Context, cutoff time.Time) (int64, error)
		AppendServer(ctx context.Context, e event.Event) (event.Event, error)
	}
	Keep   time.Duration // at least eventlog.MinRetention
	Logger zerolog.Logger
	Now    func() time.Time
}

// CheckRetention refuses a retention shorter than the Privacy Mark review
// period.
func CheckRetention(d time.Duration) error {
	if d < eventlog.MinRetention {
		return fmt.Errorf("audit: retention %s is shorter than the 2 years (%s) Privacy Mark renewal reviews", d, eventlog.MinRetention)
	}
	return nil
}

// RunOnce prunes what is due now.
func (r *Retainer) RunOnce(ctx context.Context) (int64, error) {
	if err := CheckRetention(r.Keep); err != nil {
		return 0, err
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	cutoff := now().Add(-r.Keep).UTC()
	n, err := r.Log.Prune(ctx, cutoff)
	if err != nil {
		return n, err
	}
	if n > 0 {
		_, err = r.Log.AppendServer(ctx, event.Event{Control: "server", Type: "retention.pruned", Severity: event.Info,
			Attrs: event.Attrs{"events": n, "cutoff": cutoff.Format(time.RFC3339), "keep": r.Keep.String()}})
		if err != nil {
			return n, fmt.Errorf("audit: record retention: %w", err)
		}
		r.Logger.Info().Int64("events", n).Time("cutoff", cutoff).Msg("retention: payloads cleared, hashes kept")
	}
	return n, nil
}

// Run prunes a minute after start and then daily until ctx ends.
func (r *Retainer) Run(ctx context.Context) {
	wait := time.Minute
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.Logger.Error().Err(err).Msg("retention")
		}
		wait = 24 * time.Hour
	}
}
