package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/wire"
)

// goneState answers like etcd does for a request whose client went away:
// with the context's error.
type goneState struct{ *memState }

func (g goneState) Assignment(ctx context.Context, agentID string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("state: assignment: %w", err)
	}
	return g.memState.Assignment(ctx, agentID)
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestClientGoneIsNotAnError: a long-poll or a batch whose client went away
// (the agent stopped, its timeout fired, 10,000 long-polls woke at once and
// some clients left) is not a server error: nothing logged at error level,
// no 500 counted.
func TestClientGoneIsNotAnError(t *testing.T) {
	logs := &lockedBuf{}
	store := newMemStore()
	s, err := New(Config{Store: store, State: goneState{newMemState()}, CA: newTestCA("test CA"),
		AgentID: cnAgentID, NewAgentID: newTestAgentID, Log: zerolog.New(logs).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), agentKey, "ag-0000000000000001"))
	cancel() // the client is gone

	w := httptest.NewRecorder()
	s.handlePolicy(w, httptest.NewRequest("GET", "/v1/policy?version=x&wait=55s", nil).WithContext(ctx))
	if w.Code == http.StatusInternalServerError {
		t.Errorf("long-poll of a gone client answered 500")
	}

	w = httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/events", strings.NewReader(`{"events":[]}`)).WithContext(ctx)
	req.Header.Set("Content-Type", "application/json")
	s.handleIngest(w, req)

	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"level":"error"`) || strings.Contains(line, `"level":"warn"`) {
			t.Errorf("logged for a gone client: %s", line)
		}
	}
}

// countingState counts and times the reads a policy compilation makes.
type countingState struct {
	*memState
	reads, inFlight, maxInFlight atomic.Int64
}

func (c *countingState) Assignment(ctx context.Context, agentID string) (string, error) {
	c.reads.Add(1)
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for {
		m := c.maxInFlight.Load()
		if n <= m || c.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(time.Millisecond) // an etcd round trip
	return c.memState.Assignment(ctx, agentID)
}

// TestLongPollsCheapAtScale: many agents' long-polls compile their policy
// once per change, with a bounded number of compilations (etcd reads) at
// once; a long-poll that comes back after 304 costs no read; a change wakes
// every one of them with the new policy.
func TestLongPollsCheapAtScale(t *testing.T) {
	const agents = 300
	st := &countingState{memState: newMemState()}
	s, err := New(Config{Store: newMemStore(), State: st, CA: newTestCA("test CA"),
		AgentID: cnAgentID, NewAgentID: newTestAgentID, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	poll := func(id, version, wait string) (int, wire.PolicyResponse) {
		ctx := context.WithValue(context.Background(), agentKey, id)
		w := httptest.NewRecorder()
		s.handlePolicy(w, httptest.NewRequest("GET", "/v1/policy?version="+version+"&wait="+wait, nil).WithContext(ctx))
		var pr wire.PolicyResponse
		if w.Code == http.StatusOK {
			if err := json.Unmarshal(w.Body.Bytes(), &pr); err != nil {
				t.Fatal(err)
			}
		}
		return w.Code, pr
	}
	_, first := poll("ag-0", "", "")
	// Round 1: every agent's first long-poll compiles once; round 2 (after
	// the 304) compiles nothing.
	for round := range 2 {
		before := st.reads.Load()
		var wg sync.WaitGroup
		for i := range agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, _ := poll(fmt.Sprintf("ag-%d", i), first.Version, "20ms"); code != http.StatusNotModified {
					t.Errorf("round %d: %d", round, code)
				}
			}()
		}
		wg.Wait()
		reads := st.reads.Load() - before
		if round == 0 && reads > agents {
			t.Errorf("first long-polls: %d reads for %d agents", reads, agents)
		}
		if round == 1 && reads != 0 {
			t.Errorf("long-polls coming back after 304: %d reads, want 0", reads)
		}
	}
	if m := st.maxInFlight.Load(); m > int64(cap(s.stateSlots)) {
		t.Errorf("%d compilations at once, bound %d", m, cap(s.stateSlots))
	}
	// A change wakes every held long-poll with the new policy.
	got := make(chan string, agents)
	for i := range agents {
		go func() {
			_, pr := poll(fmt.Sprintf("ag-%d", i), first.Version, "30s")
			got <- pr.Version
		}()
	}
	time.Sleep(200 * time.Millisecond) // let them hold
	doc := []byte("apiVersion: mamori/v1\nkind: Policy\nname: default\ncontrols:\n  screenlock: {mode: enforce, max_idle: 5m}\n")
	if err := st.PutPolicy(context.Background(), "default", doc); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for range agents {
		select {
		case v := <-got:
			if v == "" || v == first.Version {
				t.Fatalf("woken with version %q (was %q)", v, first.Version)
			}
		case <-deadline:
			t.Fatal("not every long-poll was woken within 10 s")
		}
	}
}
