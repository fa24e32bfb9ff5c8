package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

type env struct {
	t      *testing.T
	srv    *httptest.Server
	api    *Server
	store  *memStore
	state  *memState
	ca     *testCA
	roots  *x509.CertPool
	admin  string
	enroll string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, store: newMemStore(), state: newMemState(), ca: newTestCA("test CA")}
	var err error
	e.api, err = New(Config{Store: e.store, State: e.state, CA: e.ca, AgentID: cnAgentID, NewAgentID: newTestAgentID,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(e.api.Handler())
	e.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: e.ca.pool()}
	e.srv.StartTLS()
	t.Cleanup(func() { e.srv.Close(); e.api.Close() })
	e.roots = x509.NewCertPool()
	e.roots.AddCert(e.srv.Certificate())
	e.admin = "admin-secret"
	e.state.api[e.admin] = APIToken{ID: "a1", Name: "admin", Role: RoleAdmin}
	e.state.api["auditor-secret"] = APIToken{ID: "a2", Name: "audit", Role: RoleAuditor}
	e.enroll, _, _ = e.state.CreateEnrollToken(context.Background(), time.Hour, 100, "admin")
	return e
}

// client is an HTTPS client trusting the test server, with cert as its
// client certificate when given.
func (e *env) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: e.roots, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

type testAgent struct {
	id   string
	cert tls.Certificate
	c    *http.Client
	seq  uint64
	prev string
}

func (e *env) enrollAgent(host string) *testAgent {
	e.t.Helper()
	key, csr := newKeyAndCSR(host)
	var resp wire.EnrollResponse
	st := e.doJSON(e.client(nil), "POST", wire.PathEnroll, "", wire.EnrollRequest{Token: e.enroll, CSR: string(csr),
		Hostname: host, OS: "linux", Arch: "amd64"}, &resp)
	if st != http.StatusOK {
		e.t.Fatalf("enroll: status %d", st)
	}
	return e.agentFromCert(resp.AgentID, key, []byte(resp.Certificate))
}

func (e *env) agentFromCert(id string, key *ecdsa.PrivateKey, certPEM []byte) *testAgent {
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		e.t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	if err != nil {
		e.t.Fatal(err)
	}
	return &testAgent{id: id, cert: cert, c: e.client(&cert)}
}

// events seals n more events of a's chain.
func (a *testAgent) events(n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		a.seq++
		ev := event.Event{Agent: a.id, Seq: a.seq, Time: time.Now(), Control: "fileaccess", Type: "file.modified",
			Severity: event.Info, User: "yamada", Object: fmt.Sprintf(`D:\顧客\file-%d.xlsx`, a.seq),
			Attrs: event.Attrs{"size": json.Number("1234")}}
		if err := ev.Seal(a.prev); err != nil {
			panic(err)
		}
		a.prev = ev.Hash
		out[i] = ev
	}
	return out
}

