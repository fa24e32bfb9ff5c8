package audit

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// retentionRig has 2 agents x 5 events received at t0 and 2 x 5 an hour
// later, all signed, and a Retainer whose clock is keep after t0+30m: due
// to clear the first ten.
func retentionRig(t *testing.T) (*rig, *Retainer, time.Time) {
	t.Helper()
	r := newRig(t)
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC) // the events' own times
	now := t0
	r.log.SetClock(func() time.Time { return now })
	r.fill(t, 2, 5)
	now = t0.Add(time.Hour)
	r.fill(t, 2, 5)
	if _, err := r.cp.SignNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	ret := &Retainer{Log: r.log, Keep: eventlog.MinRetention,
		Sign: func(ctx context.Context) error { _, err := r.cp.SignNow(ctx); return err },
		Now:  func() time.Time { return t0.Add(30 * time.Minute).Add(eventlog.MinRetention) }}
	return r, ret, t0
}

// Hole 1: a row "pruned" by hand (payload set to NULL with SQL while the
// server is stopped) is refused at start; the same row cleared by real
// retention after its cutoff passes.
func TestHandPrunedRowRefused(t *testing.T) {
	ctx := context.Background()
	clear := `UPDATE events SET control = NULL, type = NULL, severity = NULL, user = NULL, process = NULL,
		object = NULL, register_id = NULL, attrs = NULL WHERE idx = %s`
	t.Run("no retention record", func(t *testing.T) {
		r, _, _ := retentionRig(t)
		r.log.Close()
		tamper(t, r.path, strings.Replace(clear, "%s", "13", 1))
		r.open(t)
		err := VerifyLog(ctx, r.log, r.verif, zerolog.Nop())
		if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "log index 13") || !strings.Contains(err.Error(), "cleared by hand") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("newer than the cutoff", func(t *testing.T) {
		r, ret, _ := retentionRig(t)
		if n, err := ret.RunOnce(ctx); err != nil || n != 10 {
			t.Fatalf("retention: %d, %v", n, err)
		}
		if err := VerifyLog(ctx, r.log, r.verif, zerolog.Nop()); err != nil {
			t.Fatalf("after real retention: %v", err)
		}
		r.log.Close()
		tamper(t, r.path, strings.Replace(clear, "%s", "13", 1)) // received an hour after the cutoff
		r.open(t)
		err := VerifyLog(ctx, r.log, r.verif, zerolog.Nop())
		if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "log index 13") || !strings.Contains(err.Error(), "after the latest signed retention cutoff") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("forged retention record after the checkpoint", func(t *testing.T) {
		// A retention record the server never had signed (appended past the
		// last checkpoint) authorises nothing.
		r, ret, _ := retentionRig(t)
		ret.Sign = nil
		if n, err := ret.RunOnce(ctx); err != nil || n != 10 {
			t.Fatalf("retention: %d, %v", n, err)
		}
		err := VerifyLog(ctx, r.log, r.verif, zerolog.Nop())
		if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "no signed retention record") {
			t.Fatalf("got %v", err)
		}
	})
}

// Hole 2: retention goes by the server's received time, not the agent's
// clock, and the received time is signed: editing it is caught.
func TestRetentionByReceivedTime(t *testing.T) {
	ctx := context.Background()
	r, ret, t0 := retentionRig(t)
	// A PC whose clock says 2022 sends an event received now (t0+1h).
	e := event.Event{Agent: "pc-cmos", Seq: 1, Time: time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC), Control: "media",
		Type: "media.inserted", Severity: event.Info}
	if err := e.Seal(""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.log.Append(ctx, "pc-cmos", []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	// An agent-clock retention would clear it at once (2022 is more than
	// two years before the retainer's clock); by received time only the ten
	// events received at t0 are due.
	if n, err := ret.RunOnce(ctx); err != nil || n != 10 {
		t.Fatalf("retention: %d, %v", n, err)
	}
	p, err := r.log.Query(ctx, eventlog.Filter{Agent: "pc-cmos"})
	if err != nil || len(p.Events) != 1 || p.Events[0].Pruned {
		t.Fatalf("agent-time 2022 event: %+v, %v", p.Events, err)
	}
	// The clock skew is on record.
	p, err = r.log.Query(ctx, eventlog.Filter{Type: eventlog.ClockSkewType})
	if err != nil || len(p.Events) != 1 || p.Events[0].Attrs["agent"] != "pc-cmos" {
		t.Fatalf("clock skew not recorded: %+v, %v", p.Events, err)
	}
	if err := VerifyLog(ctx, r.log, r.verif, zerolog.Nop()); err != nil {
		t.Fatalf("after retention: %v", err)
	}
	// Moving an event's received time back (to have it cleared early) is
	// caught: the time is in its Merkle leaf.
	r.log.Close()
	tamper(t, r.path, "UPDATE events SET received = "+strconv.FormatInt(t0.Add(-time.Hour).UnixNano(), 10)+" WHERE agent = 'pc-cmos'")
	r.open(t)
	err = VerifyLog(ctx, r.log, r.verif, zerolog.Nop())
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "agent pc-cmos, seq 1") || !strings.Contains(err.Error(), "received") {
		t.Fatalf("got %v", err)
	}
}
