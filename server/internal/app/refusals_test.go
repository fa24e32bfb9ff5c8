package app_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// TestRefusalsRealStore runs the bad-input table against the real SQLite
// store and CA: every refusal is a 4xx with a JSON error and stores nothing.
func TestRefusalsRealStore(t *testing.T) {
	srv := start(t, t.TempDir())
	defer srv.Close()
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-a")
	b := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-b")
	if _, err := a.send(a.events(3)); err != nil {
		t.Fatal(err)
	}
	next := func(n int) []event.Event { // a's next events, not consumed
		s, p := a.seq, a.prev
		evs := a.events(n)
		a.seq, a.prev = s, p
		return evs
	}
	marshal := func(evs []event.Event) []byte { j, _ := json.Marshal(wire.Batch{Events: evs}); return j }
	reseal := func(evs []event.Event, f func([]event.Event)) []byte {
		f(evs)
		prev := evs[0].Prev
		for i := range evs {
			evs[i].Seal(prev)
			prev = evs[i].Hash
		}
		return marshal(evs)
	}
	over := make([]event.Event, wire.MaxBatchEvents+1)
	for i := range over {
		over[i] = next(1)[0]
	}
	for _, tc := range []struct {
		name string
		c    *agentClient
		body []byte
		want int
	}{
		{"malformed JSON", a, []byte(`{"events":[`), 400},
		{"oversize body", a, append([]byte(`{"events":[`), bytes.Repeat([]byte(" "), wire.MaxBatchBody)...), 413},
		{"batch over the limit", a, marshal(over), 400},
		{"seq going backwards", a, reseal(next(2), func(e []event.Event) { e[1].Seq = e[0].Seq }), 409},
		{"wrong prev hash", a, reseal(next(1), func(e []event.Event) { e[0].Prev = strings.Repeat("ab", 32) }), 409},
		{"hash does not match", a, bytes.Replace(marshal(next(1)), []byte("yamada"), []byte("tanaka"), 1), 400},
		{"invalid UTF-8", a, bytes.Replace(marshal(next(1)), []byte("yamada"), []byte("yam\xc3\x28da"), 1), 400},
		{"agent B writing as A", b, marshal(next(2)), 403},
	} {
		st, body, err := tc.c.post(tc.body, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var we wire.Error
		if st != tc.want || json.Unmarshal(body, &we) != nil || we.Error == "" {
			t.Errorf("%s: %d %s, want %d with a JSON error", tc.name, st, body, tc.want)
		}
	}

	// No client certificate.
	resp, err := httpsClient(srv.CAPEM(), nil).Post(srv.URL()+wire.PathEvents, "application/json", bytes.NewReader(marshal(next(1))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no client cert: %d", resp.StatusCode)
	}
	// A certificate from another CA, presented anyway: the handshake fails.
	other, err := pki.LoadOrCreate(t.TempDir(), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, _ := pki.NewKeyAndCSR("evil")
	certPEM, _, err := other.SignAgent(csrPEM, a.id)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)
	evil := &agentClient{base: srv.URL(), c: httpsClient(srv.CAPEM(), nil)}
	evil.c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &cert, nil
	}
	if st, body, err := evil.post(marshal(next(1)), nil); err == nil {
		t.Fatalf("foreign certificate accepted: %d %s", st, body)
	}

	if got := allEvents(t, srv, a.id); len(got) != 3 {
		t.Fatalf("a has %d events after refusals, want 3", len(got))
	}
	if got := allEvents(t, srv, b.id); len(got) != 0 {
		t.Fatalf("b has %d events, want 0", len(got))
	}
	if acked, err := a.send(a.events(1)); err != nil || acked != 4 {
		t.Fatalf("good batch after refusals: %d %v", acked, err)
	}
}
