package eventlog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
	"github.com/mamori/mamori/shared/event"
)

// BenchmarkAppend measures stored events per second with concurrent agents
// (one writer goroutine each, as HTTP handlers would be) sending batches. One
// op is one event; validation in the callers is included. Run with a fixed
// count, e.g. -benchtime=200000x, since the chains are built up front.
func BenchmarkAppend(b *testing.B) {
	for _, c := range [][2]int{{16, 100}, {16, 500}, {64, 100}, {64, 500}} {
		b.Run(fmt.Sprintf("writers=%d/batch=%d", c[0], c[1]), func(b *testing.B) { benchAppend(b, c[0], c[1]) })
	}
}

// BenchmarkAppendRealistic is BenchmarkAppend with an office's events
// (random Japanese paths, a user per PC, 60 registers, attrs), whose random
// index keys cost more than the constant fields of storetest.Chain.
func BenchmarkAppendRealistic(b *testing.B) {
	s := openTemp(b)
	defer s.Close()
	const writers, batch = 32, 500
	per := (b.N + writers - 1) / writers
	chains := make([][]event.Event, writers)
	for w := range chains {
		chains[w] = eventlog.OfficeChain(b, fmt.Sprintf("pc-%05d", w), per, uint64(w))
	}
	t0 := time.Now()
	cpu0, cpuOK := processCPU()
	benchChains(b, s, chains, batch)
	// The indexer's catch-up is part of the cost: report the rate to the
	// point where every event is in the query indexes too.
	n, _ := s.TreeSize(context.Background())
	for s.Indexed() < n {
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportMetric(float64(writers*per)/time.Since(t0).Seconds(), "indexed-events/s")
	if cpu1, ok := processCPU(); ok && cpuOK {
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(writers*per), "cpu-ns/indexed-event")
	}
}

func benchAppend(b *testing.B, writers, batch int) {
	s := openTemp(b)
	defer s.Close()
	benchIngest(b, s, writers, batch)
}

// benchIngest appends b.N events to s from writers agents in batches and
// reports events/s, this process's CPU per event and disk bytes per event.
func benchIngest(b *testing.B, s eventlog.Store, writers, batch int) {
	per := (b.N + writers - 1) / writers
	chains := make([][]event.Event, writers)
	for w := range chains {
		chains[w] = storetest.Chain(fmt.Sprintf("pc-%05d", w), 1, per, "")
	}
	benchChains(b, s, chains, batch)
}

// benchChains appends each chain from its own goroutine in batches.
func benchChains(b *testing.B, s eventlog.Store, chains [][]event.Event, batch int) {
	ctx := context.Background()
	writers, per := len(chains), len(chains[0])
	b.ReportAllocs()
	cpu0, cpuOK := processCPU()
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range writers {
		id, evs := chains[w][0].Agent, chains[w]
		wg.Go(func() {
			for i := 0; i < len(evs); i += batch {
				r, err := s.Append(ctx, id, evs[i:min(i+batch, len(evs))])
				if err != nil || r.Stored != min(batch, len(evs)-i) {
					b.Errorf("%s: %+v, %v", id, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if cpu1, ok := processCPU(); ok && cpuOK {
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(writers*per), "cpu-ns/event")
	}
	b.ReportMetric(float64(writers*per)/b.Elapsed().Seconds(), "events/s")
	if st, err := s.Stats(ctx); err == nil && st.Events > 0 {
		b.ReportMetric(float64(st.BytesOnDisk)/float64(st.Events), "disk-B/event")
	}
}
