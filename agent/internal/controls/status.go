package controls

import (
	"context"
	"sync"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// StatusReporter emits a control's "<control>.status" event when the verdict
// changes and again every interval, so the server always has a recent one.
type StatusReporter struct {
	Control  string
	Env      Env
	Interval time.Duration // re-report an unchanged status this often; 0 = never

	mu       sync.Mutex
	cur      Status
	reported time.Time
}

// Current returns the last status set; before the first, unknown with the
// reason "<control>.starting", so a control always has a verdict to show.
func (r *StatusReporter) Current() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur.State == "" {
		return Status{State: Unknown, Reason: r.Control + ".starting",
			ReasonJA: "最初の確認がまだ終わっていません", ReasonEN: "first check not done yet"}
	}
	return r.cur
}

// Set records st and emits it when it differs from the current one or the
// interval has passed. Since is kept from the current status while the
// verdict is unchanged. attrs go into the event next to the verdict.
func (r *StatusReporter) Set(ctx context.Context, st Status, attrs event.Attrs) error {
	now := r.Env.Clock.Now()
	r.mu.Lock()
	changed := !st.Same(r.cur) || r.reported.IsZero()
	if changed {
		st.Since = now
	} else {
		st.Since = r.cur.Since
	}
	due := changed || (r.Interval > 0 && now.Sub(r.reported) >= r.Interval)
	r.cur = st
	if due {
		r.reported = now
	}
	r.mu.Unlock()
	if !due {
		return nil
	}
	return r.Env.Emit.Emit(ctx, StatusEvent(r.Control, st, now, attrs))
}

// StatusEvent builds a "<control>.status" event. A failing control is a
// violation; unknown is a warning.
func StatusEvent(control string, st Status, now time.Time, attrs event.Attrs) event.Event {
	a := event.Attrs{"status": string(st.State), "since": st.Since.UTC().Format(time.RFC3339)}
	if st.Reason != "" {
		a["reason"] = st.Reason
		a["reason_ja"] = st.ReasonJA
		a["reason_en"] = st.ReasonEN
	}
	for k, v := range attrs {
		a[k] = v
	}
	sev := event.Info
	switch st.State {
	case Fail:
		sev = event.Violation
	case Unknown:
		sev = event.Warning
	}
	return event.Event{Time: now, Control: control, Type: control + ".status", Severity: sev, Attrs: a}
}

// PolicyOff is the status of a control its policy turns off. Code and words
// are the server's for the same case (compliance.ReasonOff), so the agent's
// status and the server's compliance view read alike.
func PolicyOff() Status {
	return Status{State: Off, Reason: "control.off", ReasonJA: "ポリシーで無効になっています", ReasonEN: "turned off by policy"}
}
