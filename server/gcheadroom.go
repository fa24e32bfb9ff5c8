package main

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's headroom. With GOGC's default the heap grows by as much
// as is live before the next collection. Ingest at 50,000 events/s keeps
// some 70 MB live and allocates about 4 KB an event, so the collector ran
// seven times a second and its pauses set the tail of the acks: GOGC=200
// took the paced ack p99 from 97-133 ms to 60-83 ms. Set for the whole
// process, it cost 10,000 agents holding long-polls 27 KiB each (their live
// heap is some 300 MB). So the heap gets at least minHeadroom of room and
// never less than GOGC=100's: a small live heap is collected as if it were
// that large, a large one as before. A GOGC in the environment wins.
const (
	minHeadroom  = 128 << 20
	maxGCPercent = 300 // an idle server's small heap need not grow tenfold
	gcTuneEvery  = 2 * time.Second
)

// gcPercent is the GOGC that gives a live heap of live bytes at least
// minHeadroom of room, within [100, maxGCPercent].
func gcPercent(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	return int(min(max(minHeadroom*100/live, 100), maxGCPercent))
}

// tuneGC sets GOGC from the live heap every gcTuneEvery until stop is
// closed, unless the environment sets GOGC.
func tuneGC(stop <-chan struct{}) {
	if os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	cur := 100
	t := time.NewTicker(gcTuneEvery)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			// Within a tenth: SetGCPercent itself costs a little.
			if p := gcPercent(sample[0].Value.Uint64()); p*10 < cur*9 || p*10 > cur*11 {
				debug.SetGCPercent(p)
				cur = p
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
