package api

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// seal appends one event of typ to a's chain.
func (a *testAgent) seal(typ string, at time.Time, attrs event.Attrs) event.Event {
	a.seq++
	ev := event.Event{Agent: a.id, Seq: a.seq, Time: at, Control: "agent", Type: typ, Severity: event.Info, Attrs: attrs}
	if err := ev.Seal(a.prev); err != nil {
		panic(err)
	}
	a.prev = ev.Hash
	return ev
}

// Each restart of an agent is recorded once in the server stream as an
// agent.outage from its last event before the stop to the start: a kill
// (no agent.stopping) as a warning, a clean stop as info; a resent batch
// records nothing again, and the first start is no outage.
func TestAgentOutageRecorded(t *testing.T) {
	e := newEnv(t)
	a := e.enrollAgent("pc-outage")
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	post := func(evs ...event.Event) {
		t.Helper()
		var ack wire.Ack
		if st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: evs}, &ack); st != http.StatusOK {
			t.Fatalf("ingest: %d", st)
		}
	}
	first := a.seal("agent.started", t0.Add(-time.Minute), event.Attrs{"pid": 1})
	hb := a.seal("agent.heartbeat", t0, nil)
	post(first, hb)
	// Killed after the heartbeat: the next start names it.
	killed := a.seal("agent.started", t0.Add(90*time.Second), event.Attrs{"previous_seq": hb.Seq,
		"previous_type": hb.Type, "previous_time": hb.Time.Format(time.RFC3339Nano), "clean_stop": false})
	post(killed)
	post(killed) // resent: a duplicate, no second outage
	// A clean stop and start in one batch, from an agent without previous_* attrs.
	stop := a.seal("agent.stopping", t0.Add(2*time.Minute), nil)
	post(stop, a.seal("agent.started", t0.Add(5*time.Minute), nil))

	got, _ := e.queryEvents(url.Values{"agent": {event.ServerStream}, "type": {TypeAgentOutage}})
	if len(got) != 2 {
		t.Fatalf("%d outages recorded, want 2: %+v", len(got), got)
	}
	k, c := got[0], got[1]
	if k.Object != a.id || k.Severity != event.Warning || k.Attrs["clean_stop"] != false ||
		k.Attrs["from"] != t0.Format(time.RFC3339Nano) || k.Attrs["to"] != t0.Add(90*time.Second).Format(time.RFC3339Nano) {
		t.Fatalf("kill outage %+v", k)
	}
	if c.Severity != event.Info || c.Attrs["clean_stop"] != true || c.Attrs["previous_type"] != "agent.stopping" ||
		c.Attrs["from"] != stop.Time.Format(time.RFC3339Nano) {
		t.Fatalf("clean outage %+v", c)
	}
}
