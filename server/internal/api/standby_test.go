package api

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/wire"
)

// standby starts a second API on e's store, state and CA that is not the
// writer and knows *writer as the writer's URL.
func (e *env) standby(writer *string) *env {
	e.t.Helper()
	sb := *e
	var err error
	sb.api, err = New(Config{Store: e.store, State: e.state, CA: e.ca, AgentID: cnAgentID, NewAgentID: newTestAgentID,
		Log: zerolog.New(zerolog.NewTestWriter(e.t)), Writer: func() (bool, string) { return false, *writer }})
	if err != nil {
		e.t.Fatal(err)
	}
	sb.srv = httptest.NewUnstartedServer(sb.api.Handler())
	sb.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: e.ca.pool()}
	sb.srv.StartTLS()
	e.t.Cleanup(func() { sb.srv.Close(); sb.api.Close() })
	return &sb
}

// A standby sends a batch to the writer with a 307 the agent's client
// follows (same body, same client certificate: the writer checks the
// agent itself), answers 503 + Retry-After while no writer is known, and
// /readyz names its role.
func TestStandbyRedirectsBatches(t *testing.T) {
	w := newEnv(t)
	writer := w.srv.URL
	sb := w.standby(&writer)
	a := w.enrollAgent("pc-1")

	noFollow := sb.client(&a.cert)
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	body, _ := json.Marshal(wire.Batch{Events: a.events(3)})
	resp, err := noFollow.Post(sb.srv.URL+wire.PathEvents+"?x=1", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != writer+wire.PathEvents+"?x=1" {
		t.Fatalf("standby answered %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := w.store.count(a.id); n != 0 {
		t.Fatalf("standby stored %d events", n)
	}

	var ack wire.Ack
	if st := sb.doJSON(a.c, "POST", wire.PathEvents, "", json.RawMessage(body), &ack); st != http.StatusOK || ack.AckedSeq != 3 {
		t.Fatalf("batch through the standby: %d %+v", st, ack)
	}
	if n := w.store.count(a.id); n != 3 {
		t.Fatalf("writer stored %d events, want 3", n)
	}

	var rv readyView
	if st := sb.doJSON(sb.client(nil), "GET", "/readyz", "", nil, &rv); st != 200 || rv.Role != "standby" || rv.Checks["writer"] != "ok" {
		t.Fatalf("standby /readyz: %d %+v", st, rv)
	}
	if st, _, _ := sb.do(sb.client(nil), "GET", "/readyz?role=writer", "", nil, nil); st != http.StatusServiceUnavailable {
		t.Fatalf("standby /readyz?role=writer: %d", st)
	}

	writer = "" // an election under way
	st, _, err := sb.do(a.c, "POST", wire.PathEvents, "", body, nil)
	if err != nil || st != http.StatusServiceUnavailable {
		t.Fatalf("batch while no writer is known: %d %v", st, err)
	}
	if st, _, _ := sb.do(sb.client(nil), "GET", "/readyz", "", nil, nil); st != http.StatusServiceUnavailable {
		t.Fatalf("standby /readyz without a writer: %d", st)
	}
}