// doJSON sends body (JSON-encoded unless []byte) and decodes the answer
// into out when given. It fails the test on a non-JSON answer.
func (e *env) doJSON(c *http.Client, method, path, bearer string, body, out any) int {
	e.t.Helper()
	st, b, err := e.do(c, method, path, bearer, body, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if st != http.StatusNotModified && !json.Valid(b) {
		e.t.Fatalf("%s %s: %d with non-JSON body %q", method, path, st, b)
	}
	if out != nil && st < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	if st >= 400 {
		var we wire.Error
		if json.Unmarshal(b, &we) != nil || we.Error == "" {
			e.t.Fatalf("%s %s: %d without a wire.Error body: %s", method, path, st, b)
		}
		if eo, ok := out.(*wire.Error); ok {
			*eo = we
		}
	}
	return st
}

func (e *env) do(c *http.Client, method, path, bearer string, body any, hdr http.Header) (int, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (e *env) queryEvents(q url.Values) (evs []event.Event, next string) {
	e.t.Helper()
	var out struct {
		Events []event.Event `json:"events"`
		Next   string        `json:"next"`
	}
	if st := e.doJSON(e.client(nil), "GET", "/api/v1/events?"+q.Encode(), e.admin, nil, &out); st != http.StatusOK {
		e.t.Fatalf("query: %d", st)
	}
	return out.Events, out.Next
}

func TestEnrollIngestQuery(t *testing.T) {
	e := newEnv(t)
	a := e.enrollAgent("pc-001")
	var ack wire.Ack
	if st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: a.events(3)}, &ack); st != http.StatusOK || ack.AckedSeq != 3 {
		t.Fatalf("ingest: %d %+v", st, ack)
	}
	// gzip, and a resend of an acked event deduplicated.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	evs := a.events(2)
	json.NewEncoder(zw).Encode(wire.Batch{Events: evs})
	zw.Close()
	st, b, err := e.do(a.c, "POST", wire.PathEvents, "", gz.Bytes(), http.Header{"Content-Encoding": {"gzip"}})
	if err != nil || st != http.StatusOK || !strings.Contains(string(b), `"acked_seq":5`) {
		t.Fatalf("gzip ingest: %d %s %v", st, b, err)
	}
	if st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: evs[1:]}, &ack); st != http.StatusOK || ack.AckedSeq != 5 {
		t.Fatalf("resend: %d %+v", st, ack)
	}

	got, next := e.queryEvents(url.Values{"agent": {a.id}, "limit": {"4"}})
	if len(got) != 4 || next == "" || got[0].Seq != 1 || got[3].Seq != 4 {
		t.Fatalf("page 1: %d events, next %q", len(got), next)
	}
	if err := got[2].Validate(); err != nil {
		t.Fatalf("queried event does not verify: %v", err)
	}
	got, next = e.queryEvents(url.Values{"agent": {a.id}, "cursor": {next}})
	if len(got) != 1 || got[0].Seq != 5 || next != "" {
		t.Fatalf("page 2: %+v next %q", got, next)
	}
	srvEvs, _ := e.queryEvents(url.Values{"agent": {event.ServerStream}, "type": {"agent.enrolled"}})
	if len(srvEvs) != 1 || srvEvs[0].Object != a.id || srvEvs[0].Control != "server" {
		t.Fatalf("agent.enrolled not recorded: %+v", srvEvs)
	}

	var agents struct {
		Agents []map[string]any `json:"agents"`
	}
	if st := e.doJSON(e.client(nil), "GET", "/api/v1/agents", "auditor-secret", nil, &agents); st != http.StatusOK {
		t.Fatalf("agents: %d", st)
	}
	if len(agents.Agents) != 1 || agents.Agents[0]["id"] != a.id || agents.Agents[0]["hostname"] != "pc-001" ||
		agents.Agents[0]["last_seq"] != float64(5) || agents.Agents[0]["events"] != float64(5) || agents.Agents[0]["last_seen"] == nil {
		t.Fatalf("agents: %+v", agents.Agents)
	}

	// metrics reflect the ingest.
	_, mb, _ := e.do(e.client(nil), "GET", "/metrics", "", nil, nil)
	for _, want := range []string{"mamori_events_ingested_total 5", "mamori_events_duplicate_total 1", "mamori_enrollments_total 1",
		"mamori_store_tree_size 6", "mamori_batch_ack_seconds_count 3",
		`mamori_batches_acked_total{encoding="gzip"} 1`, `mamori_batches_acked_total{encoding="identity"} 2`, "mamori_store_index_lag_events 7", "mamori_store_index_runs 3"} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// zstd as agents send it once told, and every answer tells them.
	zw2, err := zstd.NewWriter(nil, zstd.WithWindowSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	zb := zw2.EncodeAll(mustJSON(t, wire.Batch{Events: a.events(1)}), nil)
	req, _ := http.NewRequest("POST", e.srv.URL+wire.PathEvents, bytes.NewReader(zb))
	req.Header.Set("Content-Encoding", "zstd")
	resp, err := a.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	zbody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(zbody), `"acked_seq":6`) || resp.Header.Get("Accept-Encoding") != wire.AcceptEncoding {
		t.Fatalf("zstd ingest: %d %s, Accept-Encoding %q", resp.StatusCode, zbody, resp.Header.Get("Accept-Encoding"))
	}
	if _, mb, _ := e.do(e.client(nil), "GET", "/metrics", "", nil, nil); !strings.Contains(string(mb), `mamori_batches_acked_total{encoding="zstd"} 1`) {
		t.Error("metrics lack the zstd batch acked")
	}
}

