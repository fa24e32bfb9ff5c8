package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/wire"
)

// etcdReads counts the requests (gets and transactions) sent to etcd.
type etcdReads struct {
	clientv3.KV
	n atomic.Int64
}

func (c *etcdReads) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.n.Add(1)
	return c.KV.Get(ctx, key, opts...)
}

func (c *etcdReads) Txn(ctx context.Context) clientv3.Txn {
	c.n.Add(1)
	return c.KV.Txn(ctx)
}

// watchedState is the fake control plane, except that the policy watch
// is real etcd's, as the registers are.
type watchedState struct {
	*memState
	st *state.State
}

func (w watchedState) WatchPolicies(ctx context.Context) <-chan struct{} {
	return w.st.WatchPolicies(ctx)
}

// TestPolicyWakeReadsDoNotGrowWithAgents: N agents hold their long-poll
// on the register-compiled policy (real embedded etcd), a policy changes,
// every one of them gets the new policy, and the etcd reads that cost do
// not grow with N (before: three to four reads per agent).
func TestPolicyWakeReadsDoNotGrowWithAgents(t *testing.T) {
	ctx := context.Background()
	st, err := state.Open(ctx, state.Config{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reads := &etcdReads{KV: st.Client().KV}
	st.Client().KV = reads
	rs, err := register.New(register.Config{State: st})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Store: newMemStore(), State: watchedState{newMemState(), st}, CA: newTestCA("test CA"),
		AgentID: cnAgentID, NewAgentID: newTestAgentID, Log: zerolog.Nop(), Registers: rs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	poll := func(id, version, wait string) (int, wire.PolicyResponse) {
		w := httptest.NewRecorder()
		rctx := context.WithValue(ctx, agentKey, id)
		s.handlePolicy(w, httptest.NewRequest("GET", "/v1/policy?version="+version+"&wait="+wait, nil).WithContext(rctx))
		var pr wire.PolicyResponse
		if w.Code == http.StatusOK {
			if err := json.Unmarshal(w.Body.Bytes(), &pr); err != nil {
				t.Error(err)
			}
		}
		return w.Code, pr
	}
	for _, agents := range []int{30, 300} {
		for i := range agents {
			a := state.Agent{ID: fmt.Sprintf("ag-%d-%d", agents, i), Hostname: fmt.Sprintf("pc-%d", i)}
			if err := st.PutAgent(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		_, cur := poll(fmt.Sprintf("ag-%d-0", agents), "", "")
		if cur.Version == "" {
			t.Fatal("no policy")
		}
		got := make(chan string, agents)
		for i := range agents {
			go func() {
				code, pr := poll(fmt.Sprintf("ag-%d-%d", agents, i), cur.Version, "2m")
				got <- fmt.Sprintf("%d %s", code, pr.Version)
			}()
		}
		// Every long-poll has compiled its policy and holds.
		prefix := fmt.Sprintf("ag-%d-", agents)
		for deadline := time.Now().Add(time.Minute); ; {
			s.policies.mu.Lock()
			n := 0
			for id, a := range s.policies.perAgent {
				if a.gen == s.policies.gen && strings.HasPrefix(id, prefix) {
					n++
				}
			}
			s.policies.mu.Unlock()
			if n == agents {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d long-polls holding", n, agents)
			}
			time.Sleep(10 * time.Millisecond)
		}
		before := reads.n.Load()
		doc := fmt.Appendf(nil, "apiVersion: mamori/v1\nkind: Policy\nname: default\ndescription: for %d\ncontrols:\n  screenlock: {mode: enforce, max_idle: 5m}\n", agents)
		if err := st.PutPolicy(ctx, "default", doc); err != nil {
			t.Fatal(err)
		}
		var next string
		for range agents {
			select {
			case g := <-got:
				if next == "" {
					next = g
				}
				if g != next || g == "200 "+cur.Version || g[:3] != "200" {
					t.Fatalf("woken with %q, others with %q (was %q)", g, next, cur.Version)
				}
			case <-time.After(time.Minute):
				t.Fatal("not every long-poll was woken within a minute")
			}
		}
		// The write itself is one request; compiling for every agent
		// reads the policies, assignments and registers once (twice if the
		// watch reports the change while the first read is under way).
		if n := reads.n.Load() - before; n > 4 {
			t.Errorf("%d agents woken: %d etcd requests, want at most 4 whatever the number of agents", agents, n)
		}
	}
}
