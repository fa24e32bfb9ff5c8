package app_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/shared/wire"
)

// apiCall sends an admin request with a bearer token and decodes the answer.
func apiCall(t *testing.T, srvURL string, caPEM []byte, token, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, srvURL+path, body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpsClient(caPEM, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

type tokenList struct {
	Tokens []struct {
		ID, Kind, Name, Role string
		Expired              bool
	} `json:"tokens"`
}

// TestTokensListedAndRevoked: enrollment tokens and people's API tokens are
// listed (never their secrets) and revoked; a revoked token stops working
// at once; every use of a person's token is recorded.
func TestTokensListedAndRevoked(t *testing.T) {
	srv := start(t, t.TempDir())
	defer srv.Close()
	u, ca, admin := srv.URL(), srv.CAPEM(), srv.AdminToken()
	var created struct{ Token, ID string }
	if st := apiCall(t, u, ca, admin, "POST", "/api/v1/tokens", map[string]any{"ttl": "1h", "uses": 5}, &created); st != 201 {
		t.Fatalf("create enroll token: %d", st)
	}
	var person struct{ Token, ID, Role string }
	if st := apiCall(t, u, ca, admin, "POST", "/api/v1/tokens", map[string]any{"kind": "api", "name": "audit-script", "role": "auditor", "ttl": "720h"}, &person); st != 201 || person.Role != "auditor" {
		t.Fatalf("create person token: %d %+v", st, person)
	}
	var l tokenList
	if st := apiCall(t, u, ca, admin, "GET", "/api/v1/tokens", nil, &l); st != 200 {
		t.Fatalf("list: %d", st)
	}
	kinds := map[string]string{}
	for _, tk := range l.Tokens {
		kinds[tk.ID] = tk.Kind
	}
	if kinds[created.ID] != "enroll" || kinds[person.ID] != "api" || len(l.Tokens) < 4 { // + bootstrap enroll and admin tokens
		t.Fatalf("tokens listed: %+v", l.Tokens)
	}
	raw, _ := json.Marshal(l)
	if strings.Contains(string(raw), created.Token) || strings.Contains(string(raw), person.Token) || strings.Contains(string(raw), admin) {
		t.Fatal("a token secret is in the list")
	}

	// The auditor's token reads, cannot write, and each use is recorded.
	if st := apiCall(t, u, ca, person.Token, "GET", "/api/v1/events?limit=1", nil, nil); st != 200 {
		t.Fatalf("auditor token read: %d", st)
	}
	if st := apiCall(t, u, ca, person.Token, "DELETE", "/api/v1/tokens/"+created.ID, nil, nil); st != 403 {
		t.Fatalf("auditor token revoking: %d, want 403", st)
	}
	var uses queried
	adminGet(t, u, admin, ca, "/api/v1/events", url.Values{"type": {"api.token_used"}}, &uses)
	if len(uses.Events) != 2 || uses.Events[0].User != "audit-script" {
		t.Fatalf("token uses recorded: %+v", uses.Events)
	}

	// Revoke both: enrolling and reading stop at once.
	for _, id := range []string{created.ID, person.ID} {
		if st := apiCall(t, u, ca, admin, "DELETE", "/api/v1/tokens/"+id, nil, nil); st != 200 {
			t.Fatalf("revoke %s: %d", id, st)
		}
	}
	if st := apiCall(t, u, ca, person.Token, "GET", "/api/v1/events?limit=1", nil, nil); st != 401 {
		t.Fatalf("revoked person token: %d, want 401", st)
	}
	req, _ := json.Marshal(wire.EnrollRequest{Token: created.Token, CSR: "x", Hostname: "pc", OS: "linux", Arch: "amd64"})
	resp, err := httpsClient(ca, nil).Post(u+wire.PathEnroll, "application/json", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("enroll with a revoked token: %d", resp.StatusCode)
	}
	for _, bad := range []string{"..%2Fx", "0123456789abcdef", "zz"} {
		if st := apiCall(t, u, ca, admin, "DELETE", "/api/v1/tokens/"+bad, nil, nil); st != 404 {
			t.Errorf("revoke %s: %d, want 404", bad, st)
		}
	}
	var revoked queried
	adminGet(t, u, admin, ca, "/api/v1/events", url.Values{"type": {"token.revoked"}}, &revoked)
	if len(revoked.Events) != 2 {
		t.Fatalf("token.revoked events: %d", len(revoked.Events))
	}
}

// TestAgentDisabledAtTLS: a disabled agent keeps its record and evidence
// but its certificate is refused in the handshake (and on a connection it
// already had open); enabled again, it ships as before.
func TestAgentDisabledAtTLS(t *testing.T) {
	srv := start(t, t.TempDir())
	defer srv.Close()
	u, ca, admin := srv.URL(), srv.CAPEM(), srv.AdminToken()
	a := enroll(t, u, srv.EnrollToken(), srv.CAFingerprint(), ca, "pc-stolen")
	if _, err := a.send(a.events(2)); err != nil {
		t.Fatal(err)
	}
	if st := apiCall(t, u, ca, admin, "POST", "/api/v1/agents/"+a.id+"/disable", nil, nil); st != 200 {
		t.Fatalf("disable: %d", st)
	}
	// The connection the agent already had open: refused by the agent plane.
	if st, body, err := a.post([]byte(`{"events":[]}`), nil); err == nil && st != 403 {
		t.Fatalf("open connection after disable: %d %s", st, body)
	}
	// A new connection: refused in the TLS handshake once the watch has
	// brought the serial (CI once connected before it had); until then the
	// agent plane refuses it, so no request of the disabled agent is taken.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fresh := httpsClient(ca, &agentTLS(a).Certificates[0])
		resp, err := fresh.Post(u+wire.PathEvents, "application/json", strings.NewReader(`{}`))
		if err != nil {
			if !strings.Contains(err.Error(), "revoked") && !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("new connection with a revoked certificate: %v", err)
			}
			break
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("new connection with a revoked certificate, before the handshake refuses it: %d, want 403", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatal("new connection with a revoked certificate: handshake still accepted after 10 s")
		}
	}
	// Evidence intact: its events are still there and listed.
	if evs := allEvents(t, srv, a.id); len(evs) != 2 {
		t.Fatalf("events after disable: %d", len(evs))
	}
	if st := apiCall(t, u, ca, admin, "POST", "/api/v1/agents/"+a.id+"/enable", nil, nil); st != 200 {
		t.Fatalf("enable: %d", st)
	}
	// The serials refused in the handshake follow etcd by a watch: the
	// enable reaches it within moments, not with the API's answer.
	batch := a.events(1)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		a.c = httpsClient(ca, &agentTLS(a).Certificates[0])
		_, err := a.send(batch)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after enable: %v", err)
		}
	}
	for _, p := range []string{"..%2Fx", "no-such-agent"} {
		if st := apiCall(t, u, ca, admin, "POST", "/api/v1/agents/"+p+"/disable", nil, nil); st != 404 {
			t.Errorf("disable %s: %d, want 404", p, st)
		}
	}
}