func TestEnrollRefusals(t *testing.T) {
	e := newEnv(t)
	_, csr := newKeyAndCSR("pc")
	short, _, _ := e.state.CreateEnrollToken(context.Background(), time.Hour, 1, "admin")
	expired, _, _ := e.state.CreateEnrollToken(context.Background(), -time.Second, 5, "admin")
	ok := wire.EnrollRequest{Token: short, CSR: string(csr), Hostname: "pc", OS: "windows", Arch: "amd64"}
	with := func(f func(*wire.EnrollRequest)) wire.EnrollRequest { r := ok; f(&r); return r }
	for _, tc := range []struct {
		name string
		req  any
		want int
	}{
		{"unknown token", with(func(r *wire.EnrollRequest) { r.Token = "nope" }), 401},
		{"expired token", with(func(r *wire.EnrollRequest) { r.Token = expired }), 401},
		{"bad csr", with(func(r *wire.EnrollRequest) {
			r.CSR = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
		}), 400},
		{"no hostname", with(func(r *wire.EnrollRequest) { r.Hostname = "" }), 400},
		{"unknown field", []byte(`{"token":"x","csr":"y","hostname":"h","os":"l","arch":"a","admin":true}`), 400},
		{"oversize", []byte(`{"token":"` + strings.Repeat("a", wire.MaxEnrollBody) + `"}`), 413},
		{"first use", ok, 200},
		{"used up", ok, 401},
	} {
		var out wire.Error
		if st := e.doJSON(e.client(nil), "POST", wire.PathEnroll, "", tc.req, &out); st != tc.want {
			t.Errorf("%s: status %d (%s), want %d", tc.name, st, out.Error, tc.want)
		}
	}
	if n := len(e.state.agents); n != 1 {
		t.Fatalf("%d agents stored, want only the one good enrollment", n)
	}
	if e.state.enroll[short].UsesLeft != 0 || e.state.enroll[expired].UsesLeft != 5 {
		t.Fatalf("token uses: short %d expired %d", e.state.enroll[short].UsesLeft, e.state.enroll[expired].UsesLeft)
	}
}

func TestIngestIdentity(t *testing.T) {
	e := newEnv(t)
	a := e.enrollAgent("pc-a")
	b := e.enrollAgent("pc-b")

	// No client certificate.
	var out wire.Error
	if st := e.doJSON(e.client(nil), "POST", wire.PathEvents, "", wire.Batch{Events: a.events(1)}, &out); st != http.StatusUnauthorized {
		t.Fatalf("no cert: %d", st)
	}
	a.seq, a.prev = 0, ""

	// A certificate from another CA: the handshake fails.
	other := newTestCA("other CA")
	key, csr := newKeyAndCSR("evil")
	certPEM, _, err := other.SignAgent(csr, a.id)
	if err != nil {
		t.Fatal(err)
	}
	evil := e.agentFromCert(a.id, key, certPEM)
	// Go's client only offers a certificate the server's CA list admits, so
	// it would send none (401); force it to present the foreign one.
	evil.c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &evil.cert, nil
	}
	if st, b, err := e.do(evil.c, "POST", wire.PathEvents, "", wire.Batch{Events: a.events(1)}, nil); err == nil {
		t.Fatalf("a certificate from another CA was accepted: %d %s", st, b)
	}
	a.seq, a.prev = 0, ""

	// Agent B's certificate, agent A's events.
	b.c = e.client(&b.cert)
	if st := e.doJSON(b.c, "POST", wire.PathEvents, "", wire.Batch{Events: a.events(2)}, &out); st != http.StatusForbidden {
		t.Fatalf("B writing as A: %d", st)
	}
	// A certificate of an agent that state does not know (removed).
	key, csr = newKeyAndCSR("ghost")
	certPEM, _, _ = e.ca.SignAgent(csr, "ghost-agent")
	ghost := e.agentFromCert("ghost-agent", key, certPEM)
	if st := e.doJSON(ghost.c, "POST", wire.PathEvents, "", wire.Batch{Events: ghost.events(1)}, &out); st != http.StatusForbidden {
		t.Fatalf("unknown agent: %d", st)
	}
	for _, id := range []string{a.id, b.id, "ghost-agent"} {
		if n := e.store.count(id); n != 0 {
			t.Fatalf("%s: %d events stored after refusals", id, n)
		}
	}
}

