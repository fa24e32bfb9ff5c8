package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// An agent's key can sign anything, but an agent never writes the server's
// own findings (outages, gaps, alerts): such a batch is refused, and the
// attempt is recorded once in the server stream as suspected tampering.
func TestAgentCannotWriteServerEvents(t *testing.T) {
	e := newEnv(t)
	a := e.enrollAgent("pc-forge")
	t0 := time.Now().UTC().Add(-time.Minute)
	var ack wire.Ack
	if st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: []event.Event{a.seal("agent.started", t0, nil)}}, &ack); st != http.StatusOK {
		t.Fatalf("honest batch: %d", st)
	}
	for _, forged := range []struct{ control, typ string }{
		{"server", TypeAgentOutage}, {"agent", TypeAgentOutage}, {"server", "server.writer_stopped"},
		{"compliance", "compliance.alert"}, {"agent", "agent.enrolled"}, {"fileaccess", "server.gap"},
	} {
		ev := event.Event{Agent: a.id, Seq: a.seq + 1, Time: t0, Control: forged.control, Type: forged.typ, Severity: event.Info}
		if err := ev.Seal(a.prev); err != nil {
			t.Fatal(err)
		}
		var errBody wire.Error
		st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: []event.Event{ev}}, &errBody)
		if st != http.StatusForbidden || !strings.Contains(errBody.Error, "server") {
			t.Errorf("%s/%s from an agent: %d %q", forged.control, forged.typ, st, errBody.Error)
		}
	}
	// The agent carries on with its own events.
	if st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: []event.Event{a.seal("agent.heartbeat", t0.Add(time.Second), nil)}}, &ack); st != http.StatusOK {
		t.Fatalf("honest batch after: %d", st)
	}
	got, _ := e.queryEvents(url.Values{"agent": {event.ServerStream}, "type": {TypeTamperSuspected}})
	if len(got) != 1 || got[0].Object != a.id || got[0].Severity != event.Violation || got[0].Attrs["reason"] != ReasonServerType {
		t.Fatalf("recorded %d tamper events, want 1 for %s: %+v", len(got), a.id, got)
	}
	own, _ := e.queryEvents(url.Values{"agent": {a.id}})
	for _, ev := range own {
		if ev.Control != "agent" || !strings.HasPrefix(ev.Type, "agent.") || ev.Type == TypeAgentOutage {
			t.Fatalf("stored in the agent's stream: %+v", ev)
		}
	}
}

// A stream that starts over (the agent's spool deleted or swapped: events
// whose seq is already stored with another hash) is refused as before, and
// now also recorded once as suspected tampering, not left as silence.
func TestChainConflictIsRecorded(t *testing.T) {
	e := newEnv(t)
	a := e.enrollAgent("pc-reset")
	t0 := time.Now().UTC().Add(-time.Minute)
	var ack wire.Ack
	if st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: []event.Event{a.seal("agent.started", t0, nil), a.seal("agent.heartbeat", t0, nil)}}, &ack); st != http.StatusOK {
		t.Fatalf("first batch: %d", st)
	}
	a.seq, a.prev = 0, "" // the spool deleted: the chain starts again
	for range 3 {
		if st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: []event.Event{a.seal("agent.started", t0.Add(time.Minute), nil)}}, nil); st != http.StatusConflict {
			t.Fatalf("restarted chain: %d, want 409", st)
		}
		a.seq, a.prev = 0, ""
	}
	got, _ := e.queryEvents(url.Values{"agent": {event.ServerStream}, "type": {TypeTamperSuspected}})
	if len(got) != 1 || got[0].Object != a.id || got[0].Attrs["reason"] != ReasonChainConflict {
		t.Fatalf("recorded %+v, want one chain conflict for %s", got, a.id)
	}
}

// A PC enrolled again under a new identity (a clean chain for whatever it
// did before) is recorded as a warning naming the earlier agent of that
// host name; a first enrollment stays info.
func TestReenrolledHostIsAWarning(t *testing.T) {
	e := newEnv(t)
	first := e.enrollAgent("PC-KEIRI-01")
	e.enrollAgent("PC-SOUMU-02")
	second := e.enrollAgent("pc-keiri-01")
	got, _ := e.queryEvents(url.Values{"agent": {event.ServerStream}, "type": {"agent.enrolled"}})
	if len(got) != 3 {
		t.Fatalf("%d enrollments recorded", len(got))
	}
	for _, ev := range got[:2] {
		if ev.Severity != event.Info || ev.Attrs["same_hostname_as"] != nil {
			t.Errorf("first enrollment %s: %s %v", ev.Object, ev.Severity, ev.Attrs["same_hostname_as"])
		}
	}
	if re := got[2]; re.Object != second.id || re.Severity != event.Warning || re.Attrs["same_hostname_as"] != first.id {
		t.Fatalf("re-enrollment: %+v", re)
	}
}