// TestReenrolledHostShownAsDuplicate: a re-installed PC that enrolls again
// gets a new agent id; the agents list names the two as the same host, and
// the old one can be disabled while its evidence stays.
func TestReenrolledHostShownAsDuplicate(t *testing.T) {
	srv := start(t, t.TempDir())
	defer srv.Close()
	old := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "PC-SALES01")
	if _, err := old.send(old.events(2)); err != nil {
		t.Fatal(err)
	}
	again := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-sales01")
	other := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "PC-SALES02")
	var l struct {
		Agents []struct {
			ID       string   `json:"id"`
			SameHost []string `json:"same_host"`
			Disabled bool     `json:"disabled"`
			Events   int64    `json:"events"`
		} `json:"agents"`
	}
	list := func() {
		if st := adminGet(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/api/v1/agents", nil, &l); st != 200 {
			t.Fatalf("agents: %d", st)
		}
	}
	list()
	same := map[string][]string{}
	for _, a := range l.Agents {
		same[a.ID] = a.SameHost
	}
	if len(same[old.id]) != 1 || same[old.id][0] != again.id || len(same[again.id]) != 1 || same[again.id][0] != old.id || len(same[other.id]) != 0 {
		t.Fatalf("same_host: %+v", same)
	}
	if st := apiCall(t, srv.URL(), srv.CAPEM(), srv.AdminToken(), "POST", "/api/v1/agents/"+old.id+"/disable", nil, nil); st != 200 {
		t.Fatalf("disable the old id: %d", st)
	}
	list()
	for _, a := range l.Agents {
		if a.ID == old.id && (!a.Disabled || a.Events != 2) {
			t.Fatalf("old agent after disable: %+v", a)
		}
	}
}

// TestAgentCertRenewal: an agent gets a certificate for a new key with its
// current one (same agent id); the old certificate keeps working until the
// new one is used, then it is refused in the handshake.
func TestAgentCertRenewal(t *testing.T) {
	srv := start(t, t.TempDir())
	defer srv.Close()
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-renew")
	if _, err := a.send(a.events(1)); err != nil {
		t.Fatal(err)
	}
	oldCert := agentTLS(a).Certificates[0]
	keyPEM, csrPEM, err := pki.NewKeyAndCSR("pc-renew")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(wire.RenewRequest{CSR: string(csrPEM)})
	resp, err := a.c.Post(srv.URL()+wire.PathRenew, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var er wire.EnrollResponse
	json.NewDecoder(resp.Body).Decode(&er)
	resp.Body.Close()
	if resp.StatusCode != 200 || er.AgentID != a.id {
		t.Fatalf("renew: %d %+v", resp.StatusCode, er)
	}
	newCert, err := tls.X509KeyPair([]byte(er.Certificate), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	// The old certificate still works (the answer could have been lost).
	if _, err := a.send(a.events(1)); err != nil {
		t.Fatalf("old certificate before the new one is used: %v", err)
	}
	// The new one is used: same agent, same chain.
	a.c = httpsClient(srv.CAPEM(), &newCert)
	if _, err := a.send(a.events(1)); err != nil {
		t.Fatalf("new certificate: %v", err)
	}
	// Now the old one is refused in the handshake.
	old := httpsClient(srv.CAPEM(), &oldCert)
	if _, err := old.Post(srv.URL()+wire.PathEvents, "application/json", strings.NewReader(`{}`)); err == nil {
		t.Fatal("the replaced certificate still connects")
	}
	if evs := allEvents(t, srv, a.id); len(evs) != 3 {
		t.Fatalf("events: %d", len(evs))
	}
	// A CSR that is not one: 400, nothing changes.
	resp, err = a.c.Post(srv.URL()+wire.PathRenew, "application/json", strings.NewReader(`{"csr":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("bad CSR: %d", resp.StatusCode)
	}
}