func TestIngestBadInput(t *testing.T) {
	e := newEnv(t)
	a := e.enrollAgent("pc")
	var ack wire.Ack
	if st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: a.events(2)}, &ack); st != 200 {
		t.Fatalf("first batch: %d", st)
	}
	good := func() []event.Event { // the next valid event, not consumed
		s, p := a.seq, a.prev
		evs := a.events(1)
		a.seq, a.prev = s, p
		return evs
	}
	marshal := func(evs []event.Event) []byte { b, _ := json.Marshal(wire.Batch{Events: evs}); return b }
	resealed := func(f func(*event.Event)) []byte {
		evs := good()
		f(&evs[0])
		evs[0].Seal(evs[0].Prev)
		return marshal(evs)
	}
	badUTF8 := marshal(good())
	badUTF8 = bytes.Replace(badUTF8, []byte("yamada"), []byte("yam\xffda"), 1)
	over := make([]event.Event, wire.MaxBatchEvents+1)
	for i := range over {
		over[i] = good()[0]
	}
	var gzBomb bytes.Buffer
	zw := gzip.NewWriter(&gzBomb)
	// Decoded size over the limit while every event is valid and under
	// MaxEventJSON: 700 sealed events of about 27 KB.
	bigEvs := make([]event.Event, 700)
	prev := a.prev
	for i := range bigEvs {
		e := event.Event{Agent: a.id, Seq: a.seq + uint64(i) + 1, Time: time.Now().UTC(), Control: "fileaccess", Type: "file.modified",
			Severity: event.Info, User: strings.Repeat("u", 4000), Process: strings.Repeat("p", 4000), Object: strings.Repeat("o", 4000),
			Attrs: event.Attrs{"pad": strings.Repeat("a", 15000)}}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev, bigEvs[i] = e.Hash, e
	}
	zw.Write(marshal(bigEvs))
	zw.Close()
	zenc, err := zstd.NewWriter(nil, zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	zstdBomb := zenc.EncodeAll(marshal(bigEvs), nil)
	zstdSpace := zenc.EncodeAll([]byte(`{"events":[`+strings.Repeat(" ", wire.MaxBatchBody)+`]}`), nil)
	// A frame that asks for a 32 MiB window: refused before the decoder
	// allocates it. Its window descriptor (the byte after the frame header
	// descriptor, when not single-segment) says 2^(10+15) bytes.
	wideEnc, err := zstd.NewWriter(nil, zstd.WithWindowSize(1<<20), zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	zstdWide := wideEnc.EncodeAll(marshal(good()), nil)
	if zstdWide[4]&0x20 != 0 {
		t.Fatalf("frame header % x: want a window descriptor", zstdWide[:6])
	}
	zstdWide[5] = 15 << 3
	var spaceBomb bytes.Buffer
	zw = gzip.NewWriter(&spaceBomb)
	zw.Write([]byte(`{"events":[` + strings.Repeat(" ", wire.MaxBatchBody) + `]}`))
	zw.Close()
	for _, tc := range []struct {
		name string
		body []byte
		hdr  http.Header
		want int
	}{
		{"malformed JSON", []byte(`{"events":[{"agent":`), nil, 400},
		{"not an object", []byte(`[1,2]`), nil, 400},
		{"trailing data", append(marshal(good()), []byte(`{}`)...), nil, 400},
		{"unknown field", []byte(`{"events":[],"extra":1}`), nil, 400},
		{"unknown event field", bytes.Replace(marshal(good()), []byte(`"agent"`), []byte(`"evil":1,"agent"`), 1), nil, 400},
		{"empty batch", []byte(`{"events":[]}`), nil, 400},
		{"oversize body", append([]byte(`{"events":[`), bytes.Repeat([]byte(" "), wire.MaxBatchBody)...), nil, 413},
		{"gzip bomb", gzBomb.Bytes(), http.Header{"Content-Encoding": {"gzip"}}, 413},
		{"gzip bomb of space", spaceBomb.Bytes(), http.Header{"Content-Encoding": {"gzip"}}, 400},
		{"bad gzip", []byte("not gzip"), http.Header{"Content-Encoding": {"gzip"}}, 400},
		{"unknown encoding", marshal(good()), http.Header{"Content-Encoding": {"br"}}, 415},
		{"zstd bomb", zstdBomb, http.Header{"Content-Encoding": {"zstd"}}, 413},
		{"zstd bomb of space", zstdSpace, http.Header{"Content-Encoding": {"zstd"}}, 400},
		{"bad zstd", []byte("not zstd"), http.Header{"Content-Encoding": {"zstd"}}, 400},
		{"zstd window over 8 MiB", zstdWide, http.Header{"Content-Encoding": {"zstd"}}, 400},
		{"batch over the limit", marshal(over), nil, 400},
		{"wrong seq", resealed(func(e *event.Event) { e.Seq += 5 }), nil, 409},
		{"wrong prev hash", resealed(func(e *event.Event) { e.Prev = strings.Repeat("0", 64) }), nil, 409},
		{"hash mismatch", bytes.Replace(marshal(good()), []byte("yamada"), []byte("suzuki"), 1), nil, 400},
		{"invalid UTF-8", badUTF8, nil, 400},
		{"bad severity", resealed(func(e *event.Event) { e.Severity = "panic" }), nil, 400},
		{"other agent inside", resealed(func(e *event.Event) { e.Agent = "someone-else" }), nil, 403},
	} {
		st, b, err := e.do(a.c, "POST", wire.PathEvents, "", tc.body, tc.hdr)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var we wire.Error
		if st != tc.want || json.Unmarshal(b, &we) != nil || we.Error == "" {
			t.Errorf("%s: %d %s, want %d with a JSON error", tc.name, st, b, tc.want)
		}
	}
	if got, _ := e.queryEvents(url.Values{"agent": {a.id}}); len(got) != 2 {
		t.Fatalf("%d events stored after bad input, want the 2 good ones", len(got))
	}
	// The good next event still goes in: bad input changed nothing.
	if st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: a.events(1)}, &ack); st != 200 || ack.AckedSeq != 3 {
		t.Fatalf("good batch after bad ones: %d %+v", st, ack)
	}
	// A store failure is a 500 that says nothing was stored.
	e.store.mu.Lock()
	e.store.failOn = errors.New("disk full")
	e.store.mu.Unlock()
	st, b, _ := e.do(a.c, "POST", wire.PathEvents, "", marshal(a.events(1)), nil)
	if st != 500 || strings.Contains(string(b), "disk full") {
		t.Fatalf("store failure: %d %s", st, b)
	}
}

