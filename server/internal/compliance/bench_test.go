package compliance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// fleet fills a store with hosts agents, each with one status per control
// and other events besides, and returns the matching inventory.
func fleet(b *testing.B, hosts, otherPerHost int) (*Tracker, func()) {
	b.Helper()
	store := openStore(b, b.TempDir())
	now := time.Now()
	inv := make(hostList, hosts)
	p := pol(0, allAudit())
	for i := range hosts {
		id := fmt.Sprintf("agent-%04d", i)
		inv[i] = HostInfo{Agent: id, Hostname: fmt.Sprintf("pc-%04d", i), Department: fmt.Sprintf("dept-%d", i%8), Enrolled: now, Policy: p}
		a := &agentStream{id: id}
		var evs []event.Event
		for j, c := range Controls {
			st := Pass
			if (i+j)%7 == 0 {
				st = Fail
			}
			evs = append(evs, a.status(b, c, st, "reason."+string(st), now))
		}
		for range otherPerHost {
			a.seq++
			e := event.Event{Agent: id, Seq: a.seq, Time: now, Control: "fileaccess", Type: "file.modified",
				Severity: event.Info, Object: `D:\顧客\見積.xlsx`, Attrs: event.Attrs{"op": "write"}}
			if err := e.Seal(a.prev); err != nil {
				b.Fatal(err)
			}
			a.prev = e.Hash
			evs = append(evs, e)
		}
		if _, err := store.Append(context.Background(), id, evs); err != nil {
			b.Fatal(err)
		}
	}
	tr, err := New(Config{Events: store, Inventory: inv, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	return tr, func() { store.Close() }
}

// BenchmarkReport1000Hosts is one GET /api/v1/compliance for 1,000 hosts
// once the tracker is current: a catch-up finding nothing new (six index
// seeks), the heads, and the derivation. No event is scanned.
func BenchmarkReport1000Hosts(b *testing.B) {
	tr, done := fleet(b, 1000, 20)
	defer done()
	ctx := context.Background()
	if err := tr.CatchUp(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep, err := tr.Report(ctx, Filter{})
		if err != nil || len(rep.Hosts) != 1000 {
			b.Fatalf("%v, %d hosts", err, len(rep.Hosts))
		}
	}
}

// BenchmarkCatchUpFromZero is the start-up replay: a new tracker reading
// every status event of 1,000 hosts (5,000) among 25,000 events. The cost
// follows the status events, not all events.
func BenchmarkCatchUpFromZero(b *testing.B) {
	tr, done := fleet(b, 1000, 20)
	defer done()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		fresh, err := New(tr.cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := fresh.CatchUp(ctx); err != nil {
			b.Fatal(err)
		}
		if n := len(fresh.latest); n != 1000 {
			b.Fatalf("%d agents", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/5000, "ns/status-event")
}

// BenchmarkStateInventory1000 reads 1,000 agents' records and effective
// policies from a real embedded etcd (what the tracker caches for 15 s).
func BenchmarkStateInventory1000(b *testing.B) {
	ctx := context.Background()
	st, err := state.Open(ctx, state.Config{DataDir: b.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	doc := []byte("apiVersion: mamori/v1\nkind: Policy\nname: strict\ncontrols:\n  screenlock: {mode: enforce}\n  agent: {silent_after: 10m}\n")
	if err := st.PutPolicy(ctx, "strict", doc); err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		id := fmt.Sprintf("agent-%04d", i)
		if err := st.PutAgent(ctx, state.Agent{ID: id, Hostname: "pc", Enrolled: time.Now()}); err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			if err := st.Assign(ctx, id, "strict"); err != nil {
				b.Fatal(err)
			}
		}
	}
	inv := StateInventory{State: st}
	b.ResetTimer()
	for b.Loop() {
		hs, err := inv.Hosts(ctx)
		if err != nil || len(hs) != 1000 || hs[0].Policy == nil || hs[0].Policy.Controls.Agent.SilentAfter.D() != 10*time.Minute || hs[1].Policy != nil {
			b.Fatalf("%v %d", err, len(hs))
		}
	}
}
