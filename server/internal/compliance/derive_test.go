package compliance

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/policy"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func pol(silentAfter time.Duration, modes map[string]policy.Mode) *policy.Policy {
	p := &policy.Policy{APIVersion: policy.APIVersion, Kind: policy.Kind, Name: "t"}
	p.Controls.Agent.SilentAfter = policy.Duration(silentAfter)
	p.Controls.Screenlock.Mode = modes["screenlock"]
	p.Controls.Media.Mode = modes["media"]
	p.Controls.FileAccess.Mode = modes["fileaccess"]
	p.Controls.Backup.Mode = modes["backup"]
	p.Controls.Posture.Mode = modes["posture"]
	p.Normalize()
	return p
}

func allAudit() map[string]policy.Mode {
	m := map[string]policy.Mode{}
	for _, c := range Controls {
		m[c] = policy.Audit
	}
	return m
}

func TestDeriveSilentEdge(t *testing.T) {
	for _, tc := range []struct {
		name  string
		p     *policy.Policy
		after time.Duration
	}{
		{"policy 10m", pol(10*time.Minute, allAudit()), 10 * time.Minute},
		{"default 30m", pol(0, allAudit()), policy.DefaultSilentAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts := []HostInfo{{Agent: "a1", Hostname: "pc-01", Department: "総務部", Enrolled: t0.Add(-24 * time.Hour), Policy: tc.p}}
			seen := map[string]time.Time{"a1": t0}
			latest := map[string]map[string]Latest{"a1": {"screenlock": {Status: Pass, Reason: "screenlock.ok",
				Since: t0.Add(-time.Hour), Index: 7, Time: t0, FailRun: -1}}}
			started := t0.Add(-time.Hour)

			at := Derive(t0.Add(tc.after), started, hosts, seen, latest)[0]
			if at.Silent {
				t.Fatalf("silent at exactly silent_after")
			}
			sl := at.Controls["screenlock"]
			if sl.Status != Pass || sl.Reason != "screenlock.ok" || *sl.Index != 7 || !sl.Since.Equal(t0.Add(-time.Hour)) || !sl.Time.Equal(t0) {
				t.Fatalf("screenlock before silence = %+v", sl)
			}
			if m := at.Controls["media"]; m.Status != Unknown || m.Reason != ReasonNoStatus || m.Index != nil {
				t.Fatalf("media without a status = %+v", m)
			}

			past := Derive(t0.Add(tc.after+time.Nanosecond), started, hosts, seen, latest)[0]
			if !past.Silent {
				t.Fatalf("not silent 1ns past silent_after")
			}
			for _, c := range Controls {
				cs := past.Controls[c]
				if cs.Status != Unknown || cs.Reason != ReasonSilent || cs.Index != nil || !cs.Since.Equal(t0) {
					t.Fatalf("%s when silent = %+v", c, cs)
				}
			}
			wantEN := "agent silent for " + durationEN(tc.after)
			if got := past.Controls["backup"].ReasonEN; got != wantEN {
				t.Fatalf("reason_en = %q, want %q", got, wantEN)
			}
		})
	}
}

func TestDeriveGraceAfterServerStart(t *testing.T) {
	hosts := []HostInfo{{Agent: "a1", Hostname: "pc-01", Enrolled: t0.Add(-48 * time.Hour), Policy: pol(30*time.Minute, allAudit())}}
	seen := map[string]time.Time{"a1": t0}
	started := t0.Add(2 * time.Hour) // the server was down for two hours
	if h := Derive(started.Add(30*time.Minute), started, hosts, seen, nil)[0]; h.Silent {
		t.Fatal("silent within silent_after of the server's start")
	}
	h := Derive(started.Add(31*time.Minute), started, hosts, seen, nil)[0]
	if !h.Silent {
		t.Fatal("not silent once the grace is over")
	}
	// The text counts from the last batch, not from the server's start.
	if got, want := h.Controls["posture"].ReasonJA, "エージェントから 2時間31分 応答がありません"; got != want {
		t.Fatalf("reason_ja = %q, want %q", got, want)
	}
	if got, want := h.Controls["posture"].ReasonEN, "agent silent for 2h31m"; got != want {
		t.Fatalf("reason_en = %q, want %q", got, want)
	}
}

func TestDeriveNeverSeenCountsFromEnrolment(t *testing.T) {
	hosts := []HostInfo{{Agent: "a1", Enrolled: t0, Policy: pol(0, allAudit())}}
	started := t0.Add(-time.Hour)
	if h := Derive(t0.Add(30*time.Minute), started, hosts, nil, nil)[0]; h.Silent || h.LastSeen != nil {
		t.Fatalf("host = %+v", h)
	}
	if h := Derive(t0.Add(31*time.Minute), started, hosts, nil, nil)[0]; !h.Silent {
		t.Fatal("a never-seen agent is not silent 31m after enrolment")
	}
}

