package eventlog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mamori/mamori/server/internal/eventlog/storetest"
	"github.com/mamori/mamori/shared/event"
)

// BenchmarkAppend measures stored events per second with concurrent agents
// (one writer goroutine each, as HTTP handlers would be) sending batches. One
// op is one event; validation in the callers is included. Run with a fixed
// count, e.g. -benchtime=200000x, since the chains are built up front.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		writers, batch int
		noIndexes      bool
	}{
		{16, 100, false}, {16, 500, false}, {64, 100, false}, {64, 500, false},
		{16, 500, true}, {64, 100, true},
	} {
		name := fmt.Sprintf("writers=%d/batch=%d", c.writers, c.batch)
		if c.noIndexes {
			name += "/no-query-indexes"
		}
		b.Run(name, func(b *testing.B) { benchAppend(b, c.writers, c.batch, c.noIndexes) })
	}
}

func benchAppend(b *testing.B, writers, batch int, noIndexes bool) {
	ctx := context.Background()
	s := openTemp(b)
	defer s.Close()
	if noIndexes {
		if err := s.DropSecondaryIndexes(ctx); err != nil {
			b.Fatal(err)
		}
	}
	per := (b.N + writers - 1) / writers
	chains := make([][]event.Event, writers)
	for w := range chains {
		chains[w] = storetest.Chain(fmt.Sprintf("pc-%05d", w), 1, per, "")
	}
	b.ReportAllocs()
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
	b.ReportMetric(float64(writers*per)/b.Elapsed().Seconds(), "events/s")
	if st, err := s.Stats(ctx); err == nil && st.Events > 0 {
		b.ReportMetric(float64(st.BytesOnDisk)/float64(st.Events), "disk-B/event")
	}
}
