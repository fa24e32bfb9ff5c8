package app_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/shared/wire"
)

// TestConnCapShedsWhileAgentShips opens three times the connection cap from
// an unauthenticated client, each sending GET /healthz and then holding the
// connection, as a careless or hostile client would. The server must close
// the idle ones to stay under the cap, while an enrolled agent (HTTP/2, its
// policy long-poll held on its one connection) keeps shipping and /healthz
// keeps answering. Without the cap every connection stays open until the
// descriptors run out.
func TestConnCapShedsWhileAgentShips(t *testing.T) {
	const maxConns, raw = 48, 3 * 48
	srv, err := app.Start(context.Background(), app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1"}, MaxConns: maxConns,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-cap")
	tr := a.c.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = true // as the agent's transport
	tr.CloseIdleConnections()
	if _, err := a.send(a.events(10)); err != nil {
		t.Fatal(err)
	}
	// The long-poll, held on the agent's connection for the whole test.
	pollCtx, stopPoll := context.WithCancel(context.Background())
	polled := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(pollCtx, "GET", srv.URL()+wire.PathPolicy+"?version=x", nil)
		resp, err := a.c.Do(req)
		if err != nil {
			polled <- err
			return
		}
		var pr wire.PolicyResponse
		err = json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || resp.Proto != "HTTP/2.0" {
			polled <- fmt.Errorf("first poll: %s %s %v", resp.Proto, resp.Status, err)
			return
		}
		req, _ = http.NewRequestWithContext(pollCtx, "GET", srv.URL()+wire.PathPolicy+"?wait=5m&version="+pr.Version, nil)
		_, err = a.c.Do(req)
		polled <- err
	}()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM())
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, NextProtos: []string{"http/1.1"}}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range raw {
		c, err := tls.Dial("tcp", srv.Addr(), cfg)
		if err != nil {
			t.Fatalf("raw connection %d: %v", i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("raw connection %d: /healthz: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i%16 == 15 {
			if _, err := a.send(a.events(50)); err != nil {
				t.Fatalf("agent shipping with %d raw connections opened: %v", i+1, err)
			}
		}
	}
	shed := 0
	buf := make([]byte, 1024)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(buf)
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			shed++
		}
	}
	// The agent holds one connection; the rest of the cap may be raw ones.
	if shed < raw-maxConns+1 {
		t.Errorf("%d of %d idle unauthenticated connections shed with a cap of %d", shed, raw, maxConns)
	}
	if _, err := a.send(a.events(50)); err != nil {
		t.Fatalf("agent shipping after the flood: %v", err)
	}
	if st := getStatus(t, srv, "/healthz"); st != http.StatusOK {
		t.Fatalf("/healthz after the flood: %d", st)
	}
	select {
	case err := <-polled:
		t.Fatalf("the agent's long-poll ended during the flood: %v", err)
	default:
	}
	stopPoll()
	<-polled
}

// getStatus does GET path on a fresh connection without a certificate.
func getStatus(t *testing.T, srv *app.Server, path string) int {
	t.Helper()
	c := httpsClient(srv.CAPEM(), nil)
	resp, err := c.Get(srv.URL() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
