// Package compliance derives each host's status per control (screen lock,
// media, file access, backup, posture) from the latest "<control>.status"
// events agents send, the fleet's pass rate per control and per department,
// and alerts for violations and silent agents (docs/architecture.md, step 6).
//
// The derivation is a pure function of (now, hosts with their effective
// policies, last-seen times, latest status per host and control); Tracker
// keeps that latest status in memory by tailing the event log, so that a
// request never scans the events.
package compliance

import (
	"cmp"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mamori/mamori/shared/policy"
)

// Controls are the controls compliance tracks, in display order. Each sends
// "<control>.status" events.
var Controls = []string{"screenlock", "media", "fileaccess", "backup", "posture"}

// Status is a control's derived status on one host.
type Status string

// Statuses. Pass, Fail and Unknown come from agents; Off means the host's
// effective policy does not run the control.
const (
	Pass    Status = "pass"
	Fail    Status = "fail"
	Unknown Status = "unknown"
	Off     Status = "off"
)

// Reason keys the server sets itself (agents set the others).
const (
	ReasonSilent    = "agent.silent"   // the agent has been silent longer than silent_after
	ReasonNoStatus  = "status.missing" // no status event received yet for this control
	ReasonOff       = "control.off"    // the effective policy turns the control off
	ReasonBadStatus = "status.invalid" // the latest status event carries no valid status
)

// Latest is the latest status event of one (agent, control), as the tracker
// keeps it.
type Latest struct {
	Status   Status // pass, fail or unknown
	Reason   string
	ReasonJA string
	ReasonEN string
	Since    time.Time // since when the agent sees this status
	Index    int64     // log index of the event
	Time     time.Time // the event's time
	// FailRun is the log index of the first event of the current run of
	// fail statuses, -1 when the status is not fail. A new run is a new
	// violation (one alert per run).
	FailRun int64
}

// HostInfo is what the inventory knows about an enrolled agent.
type HostInfo struct {
	Agent      string
	Hostname   string
	Department string
	Enrolled   time.Time
	Policy     *policy.Policy // effective policy, normalized; nil = defaults

	// version is Policy's version and versionSeen when the tracker first
	// saw it as this agent's (set by Tracker from the inventory).
	version     string
	versionSeen time.Time
}

// ControlState is one control's derived state on one host. Index and Time
// name the status event it comes from; both are null when the state is not
// an agent's report (silent, missing, off).
type ControlState struct {
	Status   Status     `json:"status"`
	Reason   string     `json:"reason,omitempty"`
	ReasonJA string     `json:"reason_ja,omitempty"`
	ReasonEN string     `json:"reason_en,omitempty"`
	Since    *time.Time `json:"since"`
	Index    *int64     `json:"index"`
	Time     *time.Time `json:"time"`
}

// Host is one host's derived compliance.
type Host struct {
	Agent      string                  `json:"agent"`
	Hostname   string                  `json:"hostname"`
	Department string                  `json:"department"`
	LastSeen   *time.Time              `json:"last_seen"` // null before the first batch
	Silent     bool                    `json:"silent"`
	Controls   map[string]ControlState `json:"controls"`
	// PolicyMismatch is set while the PC runs another policy than the
	// assigned one for longer than the grace: its controls do not pass.
	PolicyMismatch *Mismatch `json:"policy_mismatch,omitempty"`

	mismatchKey string    // identifies the mismatch run, for its alert
	tampered    *Tampered // a recent agent.policy_tampered report

	// failRuns holds, per failing control, the run index for alert keys.
	failRuns map[string]int64
	// silentRef is the reference time of silence (last seen or enrolment).
	silentRef time.Time
}

// Rate is the fleet's figures for one control: hosts per status, and the
// pass rate over the hosts that run the control (pass+fail+unknown; off
// hosts are not counted). Rate is 0 when no host runs the control.
type Rate struct {
	Pass    int     `json:"pass"`
	Fail    int     `json:"fail"`
	Unknown int     `json:"unknown"`
	Off     int     `json:"off"`
	Rate    float64 `json:"rate"`
}

// silentAfter is the host's effective silent_after, policy default if unset.
func silentAfter(p *policy.Policy) time.Duration {
	if p != nil && p.Controls.Agent.SilentAfter > 0 {
		return p.Controls.Agent.SilentAfter.D()
	}
	return policy.DefaultSilentAfter
}