func TestAdminAuthAndTokens(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	var out wire.Error
	if st := e.doJSON(c, "GET", "/api/v1/events", "", nil, &out); st != 401 {
		t.Fatalf("no token: %d", st)
	}
	if st := e.doJSON(c, "GET", "/api/v1/events", "wrong", nil, &out); st != 401 {
		t.Fatalf("bad token: %d", st)
	}
	if st := e.doJSON(c, "POST", "/api/v1/tokens", "auditor-secret", map[string]any{"ttl": "24h", "uses": 10}, &out); st != 403 {
		t.Fatalf("auditor creating a token: %d", st)
	}
	for _, bad := range []map[string]any{{"ttl": "forever", "uses": 1}, {"ttl": "24h", "uses": 0}, {"ttl": "24h", "uses": 1, "x": 1}} {
		if st := e.doJSON(c, "POST", "/api/v1/tokens", e.admin, bad, &out); st != 400 {
			t.Fatalf("bad token request %v: %d", bad, st)
		}
	}
	var tok tokenResponse
	if st := e.doJSON(c, "POST", "/api/v1/tokens", e.admin, map[string]any{"ttl": "24h", "uses": 10}, &tok); st != 201 || tok.Token == "" || tok.Uses != 10 {
		t.Fatalf("create token: %d %+v", st, tok)
	}
	evs, _ := e.queryEvents(url.Values{"type": {"token.created"}})
	if len(evs) != 1 || evs[0].User != "admin" || evs[0].Attrs["id"] != tok.ID {
		t.Fatalf("token.created: %+v", evs)
	}
	raw, _ := json.Marshal(evs[0])
	if strings.Contains(string(raw), tok.Token) {
		t.Fatal("the server stream holds the token's secret")
	}
	// The new token enrolls.
	e.enroll = tok.Token
	e.enrollAgent("pc-new")

	for _, q := range []string{"limit=0", "limit=x", "from=yesterday", "to=2026-13-01T00:00:00Z", "colour=red", "agent=a&agent=b"} {
		var we wire.Error
		if st := e.doJSON(c, "GET", "/api/v1/events?"+q, e.admin, nil, &we); st != 400 {
			t.Errorf("%s: %d", q, st)
		}
		name := strings.SplitN(q, "=", 2)[0]
		if !strings.HasPrefix(we.Error, name) {
			t.Errorf("%s: error %q does not name the parameter", q, we.Error)
		}
	}
	if st := e.doJSON(c, "GET", "/api/v1/events?cursor=garbage", e.admin, nil, &out); st != 400 {
		t.Fatalf("bad cursor: %d", st)
	}
	if st := e.doJSON(c, "GET", "/api/v1/nothing", e.admin, nil, &out); st != 404 {
		t.Fatalf("unknown admin path: %d", st)
	}
}

const testPolicy = `apiVersion: mamori/v1
kind: Policy
name: %s
controls:
  screenlock: {mode: enforce, max_idle: %s, require_password: true}
`

