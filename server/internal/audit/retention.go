package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

// Retainer clears the payload of events received more than Keep ago, once
// a day. The hashes stay, so every chain, checkpoint and proof still
// verifies. Before clearing, it appends a retention.pruned server event
// naming the cutoff and has it signed (Sign), so start-up verification and
// every bundle can tell a cleared event from one cleared by hand.
type Retainer struct {
	Log interface {
		Prunable(ctx context.Context, cutoff time.Time) (int64, error)
		Prune(ctx context.Context, cutoff time.Time) (int64, error)
		AppendServer(ctx context.Context, e event.Event) (event.Event, error)
	}
	// Sign signs a checkpoint over the whole log (Checkpointer.SignNow): a
	// retention record is only trusted inside the signed log.
	Sign   func(ctx context.Context) error
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
	at := now().UTC()
	cutoff := at.Add(-r.Keep)
	due, err := r.Log.Prunable(ctx, cutoff)
	if err != nil || due == 0 {
		return 0, err
	}
	// The record first: a crash after it leaves payloads a record allows to
	// clear, never cleared payloads no record covers.
	_, err = r.Log.AppendServer(ctx, event.Event{Time: at, Control: evidence.RetentionControl, Type: evidence.RetentionType,
		Severity: event.Info, Attrs: event.Attrs{"events": due, "cutoff": cutoff.Format(time.RFC3339Nano), "keep": r.Keep.String()}})
	if err != nil {
		return 0, fmt.Errorf("audit: record retention: %w", err)
	}
	if r.Sign != nil {
		if err := r.Sign(ctx); err != nil {
			return 0, fmt.Errorf("audit: sign the retention record: %w", err)
		}
	}
	n, err := r.Log.Prune(ctx, cutoff)
	if err != nil {
		return n, err
	}
	r.Logger.Info().Int64("events", n).Time("cutoff", cutoff).Msg("retention: payloads cleared, hashes kept")
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