// modeOf returns the control's mode in p; a nil policy runs nothing.
func modeOf(p *policy.Policy, control string) policy.Mode {
	if p == nil {
		return policy.Off
	}
	c := &p.Controls
	switch control {
	case "screenlock":
		return c.Screenlock.Mode
	case "media":
		return c.Media.Mode
	case "fileaccess":
		return c.FileAccess.Mode
	case "backup":
		return c.Backup.Mode
	case "posture":
		return c.Posture.Mode
	}
	return policy.Off
}

// Derive computes each host's state at now. lastSeen holds the server time
// of each agent's last stored batch (zero if none); latest the latest status
// per agent and control. started is when the server began watching: an
// agent counts as silent only once now is more than silent_after past both
// its last batch (or its enrolment, before any) and started, so that a
// server restart after downtime does not call the whole fleet silent.
//
// Silence is strict: exactly silent_after is not yet silent.
func Derive(now, started time.Time, hosts []HostInfo, lastSeen map[string]time.Time, latest map[string]map[string]Latest) []Host {
	return derive(now, started, hosts, lastSeen, latest, nil)
}

// derive is Derive that also compares, when pi is given, the policy each
// agent runs with the one assigned (see policyMismatch).
func derive(now, started time.Time, hosts []HostInfo, lastSeen map[string]time.Time, latest map[string]map[string]Latest, pi *policyInfo) []Host {
	out := make([]Host, 0, len(hosts))
	for _, hi := range hosts {
		h := Host{Agent: hi.Agent, Hostname: hi.Hostname, Department: hi.Department,
			Controls: make(map[string]ControlState, len(Controls))}
		ref := hi.Enrolled
		if ls, ok := lastSeen[hi.Agent]; ok && !ls.IsZero() {
			t := ls.UTC()
			h.LastSeen = &t
			ref = ls
		}
		grace := ref
		if started.After(grace) {
			grace = started
		}
		h.silentRef = ref.UTC()
		h.Silent = now.Sub(grace) > silentAfter(hi.Policy)
		silentFor := now.Sub(ref)
		running, runningKnown := Running{}, false
		if pi != nil {
			running, runningKnown = pi.running[hi.Agent]
			if tp, ok := pi.tampered[hi.Agent]; ok && now.Sub(tp.Received) < TamperedOpen {
				h.tampered = &tp
			}
			h.PolicyMismatch, h.mismatchKey = policyMismatch(now, hi, running, runningKnown, latest[hi.Agent], pi.grace)
		}
		for _, c := range Controls {
			if !modeOf(hi.Policy, c).Enabled() {
				h.Controls[c] = ControlState{Status: Off, Reason: ReasonOff,
					ReasonJA: "ポリシーで無効になっています", ReasonEN: "turned off by policy"}
				continue
			}
			if h.Silent {
				since := ref.UTC()
				cs := ControlState{Status: Unknown, Reason: ReasonSilent,
					ReasonJA: fmt.Sprintf("エージェントから %s 応答がありません", durationJA(silentFor)),
					ReasonEN: fmt.Sprintf("agent silent for %s", durationEN(silentFor)),
					Since:    &since}
				// Unknown now, but a violation it last reported is not
				// resolved by the PC going quiet: say it.
				if l, ok := latest[hi.Agent][c]; ok && l.Status == Fail {
					cs.ReasonJA += "（最後の報告は違反: " + cmp.Or(l.ReasonJA, l.Reason) + "）"
					cs.ReasonEN += " (last reported failing: " + cmp.Or(l.ReasonEN, l.Reason) + ")"
				}
				h.Controls[c] = cs
				continue
			}
			l, ok := latest[hi.Agent][c]
			if ok && l.Reason == ReasonMismatch { // the agent reports off a control the server runs
				ja, en := mismatchTexts(running.Version, hi.version, runningKnown && hi.version != "", true)
				since, at, idx := l.Since.UTC(), l.Time.UTC(), l.Index
				h.Controls[c] = ControlState{Status: Unknown, Reason: ReasonMismatch, ReasonJA: ja, ReasonEN: en,
					Since: &since, Index: &idx, Time: &at}
				continue
			}
			if m := h.PolicyMismatch; m != nil && (!ok || l.Status != Fail) {
				// Whatever it reports, it measures against another policy.
				ja, en := mismatchTexts(m.Running, m.Assigned, true, false)
				since := m.Since
				h.Controls[c] = ControlState{Status: Unknown, Reason: ReasonMismatch, ReasonJA: ja, ReasonEN: en, Since: &since}
				continue
			}
			if !ok {
				h.Controls[c] = ControlState{Status: Unknown, Reason: ReasonNoStatus,
					ReasonJA: "状態がまだ報告されていません", ReasonEN: "no status reported yet"}
				continue
			}
			since, at, idx := l.Since.UTC(), l.Time.UTC(), l.Index
			h.Controls[c] = ControlState{Status: l.Status, Reason: l.Reason, ReasonJA: l.ReasonJA,
				ReasonEN: l.ReasonEN, Since: &since, Index: &idx, Time: &at}
			if l.Status == Fail {
				if h.failRuns == nil {
					h.failRuns = map[string]int64{}
				}
				h.failRuns[c] = l.FailRun
			}
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Hostname != out[j].Hostname {
			return out[i].Hostname < out[j].Hostname
		}
		return out[i].Agent < out[j].Agent
	})
	return out
}

