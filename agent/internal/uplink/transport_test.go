package uplink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestOneConnectionForShippingAndLongPoll: against an HTTP/2 server, the
// shipper's client and the policy long-poll's client of one identity share
// one connection (the server then holds one per agent, not two), and the
// batch is not stuck behind the held long-poll.
func TestOneConnectionForShippingAndLongPoll(t *testing.T) {
	ca := newCA(t, "Mamori CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	var conns atomic.Int64
	held := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/policy", func(w http.ResponseWriter, r *http.Request) {
		close(held)
		<-r.Context().Done()
	})
	mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		Certificates: []tls.Certificate{ca.serverCert(t)}}
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := &Identity{State: State{AgentID: "ag-0000000000000001", Server: srv.URL}, CAs: pool,
		Cert: tls.Certificate{Certificate: [][]byte{ca.issue(t, key.Public(), "ag-0000000000000001", false)}, PrivateKey: key}}
	poll, ship := id.HTTPClient(time.Minute), id.HTTPClient(5*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/policy?wait=55s", nil)
		if resp, err := poll.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll not received")
	}
	resp, err := ship.Post(srv.URL+"/v1/events", "application/json", strings.NewReader(`{"events":[]}`))
	if err != nil {
		t.Fatalf("batch while the long-poll is held: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/2.0" {
		t.Fatalf("batch went over %q, want HTTP/2.0", b)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for one agent's long-poll and batch, want 1", n)
	}
}
