package api

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/event"
)

// peerEnv is an API that takes forwarded records; any client certificate
// of the test CA counts as a peer's (pki.PeerServer checks the real name).
func peerEnv(t *testing.T, writer bool) (*env, *tls.Certificate) {
	e := newEnv(t)
	a := e.enrollAgent("srv-b")
	api, err := New(Config{Store: e.store, State: e.state, CA: e.ca, AgentID: cnAgentID, NewAgentID: newTestAgentID,
		PeerServer: cnAgentID, Log: zerolog.New(zerolog.NewTestWriter(t)),
		Writer: func() (bool, string) { return writer, "https://writer.test:8443" }})
	if err != nil {
		t.Fatal(err)
	}
	e.api = api
	e.srv = httptest.NewUnstartedServer(api.Handler())
	e.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: e.ca.pool()}
	e.srv.StartTLS()
	t.Cleanup(func() { e.srv.Close(); api.Close() })
	e.roots.AddCert(e.srv.Certificate())
	return e, &a.cert
}

func postRecord(t *testing.T, e *env, c *http.Client, key string, body []byte) (int, event.Event) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+PathPeerRecords, bytes.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out event.Event
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, out
}

// The writer appends a standby's record once per Idempotency-Key, names the
// standby from its certificate, and refuses callers without a peer
// certificate, without a key, or with a bad record; a standby refuses with
// 503 so the sender tries the writer again.
func TestPeerRecords(t *testing.T) {
	e, peer := peerEnv(t, true)
	rec, _ := json.Marshal(event.Event{Control: "server", Type: "export.made", Time: time.Now().UTC(), User: "alice",
		Severity: event.Info, Attrs: event.Attrs{RecordedOnAttr: "forged"}})
	before := len(e.store.all)

	if st, _ := postRecord(t, e, e.client(nil), "k1", rec); st != http.StatusForbidden {
		t.Fatalf("no peer certificate: %d", st)
	}
	c := e.client(peer)
	if st, _ := postRecord(t, e, c, "", rec); st != http.StatusBadRequest {
		t.Fatalf("no Idempotency-Key: %d", st)
	}
	for _, bad := range []string{`{`, `{"control":"server","type":"x","time":"2026-12-03T00:00:00Z","extra":1}`, `{"type":"x"}`} {
		if st, _ := postRecord(t, e, c, "k-bad", []byte(bad)); st != http.StatusBadRequest {
			t.Fatalf("record %s: %d", bad, st)
		}
	}
	if n := len(e.store.all) - before; n != 0 {
		t.Fatalf("refused records appended %d events", n)
	}

	st, first := postRecord(t, e, c, "k1", rec)
	if st != 200 || first.Agent != event.ServerStream || first.Hash == "" || first.Attrs[RecordedOnAttr] == "forged" ||
		first.Attrs[RecordedOnAttr] == "" || first.User != "alice" {
		t.Fatalf("first send: %d %+v", st, first)
	}
	st, again := postRecord(t, e, c, "k1", rec)
	if st != 200 || again.Hash != first.Hash {
		t.Fatalf("retry with the same key: %d %s, want the first answer %s", st, again.Hash, first.Hash)
	}
	if st, other := postRecord(t, e, c, "k2", rec); st != 200 || other.Seq != first.Seq+1 {
		t.Fatalf("another key: %d seq %d", st, other.Seq)
	}
	if n := len(e.store.all) - before; n != 2 {
		t.Fatalf("%d records appended for two keys", n)
	}

	sb, sbPeer := peerEnv(t, false)
	sbBefore := len(sb.store.all)
	resp := func() *http.Response {
		req, _ := http.NewRequest("POST", sb.srv.URL+PathPeerRecords, bytes.NewReader(rec))
		req.Header.Set("Idempotency-Key", "k3")
		r, err := sb.client(sbPeer).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r
	}()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || len(sb.store.all) != sbBefore {
		t.Fatalf("a standby answered %d, Retry-After %q, stored %d", resp.StatusCode, resp.Header.Get("Retry-After"), len(sb.store.all)-sbBefore)
	}
}