func TestPolicies(t *testing.T) {
	e := newEnv(t)
	a := e.enrollAgent("pc")
	c := e.client(nil)
	var pr wire.PolicyResponse
	if st := e.doJSON(a.c, "GET", wire.PathPolicy, "", nil, &pr); st != 200 || pr.Version != e.api.policies.builtin.Version {
		t.Fatalf("built-in default: %d %+v", st, pr.Version)
	}
	// Unchanged: 304 after the wait.
	st, _, _ := e.do(a.c, "GET", wire.PathPolicy+"?version="+pr.Version+"&wait=200ms", "", nil, nil)
	if st != http.StatusNotModified {
		t.Fatalf("unchanged: %d", st)
	}
	// A PUT during a long-poll wakes it.
	type res struct {
		st int
		pr wire.PolicyResponse
	}
	done := make(chan res, 1)
	go func() {
		var pr2 wire.PolicyResponse
		st, b, _ := e.do(a.c, "GET", wire.PathPolicy+"?version="+pr.Version+"&wait=20s", "", nil, nil)
		json.Unmarshal(b, &pr2)
		done <- res{st, pr2}
	}()
	time.Sleep(100 * time.Millisecond)
	var out wire.Error
	if st := e.doJSON(c, "PUT", "/api/v1/policies/default", "auditor-secret", []byte(fmt.Sprintf(testPolicy, "default", "5m")), &out); st != 403 {
		t.Fatalf("auditor PUT: %d", st)
	}
	if st := e.doJSON(c, "PUT", "/api/v1/policies/default", e.admin, []byte(fmt.Sprintf(testPolicy, "default", "1s")), &out); st != 400 ||
		!strings.Contains(out.Error, "line 5") || !strings.Contains(out.Error, "controls.screenlock.max_idle") {
		t.Fatalf("bad policy: %d %q", st, out.Error)
	}
	if st := e.doJSON(c, "PUT", "/api/v1/policies/default", e.admin, []byte(fmt.Sprintf(testPolicy, "other", "5m")), &out); st != 400 {
		t.Fatalf("name mismatch: %d", st)
	}
	select {
	case r := <-done:
		t.Fatalf("long-poll answered before any change: %+v", r)
	default:
	}
	if st := e.doJSON(c, "PUT", "/api/v1/policies/default", e.admin, []byte(fmt.Sprintf(testPolicy, "default", "5m")), nil); st != 200 {
		t.Fatalf("PUT: %d", st)
	}
	select {
	case r := <-done:
		if r.st != 200 || r.pr.Version == pr.Version || !strings.Contains(string(r.pr.Policy), `"max_idle":"5m0s"`) {
			t.Fatalf("woken poll: %d %s", r.st, r.pr.Policy)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll not woken by the PUT")
	}
	var view policyView
	if st := e.doJSON(c, "GET", "/api/v1/policies/default", "auditor-secret", nil, &view); st != 200 || view.Name != "default" || !strings.Contains(view.YAML, "max_idle: 5m") {
		t.Fatalf("GET policy: %d %+v", st, view)
	}
	var list map[string][]string
	if st := e.doJSON(c, "GET", "/api/v1/policies", e.admin, nil, &list); st != 200 || len(list["policies"]) != 1 {
		t.Fatalf("list: %d %v", st, list)
	}
	if st := e.doJSON(c, "GET", "/api/v1/policies/none", e.admin, nil, &out); st != 404 {
		t.Fatalf("missing policy: %d", st)
	}
	// An assignment wins over default.
	e.state.PutPolicy(context.Background(), "strict", []byte(fmt.Sprintf(testPolicy, "strict", "2m")))
	e.state.mu.Lock()
	e.state.assign[a.id] = "strict"
	e.state.mu.Unlock()
	if st := e.doJSON(a.c, "GET", wire.PathPolicy, "", nil, &pr); st != 200 || !strings.Contains(string(pr.Policy), `"name":"strict"`) {
		t.Fatalf("assigned: %d %s", st, pr.Policy)
	}
	evs, _ := e.queryEvents(url.Values{"type": {"policy.changed"}})
	if len(evs) != 1 || evs[0].Object != "policy/default" || evs[0].User != "admin" {
		t.Fatalf("policy.changed: %+v", evs)
	}
}

func TestHealthz(t *testing.T) {
	e := newEnv(t)
	var out map[string]string
	if st := e.doJSON(e.client(nil), "GET", "/healthz", "", nil, &out); st != 200 || out["status"] != "ok" {
		t.Fatalf("healthz: %d %v", st, out)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