func TestDeriveOffIsOffEvenWhenSilent(t *testing.T) {
	modes := allAudit()
	modes["media"] = policy.Off
	hosts := []HostInfo{{Agent: "a1", Enrolled: t0, Policy: pol(0, modes)}}
	latest := map[string]map[string]Latest{"a1": {"media": {Status: Fail, Index: 3, FailRun: 3}}}
	for _, now := range []time.Time{t0.Add(time.Minute), t0.Add(time.Hour)} {
		h := Derive(now, t0, hosts, map[string]time.Time{"a1": t0}, latest)[0]
		if m := h.Controls["media"]; m.Status != Off || m.Reason != ReasonOff {
			t.Fatalf("media at %s = %+v", now, m)
		}
		if len(alertsOf([]Host{h})) > 0 && !h.Silent {
			t.Fatalf("an off control raised an alert: %+v", alertsOf([]Host{h}))
		}
	}
	// A nil policy (no policy at all) runs nothing.
	h := Derive(t0, t0, []HostInfo{{Agent: "a2", Enrolled: t0}}, nil, nil)[0]
	for _, c := range Controls {
		if h.Controls[c].Status != Off {
			t.Fatalf("%s under no policy = %+v", c, h.Controls[c])
		}
	}
}

func TestRates(t *testing.T) {
	mk := func(dept string, st map[string]Status) Host {
		h := Host{Department: dept, Controls: map[string]ControlState{}}
		for c, s := range st {
			h.Controls[c] = ControlState{Status: s}
		}
		return h
	}
	hosts := []Host{
		mk("総務部", map[string]Status{"screenlock": Pass, "backup": Off}),
		mk("総務部", map[string]Status{"screenlock": Pass, "backup": Off}),
		mk("営業部", map[string]Status{"screenlock": Pass, "backup": Off}),
		mk("営業部", map[string]Status{"screenlock": Fail, "backup": Off}),
		mk("営業部", map[string]Status{"screenlock": Unknown, "backup": Off}),
		mk("営業部", map[string]Status{"screenlock": Off, "backup": Off}),
	}
	r := Rates(hosts, []string{"screenlock", "backup"})
	if got, want := r["screenlock"], (Rate{Pass: 3, Fail: 1, Unknown: 1, Off: 1, Rate: 0.6}); got != want {
		t.Fatalf("screenlock = %+v, want %+v", got, want)
	}
	// Nobody runs backup: counts say so and the rate is 0, not NaN.
	if got := r["backup"]; got.Off != 6 || got.Rate != 0 || math.IsNaN(got.Rate) {
		t.Fatalf("backup = %+v", got)
	}
	if got := Rates(hosts[:2], []string{"screenlock"})["screenlock"]; got.Rate != 1 || got.Pass != 2 {
		t.Fatalf("all pass = %+v", got)
	}
	if got := Rates(nil, []string{"posture"})["posture"]; got != (Rate{}) {
		t.Fatalf("no hosts = %+v", got)
	}
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		d      time.Duration
		en, ja string
	}{
		{45 * time.Second, "45s", "45秒"},
		{31*time.Minute + 20*time.Second, "31m", "31分"},
		{2 * time.Hour, "2h", "2時間"},
		{26*time.Hour + 5*time.Minute, "26h5m", "26時間5分"},
	} {
		if got := durationEN(tc.d); got != tc.en {
			t.Errorf("durationEN(%s) = %q, want %q", tc.d, got, tc.en)
		}
		if got := durationJA(tc.d); got != tc.ja {
			t.Errorf("durationJA(%s) = %q, want %q", tc.d, got, tc.ja)
		}
	}
}

// A silent PC's controls are unknown, but a violation it last reported is
// not forgotten: the reason says it, so a violation does not vanish from
// view because the PC went quiet.
func TestDeriveSilentKeepsLastViolationInReason(t *testing.T) {
	hosts := []HostInfo{{Agent: "a1", Hostname: "pc-01", Enrolled: t0.Add(-24 * time.Hour), Policy: pol(30*time.Minute, allAudit())}}
	seen := map[string]time.Time{"a1": t0}
	latest := map[string]map[string]Latest{"a1": {"screenlock": {Status: Fail, Reason: "screenlock.idle_too_long",
		ReasonJA: "画面ロックまでの時間が長すぎます", ReasonEN: "idle time too long", Since: t0.Add(-time.Hour), Index: 7, Time: t0, FailRun: 7}}}
	h := Derive(t0.Add(2*time.Hour), t0.Add(-time.Hour), hosts, seen, latest)[0]
	sl := h.Controls["screenlock"]
	if sl.Status != Unknown || sl.Reason != ReasonSilent {
		t.Fatalf("silent screenlock = %+v", sl)
	}
	if !strings.Contains(sl.ReasonJA, "最後の報告は違反: 画面ロックまでの時間が長すぎます") || !strings.Contains(sl.ReasonEN, "last reported failing: idle time too long") {
		t.Fatalf("the last violation is not said: %q / %q", sl.ReasonJA, sl.ReasonEN)
	}
	if p := h.Controls["posture"]; strings.Contains(p.ReasonJA, "最後の報告") {
		t.Fatalf("a control with no violation says one: %q", p.ReasonJA)
	}
}
