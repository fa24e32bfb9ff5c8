package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

func TestAdmissionRefusesWhatCannotBeAckedInTime(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAdmission(time.Second, func() time.Time { return now })
	// Nothing measured yet: admitted.
	tk, _ := a.admit()
	if tk == nil {
		t.Fatal("refused with nothing measured")
	}
	tk.stored(10000)
	now = now.Add(time.Second)
	tk.release(10000) // 10,000 events/s while busy
	// Idle time is not slowness: a light load measures the same rate.
	now = now.Add(3 * time.Second)
	var held []*ticket
	for i := range 100 {
		tk, retry := a.admit()
		if tk == nil {
			if a.queued < 9000 || a.queued > 10000 {
				t.Fatalf("refused at %d queued events (1 s at 10,000/s is 10,000)", a.queued)
			}
			if retry < time.Second {
				t.Fatalf("Retry-After %s", retry)
			}
			break
		}
		if i == 99 {
			t.Fatal("never refused")
		}
		tk.stored(500)
		held = append(held, tk)
	}
	// The queue drains: admitted again.
	for _, tk := range held[:4] {
		now = now.Add(50 * time.Millisecond)
		tk.release(500)
		tk.release(500) // a second release does nothing
	}
	if tk, _ := a.admit(); tk == nil {
		t.Fatalf("refused after the queue drained to %d events", a.queued)
	}
	if retryAfterHeader(1500*time.Millisecond) != "2" {
		t.Fatal("Retry-After not rounded up")
	}
}

// slowStore acks at a fixed rate, one batch at a time, like a saturated
// writer.
type slowStore struct {
	*memStore
	mu   sync.Mutex
	rate int // events/s
}

func (s *slowStore) Append(ctx context.Context, agent string, evs []event.Event) (AppendResult, error) {
	s.mu.Lock()
	time.Sleep(time.Duration(len(evs)) * time.Second / time.Duration(s.rate))
	s.mu.Unlock()
	return s.memStore.Append(ctx, agent, evs)
}

