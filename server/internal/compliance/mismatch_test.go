package compliance

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

func (a *agentStream) agentEvent(t testing.TB, typ string, sev event.Severity, at time.Time, attrs event.Attrs) event.Event {
	t.Helper()
	a.seq++
	e := event.Event{Agent: a.id, Seq: a.seq, Time: at, Control: "agent", Type: typ, Severity: sev, Attrs: attrs}
	if err := e.Seal(a.prev); err != nil {
		t.Fatal(err)
	}
	a.prev = e.Hash
	return e
}

// A PC that runs another policy than the one the server assigns (its
// policy.json edited, a mode turned off, a tampered file reported) is never
// shown as pass, and an alert is raised (severity violation).
func TestPolicyMismatchIsNotPass(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir())
	defer store.Close()
	clk := &clock{t: time.Now()}
	assigned := pol(0, allAudit())
	v := assigned.Version()
	inv := hostList{
		{Agent: "a1", Hostname: "pc-01", Enrolled: clk.Now(), Policy: assigned},
		{Agent: "a2", Hostname: "pc-02", Enrolled: clk.Now(), Policy: assigned},
		{Agent: "a3", Hostname: "pc-03", Enrolled: clk.Now(), Policy: assigned},
	}
	tr, err := New(Config{Events: store, Inventory: inv, Now: clk.Now, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	a1, a2, a3 := &agentStream{id: "a1"}, &agentStream{id: "a2"}, &agentStream{id: "a3"}
	var evs1, evs2, evs3 []event.Event
	evs1 = append(evs1, a1.agentEvent(t, "agent.started", event.Info, now, event.Attrs{"policy_version": "0123456789abcdef"}))
	evs2 = append(evs2, a2.agentEvent(t, "agent.started", event.Info, now, event.Attrs{"policy_version": v}))
	evs3 = append(evs3, a3.agentEvent(t, "agent.policy_tampered", event.Violation, now,
		event.Attrs{"stored_version": v, "actual_version": "fedcba9876543210", "path": "/var/lib/mamori/policy.json"}),
		a3.agentEvent(t, "agent.started", event.Info, now, event.Attrs{"policy_version": ""}),
		a3.agentEvent(t, "agent.policy_applied", event.Info, now, event.Attrs{"version": v, "name": "t"}))
	for _, c := range Controls {
		evs1 = append(evs1, a1.status(t, c, Pass, c+".ok", now))
		st := Pass
		if c == "fileaccess" {
			st = "off" // the agent runs fileaccess off: not a bad value, another policy
		}
		evs2 = append(evs2, a2.status(t, c, st, c+".ok", now))
		evs3 = append(evs3, a3.status(t, c, Pass, c+".ok", now))
	}
	appendAll(t, store, "a1", evs1...)
	appendAll(t, store, "a2", evs2...)
	appendAll(t, store, "a3", evs3...)

	byAgent := func() map[string]Host {
		rep, err := tr.Report(ctx, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]Host{}
		for _, h := range rep.Hosts {
			m[h.Agent] = h
		}
		return m
	}
	// Within the grace a long-poll needs to deliver a change: as reported.
	h := byAgent()
	if cs := h["a1"].Controls["screenlock"]; cs.Status != Pass {
		t.Fatalf("a1 within grace: %+v", cs)
	}
	// An "off" status for a control the server runs is this mismatch, at once.
	cs := h["a2"].Controls["fileaccess"]
	if cs.Status != Unknown || cs.Reason != ReasonMismatch || strings.Contains(cs.ReasonEN, "invalid status") ||
		!strings.Contains(cs.ReasonJA, "サーバーが割り当てたポリシーと異なるポリシーで動作しています") {
		t.Fatalf("a2 fileaccess off: %+v", cs)
	}

	clk.Add(PolicyGrace + time.Second)
	h = byAgent()
	for _, c := range Controls {
		cs := h["a1"].Controls[c]
		if cs.Status != Unknown || cs.Reason != ReasonMismatch ||
			!strings.Contains(cs.ReasonJA, "サーバーが割り当てたポリシーと異なるポリシーで動作しています（端末のポリシーファイルが変更された可能性があります）") ||
			!strings.Contains(cs.ReasonJA, v) || !strings.Contains(cs.ReasonJA, "0123456789abcdef") ||
			!strings.Contains(cs.ReasonEN, v) || !strings.Contains(cs.ReasonEN, "0123456789abcdef") {
			t.Fatalf("a1 %s after grace: %+v", c, cs)
		}
		if cs := h["a3"].Controls[c]; cs.Status != Pass {
			t.Fatalf("a3 %s runs the assigned policy again: %+v", c, cs)
		}
	}
	if pm := h["a1"].PolicyMismatch; pm == nil || pm.Running != "0123456789abcdef" || pm.Assigned != v {
		t.Fatalf("a1 policy_mismatch %+v", pm)
	}
	if err := tr.CheckAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, e := range alertEvents(t, store) {
		if e.Severity != event.Violation {
			t.Errorf("alert %v: severity %s", e.Attrs, e.Severity)
		}
		kinds[e.Attrs["agent"].(string)+" "+e.Attrs["kind"].(string)] = e.Attrs["reason"].(string)
	}
	for _, want := range []string{"a1 " + KindPolicyMismatch, "a2 " + KindPolicyMismatch, "a3 " + KindPolicyTampered} {
		if _, ok := kinds[want]; !ok {
			t.Errorf("no alert %q in %v", want, kinds)
		}
	}
	n := len(alertEvents(t, store))
	if err := tr.CheckAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	if m := len(alertEvents(t, store)); m != n {
		t.Fatalf("alerts raised again: %d -> %d", n, m)
	}

	// The agent fetches the assigned policy: pass again.
	appendAll(t, store, "a1", a1.agentEvent(t, "agent.policy_applied", event.Info, clk.Now(), event.Attrs{"version": v, "name": "t"}))
	if cs := byAgent()["a1"].Controls["media"]; cs.Status != Pass {
		t.Fatalf("a1 after applying the assigned policy: %+v", cs)
	}
	_ = policy.Off
}