// Rates counts the hosts per status of each control in controls and the
// pass rate over the hosts that run it.
func Rates(hosts []Host, controls []string) map[string]Rate {
	out := make(map[string]Rate, len(controls))
	for _, c := range controls {
		var r Rate
		for _, h := range hosts {
			switch h.Controls[c].Status {
			case Pass:
				r.Pass++
			case Fail:
				r.Fail++
			case Unknown:
				r.Unknown++
			case Off:
				r.Off++
			}
		}
		if n := r.Pass + r.Fail + r.Unknown; n > 0 {
			r.Rate = float64(r.Pass) / float64(n)
		}
		out[c] = r
	}
	return out
}

// durationEN writes d for people: whole minutes from a minute on ("1h5m"),
// whole seconds below.
func durationEN(d time.Duration) string {
	if d >= time.Minute {
		s := strings.TrimSuffix(d.Truncate(time.Minute).String(), "0s") // "1h5m0s"
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	}
	return d.Truncate(time.Second).String()
}

// durationJA writes d in Japanese units ("1時間5分", "31分", "45秒").
func durationJA(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%d秒", int64(d/time.Second))
	}
	h, m := int64(d/time.Hour), int64(d%time.Hour/time.Minute)
	switch {
	case h == 0:
		return fmt.Sprintf("%d分", m)
	case m == 0:
		return fmt.Sprintf("%d時間", h)
	}
	return fmt.Sprintf("%d時間%d分", h, m)
}

// policyMismatch says whether hi runs another policy than the assigned one
// for longer than grace, and the key of that run: its reported version
// differs from the assigned one, or it reports "off" a control the
// assigned policy runs. The grace counts from the later of the report and
// the tracker first seeing the assigned version (a change needs a
// long-poll to arrive).
func policyMismatch(now time.Time, hi HostInfo, r Running, known bool, latest map[string]Latest, grace time.Duration) (*Mismatch, string) {
	if hi.version == "" {
		return nil, ""
	}
	late := func(t time.Time) (time.Time, bool) {
		if hi.versionSeen.After(t) {
			t = hi.versionSeen
		}
		return t.UTC(), now.Sub(t) > grace
	}
	if known && r.Version != hi.version {
		if start, ok := late(r.Since); ok {
			return &Mismatch{Running: r.Version, Assigned: hi.version, Since: start},
				fmt.Sprintf("%s|%s|%s|%d", KindPolicyMismatch, hi.Agent, r.Version, r.First)
		}
	}
	for _, c := range Controls {
		l, ok := latest[c]
		if !ok || l.Reason != ReasonMismatch || !modeOf(hi.Policy, c).Enabled() {
			continue
		}
		if start, late := late(l.Since); late {
			m := &Mismatch{Assigned: hi.version, Since: start}
			if known {
				m.Running = r.Version
			}
			return m, fmt.Sprintf("%s|%s|off|%s|%d", KindPolicyMismatch, hi.Agent, c, l.Since.UnixNano())
		}
	}
	return nil, ""
}

// OffControls lists the controls p turns off (all of them when p is nil),
// never nil: what 概要 shows as off, for the report to count alike.
func OffControls(p *policy.Policy) []string {
	out := []string{}
	for _, c := range Controls {
		if !modeOf(p, c).Enabled() {
			out = append(out, c)
		}
	}
	return out
}
