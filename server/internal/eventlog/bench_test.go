package eventlog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

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
		b.Run(fmt.Sprintf("writers=%d/batch=%d", c[0], c[1]), func(b *testing.B) { benchAppend(b, c[0], c[1], nil) })
	}
}

// BenchmarkIndexCost measures Append (16 writers x 500 events) with all
// indexes, without each query index in turn, and without any of them.
func BenchmarkIndexCost(b *testing.B) {
	b.Run("all", func(b *testing.B) { benchAppend(b, 16, 500, nil) })
	for _, ix := range eventlog.QueryIndexes {
		b.Run("without="+ix, func(b *testing.B) { benchAppend(b, 16, 500, []string{ix}) })
	}
	b.Run("without=all-query-indexes", func(b *testing.B) { benchAppend(b, 16, 500, eventlog.QueryIndexes) })
}

func benchAppend(b *testing.B, writers, batch int, drop []string) {
	ctx := context.Background()
	s := openTemp(b)
	defer s.Close()
	if len(drop) > 0 {
		if err := s.DropIndexes(ctx, drop...); err != nil {
			b.Fatal(err)
		}
	}
	benchIngest(b, s, writers, batch)
}

// benchIngest appends b.N events to s from writers agents in batches and
// reports events/s, this process's CPU per event and disk bytes per event.
func benchIngest(b *testing.B, s eventlog.Store, writers, batch int) {
	ctx := context.Background()
	per := (b.N + writers - 1) / writers
	chains := make([][]event.Event, writers)
	for w := range chains {
		chains[w] = storetest.Chain(fmt.Sprintf("pc-%05d", w), 1, per, "")
	}
	b.ReportAllocs()
	cpu0, cpuOK := processCPU()
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range writers {
		id, evs := fmt.Sprintf("pc-%05d", w), chains[w]
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
