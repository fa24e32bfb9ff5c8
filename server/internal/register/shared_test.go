package register

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/policy"
)

// countingKV counts the etcd requests (gets and transactions) made
// through a client.
type countingKV struct {
	clientv3.KV
	n atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.n.Add(1)
	return c.KV.Get(ctx, key, opts...)
}

func (c *countingKV) Txn(ctx context.Context) clientv3.Txn {
	c.n.Add(1)
	return c.KV.Txn(ctx)
}

func countReads(st *state.State) *countingKV {
	c := &countingKV{KV: st.Client().KV}
	st.Client().KV = c
	return c
}

// TestSharedCompilesOncePerChange: after a change, compiling every
// agent's policy costs the same few etcd reads for 40 agents as for 400,
// and each agent gets what Effective (reading everything fresh) compiles.
func TestSharedCompilesOncePerChange(t *testing.T) {
	ctx := context.Background()
	s, st := newService(t, nil)
	if err := s.EnsureBuiltinPacks(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "admin", samplePI("PI-0001", "PC-3", `D:\顧客`)); err != nil {
		t.Fatal(err)
	}
	if err := s.AssignDepartment(ctx, "総務部", "strict"); err != nil {
		t.Fatal(err)
	}
	reads := countReads(st)
	var afterChange []int64
	for _, agents := range []int{40, 400} {
		ids := make([]string, agents)
		for i := range agents {
			ids[i] = fmt.Sprintf("ag-%d-%d", agents, i)
			a := state.Agent{ID: ids[i], Hostname: fmt.Sprintf("pc-%d", i)}
			if i%5 == 0 {
				a.Department = "総務部"
			}
			if err := st.PutAgent(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Assign(ctx, ids[1], "pmark-baseline"); err != nil {
			t.Fatal(err)
		}
		s.Invalidate() // what the policy watch does
		for _, id := range ids {
			if _, err := s.Shared(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		// A change: every agent's policy is compiled again.
		doc := fmt.Appendf(nil, "apiVersion: mamori/v1\nkind: Policy\nname: default\ndescription: v%d\ncontrols:\n  screenlock: {mode: enforce, max_idle: 5m}\n", agents)
		if err := st.PutPolicy(ctx, "default", doc); err != nil {
			t.Fatal(err)
		}
		s.Invalidate()
		before := reads.n.Load()
		got := map[string]SharedPolicy{}
		for _, id := range ids {
			sp, err := s.Shared(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			got[id] = sp
		}
		afterChange = append(afterChange, reads.n.Load()-before)
		for _, id := range ids {
			want, err := s.Effective(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if g := got[id]; g.Version != want.Policy.Version() || g.Source != want.Source {
				t.Fatalf("%s: shared %s from %s, Effective %s from %s", id, g.Version, g.Source, want.Policy.Version(), want.Source)
			}
		}
		if got[ids[0]].Source != "strict" || got[ids[1]].Source != "pmark-baseline" || got[ids[2]].Source != "default" ||
			got[ids[3]].Version == got[ids[2]].Version {
			t.Fatalf("packs: %+v %+v %+v; host with a register folder same as one without: %v",
				got[ids[0]].Source, got[ids[1]].Source, got[ids[2]].Source, got[ids[3]].Version == got[ids[2]].Version)
		}
	}
	for i, n := range afterChange {
		if n > 2 {
			t.Errorf("run %d: %d etcd reads to compile every agent's policy after a change, want at most 2", i, n)
		}
	}
}

// TestSharedFollowsDepartmentChanges: a department set through this
// service, or through another server (seen by WatchAgents), changes the
// agent's shared policy and wakes the long-polls.
func TestSharedFollowsDepartmentChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, st := newService(t, nil)
	if err := s.EnsureBuiltinPacks(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.AssignDepartment(ctx, "総務部", "strict"); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAgent(ctx, state.Agent{ID: "ag-1", Hostname: "pc-1"}); err != nil {
		t.Fatal(err)
	}
	woken := make(chan struct{}, 10)
	go s.WatchAgents(ctx, func() { woken <- struct{}{} })
	if sp, err := s.Shared(ctx, "ag-1"); err != nil || sp.Source != "pmark-baseline" {
		t.Fatalf("%+v %v", sp, err)
	}
	if err := s.SetAgentDepartment(ctx, "ag-1", "総務部"); err != nil {
		t.Fatal(err)
	}
	if sp, err := s.Shared(ctx, "ag-1"); err != nil || sp.Source != "strict" {
		t.Fatalf("after SetAgentDepartment: %+v %v", sp, err)
	}
	// Another server (a second Service over the same etcd) moves it back.
	other, err := New(Config{State: st})
	if err != nil {
		t.Fatal(err)
	}
	drain(woken)
	// Set again until woken: the watch may not have been established yet
	// when the first change was made.
	for deadline := time.Now().Add(time.Minute); ; {
		if err := other.SetAgentDepartment(ctx, "ag-1", ""); err != nil {
			t.Fatal(err)
		}
		select {
		case <-woken:
		case <-time.After(time.Second):
			if time.Now().After(deadline) {
				t.Fatal("a department set by another server woke nothing")
			}
			continue
		}
		break
	}
	if sp, err := s.Shared(ctx, "ag-1"); err != nil || sp.Source != "pmark-baseline" {
		t.Fatalf("after another server's change: %+v %v", sp, err)
	}
}

func drain(c chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// TestInventoryReadsDoNotGrowWithAgents: the compliance tracker's
// inventory, with each host judged by its Shared policy (as the server
// wires it), costs the listing of the agents and a few reads per change,
// for 40 agents as for 400. With Effective it read 3-4 keys per agent:
// with 10,000 PCs, 40,000 etcd reads per inventory and 14% of the server's
// CPU (a profile under mamori-loadgen).
func TestInventoryReadsDoNotGrowWithAgents(t *testing.T) {
	ctx := context.Background()
	s, st := newService(t, nil)
	if err := s.EnsureBuiltinPacks(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "admin", samplePI("PI-0001", "pc-3", `D:\顧客`)); err != nil {
		t.Fatal(err)
	}
	inv := compliance.StateInventory{State: st, Effective: func(ctx context.Context, id string) (*policy.Policy, error) {
		sp, err := s.Shared(ctx, id)
		return sp.Policy, err
	}}
	reads := countReads(st)
	var perInventory []int64
	total := 0
	for _, agents := range []int{40, 400} {
		total += agents
		for i := range agents {
			if err := st.PutAgent(ctx, state.Agent{ID: fmt.Sprintf("ag-%d-%d", agents, i), Hostname: fmt.Sprintf("pc-%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := inv.Hosts(ctx); err != nil { // reads each new agent's record once
			t.Fatal(err)
		}
		s.Invalidate() // a change
		before := reads.n.Load()
		hosts, err := inv.Hosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		perInventory = append(perInventory, reads.n.Load()-before)
		if len(hosts) != total {
			t.Fatalf("%d hosts, want %d", len(hosts), total)
		}
		for _, h := range hosts {
			if h.Policy == nil {
				t.Fatalf("%s has no policy", h.Agent)
			}
			if want := h.Hostname == "pc-3"; (len(h.Policy.Controls.FileAccess.Folders) == 1) != want {
				t.Fatalf("%s (%s): register folders %v", h.Agent, h.Hostname, h.Policy.Controls.FileAccess.Folders)
			}
		}
	}
	for i, n := range perInventory {
		if n > 3 {
			t.Errorf("inventory %d: %d etcd reads after a change, want at most 3 (the agents' listing and the view)", i, n)
		}
	}
}
