package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/h2loop"
	"github.com/mamori/mamori/shared/wire"
)

// TestAgentsLongPollsHoldNoGoroutine: enrolled agents ship and hold their
// policy long-polls on HTTP/2 as the agent does, and the server serves them
// without a goroutine per connection or per held long-poll (net/http keeps
// three per agent: 30,000 for 10,000 agents, docs/ingest.md). A policy
// change still reaches every one.
func TestAgentsLongPollsHoldNoGoroutine(t *testing.T) {
	if !h2loop.Supported() {
		t.Skip("the agents' connection loop is Linux only; elsewhere net/http serves them")
	}
	const agents = 40
	srv, err := app.Start(context.Background(), app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1"}, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	answers := make(chan string, agents)
	for i := range agents {
		a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), fmt.Sprintf("pc-loop-%d", i))
		a.c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
		if _, err := a.send(a.events(5)); err != nil {
			t.Fatal(err)
		}
		var pr wire.PolicyResponse
		resp, err := a.c.Get(srv.URL() + wire.PathPolicy + "?version=x")
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		if resp.Proto != "HTTP/2.0" {
			t.Fatalf("agent on %s", resp.Proto)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL()+wire.PathPolicy+"?wait=5m&version="+pr.Version, nil)
			resp, err := a.c.Do(req)
			if err != nil {
				answers <- err.Error()
				return
			}
			var got wire.PolicyResponse
			json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			answers <- got.Version
		}()
	}
	// Every long-poll is held once the server's handlers have all returned.
	deadline := time.Now().Add(20 * time.Second)
	for {
		serving, handlers := serverGoroutines()
		if handlers == 0 && serving == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with %d agents holding long-polls: %d net/http connection goroutines, %d policy handlers running", agents, serving, handlers)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The collector's tuner reads the handshakes (a storm keeps the heap tight).
	if begun, underWay := srv.Handshakes(); begun < agents || underWay != 0 {
		t.Fatalf("Handshakes() = %d begun, %d under way; want at least %d begun, none under way", begun, underWay, agents)
	}

	if st, body := adminDo(t, srv, "PUT", "/api/v1/policies/default",
		"apiVersion: mamori/v1\nkind: Policy\nname: default\ndescription: changed\n"); st != http.StatusOK {
		t.Fatalf("policy change: %d %s", st, body)
	}
	wg.Wait()
	close(answers)
	first := ""
	for v := range answers {
		if first == "" {
			first = v
		}
		if v == "" || v != first {
			t.Fatalf("long-poll answered %q after the change (another answered %q)", v, first)
		}
	}
}

// serverGoroutines counts net/http's HTTP/2 connection goroutines and the
// policy handlers running.
func serverGoroutines() (serving, handlers int) {
	buf := make([]byte, 32<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("http2serverConn).serve")) || bytes.Contains(g, []byte("http2serverConn).readFrames")) {
			serving++
		}
		if bytes.Contains(g, []byte("api.(*Server).handlePolicy")) {
			handlers++
		}
	}
	return serving, handlers
}
