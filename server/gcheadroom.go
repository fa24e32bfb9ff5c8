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
// took the paced ack p99 from 97-133 ms to 60-83 ms. So a small live heap
// gets minHeadroom of room. A large live heap is mostly connections (some
// 12 KiB an agent: 10,000 agents are 140 MB with the rest) that allocate
// little, and room there is memory held for nothing: past half of
// minHeadroom live, the room shrinks by two bytes for each byte more, down
// to a quarter of the live heap (GOGC=25). A GOGC in the environment wins.
const (
	minHeadroom  = 128 << 20
	minGCPercent = 25
	maxGCPercent = 300 // an idle server's small heap need not grow tenfold
	gcTuneEvery  = 2 * time.Second

	// A burst (10,000 agents reconnecting after a restart: a handshake
	// goroutine each) leaves memory the heap no longer uses; the runtime
	// hands it back to the OS over minutes. More than maxFree of it is
	// handed back at once, at most every freeEvery (a full collection).
	maxFree   = 64 << 20
	freeEvery = 30 * time.Second
)

// gcPercent is the GOGC for a live heap of live bytes.
func gcPercent(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	room := uint64(minHeadroom)
	if live > minHeadroom/2 {
		room = 2 * (minHeadroom - min(live, minHeadroom))
	}
	room = max(room, live/4)
	return int(min(max(room*100/live, minGCPercent), maxGCPercent))
}

// tuneGC sets GOGC from the live heap every gcTuneEvery until stop is
// closed, unless the environment sets GOGC.
func tuneGC(stop <-chan struct{}) {
	if os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	cur := 100
	var freed time.Time
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
		if sample[1].Value.Kind() == metrics.KindUint64 && sample[1].Value.Uint64() > maxFree && time.Since(freed) > freeEvery {
			debug.FreeOSMemory()
			freed = time.Now()
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
