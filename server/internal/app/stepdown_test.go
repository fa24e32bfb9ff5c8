package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/election"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// TestLostLeaseStepsDown: a writer whose lease ends (revoked here, as etcd
// does for a frozen writer) while another candidate waits stops acking at
// once: its store is deposed (a commit fails by the epoch check), batches
// are redirected to the new writer, its agents' HTTP/2 connections get
// GOAWAY (the next request opens a new connection) and /readyz says
// standby. When the other resigns it is elected again and acks as before.
func TestLostLeaseStepsDown(t *testing.T) {
	srv := start(t, t.TempDir())
	defer srv.Close()
	ctx := context.Background()
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-lease")
	tr := a.c.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = true // as the agent's transport
	tr.CloseIdleConnections()
	if _, err := a.send(a.events(10)); err != nil {
		t.Fatal(err)
	}
	if srv.Role() != "writer" {
		t.Fatalf("role %q", srv.Role())
	}
	// conn returns the local address of the connection a request from the
	// agent goes over.
	conn := func() string {
		var local string
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr().String() }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "GET", srv.URL()+"/healthz", nil)
		resp, err := a.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Proto != "HTTP/2.0" {
			t.Fatalf("agent speaks %s", resp.Proto)
		}
		return local
	}
	first := conn()
	if again := conn(); again != first {
		t.Fatalf("the agent's connection was not reused before the step-down: %s then %s", first, again)
	}

	cli := srv.State().Client()
	other, err := election.New(election.Config{Client: cli, URL: "https://other.example:8443", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	won := make(chan *election.Term, 1)
	go func() {
		term, err := other.Campaign(ctx)
		if err != nil {
			t.Error(err)
		}
		won <- term
	}()
	resp, err := cli.Get(ctx, election.DefaultPrefix, clientv3.WithFirstCreate()...)
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("leader key: %v", err)
	}
	// Wait until the other candidate queues behind the writer, so that it
	// is next once the writer's lease ends.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r, err := cli.Get(ctx, election.DefaultPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && r.Count == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("second candidate not queued")
		}
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	var term *election.Term
	select {
	case term = <-won:
	case <-time.After(30 * time.Second):
		t.Fatal("the other candidate was not elected")
	}

	for deadline := time.Now().Add(10 * time.Second); srv.Role() != "standby"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("server did not step down")
		}
	}
	_, err = srv.Store().AppendServer(ctx, event.Event{Control: "server", Type: "server.test", Severity: event.Info})
	if !errors.Is(err, eventlog.ErrFenced) {
		t.Fatalf("commit after the step-down: %v", err)
	}
	noFollow := *a.c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	held := a.events(5)
	body, _ := json.Marshal(wire.Batch{Events: held})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r, err := noFollow.Post(srv.URL()+wire.PathEvents, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode == http.StatusTemporaryRedirect && r.Header.Get("Location") == "https://other.example:8443"+wire.PathEvents {
			break
		}
		if r.StatusCode == http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("batch to the deposed writer: %d (Location %q)", r.StatusCode, r.Header.Get("Location"))
		}
	}
	for deadline := time.Now().Add(10 * time.Second); conn() == first; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the agent's HTTP/2 connection was kept: no GOAWAY")
		}
	}
	var rv struct {
		Role   string            `json:"role"`
		Checks map[string]string `json:"checks"`
	}
	if st := adminGet(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/readyz", nil, &rv); st != 200 || rv.Role != "standby" {
		t.Fatalf("/readyz of the standby: %d %+v", st, rv)
	}
	if st, role := readyzWriter(srv.CAPEM(), srv.URL()); st != http.StatusServiceUnavailable || role != "standby" {
		t.Fatalf("/readyz?role=writer of the standby: %d %q", st, role)
	}

	// The other resigns: this server is elected again and acks.
	if err := term.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); srv.Role() != "writer"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not elected again")
		}
	}
	if n, err := a.send(held); err != nil || n != 15 {
		t.Fatalf("batch after re-election: acked %d, %v", n, err)
	}
}

// readyzWriter returns GET /readyz?role=writer's status and role.
func readyzWriter(caPEM []byte, base string) (int, string) {
	c := httpsClient(caPEM, nil)
	c.Timeout = 3 * time.Second
	resp, err := c.Get(base + "/readyz?role=writer")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var v struct {
		Role string `json:"role"`
	}
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v.Role
}

// A store claimed with an epoch this etcd cannot have given (a new etcd
// beside an existing store: revisions start again from 1) is taken over
// once by raising the epoch base, and the server writes as before.
func TestNewEtcdBesideClaimedStore(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir)
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-base")
	if _, err := a.send(a.events(10)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := eventlog.OpenSQLite(ctx, filepath.Join(dir, app.FileEvents), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	const old = 1_000_000 // as a writer of a long-lived etcd left it
	if err := st.ClaimEpoch(ctx, old); err != nil {
		t.Fatal(err)
	}
	st.Close()

	srv = start(t, dir)
	defer srv.Close()
	if srv.Role() != "writer" {
		t.Fatalf("role %q", srv.Role())
	}
	a.base = srv.URL()
	if n, err := a.send(a.events(10)); err != nil || n != 20 {
		t.Fatalf("batch after the base was raised: %d, %v", n, err)
	}
	var base int64
	if _, err := srv.State().GetJSON(ctx, "writer-epoch-base", &base); err != nil || base != old {
		t.Fatalf("epoch base %d, %v; want %d", base, err, old)
	}
}