// TestIngestAdmission: with more batches offered than the store acks
// within MaxAckWait, the excess is answered 503 with Retry-After at once
// and what is admitted is acked in time (without admission every batch
// queues and the last wait for all before them).
func TestIngestAdmission(t *testing.T) {
	const maxWait, batch = 500 * time.Millisecond, 100
	e := &env{t: t, store: newMemStore(), state: newMemState(), ca: newTestCA("test CA")}
	var err error
	e.api, err = New(Config{Store: &slowStore{memStore: e.store, rate: 2000}, State: e.state, CA: e.ca,
		AgentID: cnAgentID, NewAgentID: newTestAgentID, MaxAckWait: maxWait,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(e.api.Handler())
	e.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: e.ca.pool()}
	e.srv.StartTLS()
	defer func() { e.srv.Close(); e.api.Close() }()
	e.roots = x509.NewCertPool()
	e.roots.AddCert(e.srv.Certificate())
	e.enroll, _, _ = e.state.CreateEnrollToken(context.Background(), time.Hour, 100, "admin")

	send := func(a *testAgent, evs []event.Event) (int, string, time.Duration) {
		t0 := time.Now()
		st, _, hdr := postBatch(t, e, a, evs)
		return st, hdr.Get("Retry-After"), time.Since(t0)
	}
	// Warm up: the store's rate is measured (1.25 s busy).
	warm := e.enrollAgent("pc-warm")
	for range 25 {
		if st, _, _ := send(warm, warm.events(batch)); st != http.StatusOK {
			t.Fatalf("warm-up batch: %d", st)
		}
	}
	// 40 agents at once, 100 events each: 2 s of the store's work, 0.5 s
	// admitted. Their connections are up first (one event each), so what
	// is timed is the queue, not TLS handshakes.
	agents := make([]*testAgent, 40)
	for i := range agents {
		agents[i] = e.enrollAgent("pc-" + strconv.Itoa(i))
		if st, _, _ := send(agents[i], agents[i].events(1)); st != http.StatusOK {
			t.Fatalf("first event: %d", st)
		}
	}
	type result struct {
		st    int
		retry string
		took  time.Duration
	}
	res := make([]result, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		evs := a.events(batch)
		wg.Add(1)
		go func() { defer wg.Done(); st, ra, took := send(a, evs); res[i] = result{st, ra, took} }()
	}
	wg.Wait()
	ok, busy := 0, 0
	for _, r := range res {
		switch r.st {
		case http.StatusOK:
			ok++
			if r.took > 10*maxWait { // wall clock on a shared CI machine: only a sanity bound
				t.Errorf("an admitted batch waited %s for its ack (limit %s)", r.took, maxWait)
			}
		case http.StatusServiceUnavailable:
			busy++
			if n, err := strconv.Atoi(r.retry); err != nil || n < 1 {
				t.Errorf("503 with Retry-After %q", r.retry)
			}
		default:
			t.Errorf("status %d", r.st)
		}
	}
	if busy == 0 || ok == 0 {
		t.Fatalf("%d acked, %d answered 503: want both", ok, busy)
	}
	// What was admitted fits in MaxAckWait at the store's rate (2,000/s):
	// 1,000 events, allowing twice that for the batches decoded meanwhile.
	if ok*batch > 2*int(maxWait.Seconds()*2000) {
		t.Errorf("%d batches of %d admitted: more than MaxAckWait's worth", ok, batch)
	}
	t.Logf("%d acked, %d answered 503 at once", ok, busy)
}

// postBatch sends evs as the agent's shipper does (JSON) and returns the
// status, body and headers.
func postBatch(t *testing.T, e *env, a *testAgent, evs []event.Event) (int, []byte, http.Header) {
	t.Helper()
	body, _ := json.Marshal(wire.Batch{Events: evs})
	resp, err := a.c.Post(e.srv.URL+wire.PathEvents, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// gateStore holds every Append until release is closed and counts the
// Appends waiting.
type gateStore struct {
	*memStore
	release chan struct{}
	waiting chan struct{} // one send per Append that reached the store
}

func (g *gateStore) Append(ctx context.Context, agent string, evs []event.Event) (AppendResult, error) {
	g.waiting <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	}
	return g.memStore.Append(ctx, agent, evs)
}

// gatedEnv is an API server with one decoding slot (so 4 store slots) on a
// store that holds every Append until unblock; the test's cleanup
// unblocks it before closing the server, also when the test fails.
func gatedEnv(t *testing.T) (*env, *gateStore, func()) {
	e := &env{t: t, store: newMemStore(), state: newMemState(), ca: newTestCA("test CA")}
	g := &gateStore{memStore: e.store, release: make(chan struct{}), waiting: make(chan struct{}, 64)}
	var err error
	e.api, err = New(Config{Store: g, State: e.state, CA: e.ca, AgentID: cnAgentID, NewAgentID: newTestAgentID,
		MaxConcurrentBatches: 1, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(e.api.Handler())
	e.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: e.ca.pool()}
	e.srv.StartTLS()
	t.Cleanup(func() { e.srv.Close(); e.api.Close() })
	unblock := sync.OnceFunc(func() { close(g.release) })
	t.Cleanup(unblock) // runs first: the server's Close waits for the held batches
	e.roots = x509.NewCertPool()
	e.roots.AddCert(e.srv.Certificate())
	e.enroll, _, _ = e.state.CreateEnrollToken(context.Background(), time.Hour, 100, "admin")
	return e, g, unblock
}

// TestDecodingOverlapsCommit: a batch waiting for its commit does not hold
// a decoding slot, so with one slot the next agent's batch is decoded and
// reaches the store meanwhile (the writer gets its next group while it
// commits). It used to hold the slot until acked: with 8 slots, the
// server decoded nothing while the 8 batches in the store waited for their
// fsync, and used under one core of two at saturation.
func TestDecodingOverlapsCommit(t *testing.T) {
	e, g, unblock := gatedEnv(t)
	agents := []*testAgent{e.enrollAgent("pc-1"), e.enrollAgent("pc-2"), e.enrollAgent("pc-3")}
	status := make(chan int, len(agents))
	for _, a := range agents {
		evs := a.events(10)
		go func() { st, _, _ := postBatch(t, e, a, evs); status <- st }()
	}
	deadline := time.After(30 * time.Second)
	for i := range agents {
		select {
		case <-g.waiting:
		case <-deadline:
			t.Fatalf("%d of %d batches reached the store while the first waited for its commit", i, len(agents))
		}
	}
	unblock()
	for range agents {
		if st := <-status; st != http.StatusOK {
			t.Fatalf("status %d", st)
		}
	}
}

// TestDecodedBatchesBoundedByStoreSlots: while the store is slow, batches
// waiting for it wait gzip'd, not decoded. Every admitted batch used to be
// decoded at once and wait decoded for a store slot: with 2,000 agents at
// saturation, 300 MB of decoded events (a heap profile of mamori-loadgen's
// run), growing with the store's rate, not with any slot.
func TestDecodedBatchesBoundedByStoreSlots(t *testing.T) {
	var decoded atomic.Int64
	testHookDecoded = func() { decoded.Add(1) }
	defer func() { testHookDecoded = nil }()
	e, g, unblock := gatedEnv(t)
	const n, slots = 12, 4 // store slots: 4 x MaxConcurrentBatches
	status := make(chan int, n)
	for i := range n {
		a := e.enrollAgent(fmt.Sprintf("pc-%d", i))
		evs := a.events(10)
		go func() { st, _, _ := postBatch(t, e, a, evs); status <- st }()
	}
	for i := range slots {
		select {
		case <-g.waiting:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d batches reached the store", i)
		}
	}
	// The others have arrived and wait; none of them may be decoded.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if d := decoded.Load(); d > slots {
			t.Fatalf("%d batches decoded while %d store slots were taken", d, slots)
		}
	}
	unblock()
	for range n {
		if st := <-status; st != http.StatusOK {
			t.Fatalf("status %d", st)
		}
	}
	if d := decoded.Load(); d != n {
		t.Fatalf("%d of %d batches decoded", d, n)
	}
}
