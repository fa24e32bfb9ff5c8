package main

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"time"
)

// The collector's headroom. With GOGC's default the heap grows by as much
// as is live before the next collection. Ingest at 50,000 events/s keeps
// some 70 MB live and allocates about 4 KB an event, so the collector ran
// seven times a second and its pauses set the tail of the acks: GOGC=200
// took the paced ack p99 from 97-133 ms to 60-83 ms. So a small live heap
// gets minHeadroom of room. A large live heap that allocates little is
// mostly connections (some 12 KiB an agent: 10,000 agents are 140 MB with
// the rest), and room there is memory held for nothing: past half of
// minHeadroom live, the room shrinks by two bytes for each byte more, down
// to a tenth of the live heap (GOGC=10: 10,000 agents' 150 MB live then
// cost the collector about one cycle a second, 3% of a core; a quarter
// held 25 MiB more). A large heap that allocates
// fast (1,000 agents saturating, their batches in flight) keeps the room
// it allocates in gcSpacing, up to GOGC's default, so the collector does
// not run more than about two and a half times a second (with a quarter of
// the live heap as the floor, 50,000 events/s paced had the same figures
// as 250 ms; with a tenth, 10% more CPU an event). A GOGC in the
// environment wins.
const (
	minHeadroom  = 128 << 20
	minGCPercent = 10
	maxGCPercent = 300 // an idle server's small heap need not grow tenfold
	gcTuneEvery  = 500 * time.Millisecond
	gcSpacing    = 400 * time.Millisecond
	rateWindow   = 8 // ticks: the higher allocation rate of the last 4 s counts

	// Agents reconnecting together (a restart: 10,000 handshakes in some
	// seconds) are the one burst whose allocation mostly stays: each
	// handshake keeps about 12 KiB among some 100 KiB of garbage. With
	// room in the heap the kept pieces end up spread over pages the
	// garbage held, and stay so for as long as the connections: 60-80 MiB
	// more resident for 10,000 agents. More than stormShakes handshakes
	// begun in a tick, or under way, collect at stormGCPercent, whatever
	// the rules above give.
	stormShakes    = 50
	stormGCPercent = 10

	// A burst (10,000 agents reconnecting after a restart: a handshake
	// goroutine each) leaves memory the heap no longer uses; the runtime
	// hands it back to the OS over minutes. More than maxFree of it is
	// handed back at once, at most every freeEvery (a full collection).
	maxFree   = 64 << 20
	freeEvery = 30 * time.Second
)

// gcPercent is the GOGC for a live heap of live bytes allocating rate
// bytes a second.
func gcPercent(live, rate uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	room := uint64(minHeadroom)
	if live > minHeadroom/2 {
		room = 2 * (minHeadroom - min(live, minHeadroom))
	}
	room = max(room, live*minGCPercent/100, min(rate*uint64(gcSpacing)/uint64(time.Second), live))
	return int(min(max(room*100/live, minGCPercent), maxGCPercent))
}

// tuneGC sets GOGC from the live heap every gcTuneEvery until stop is
// closed, unless the environment sets GOGC. handshakes counts the TLS
// handshakes begun and under way (nil: none).
func tuneGC(stop <-chan struct{}, handshakes func() (begun, underWay int64)) {
	if os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/free:bytes"},
		{Name: "/gc/heap/allocs:bytes"}}
	cur := 100
	var freed time.Time
	var allocs uint64            // at the last tick
	var shakes int64             // at the last tick
	var rates [rateWindow]uint64 // bytes a second, the last ticks
	t := time.NewTicker(gcTuneEvery)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[2].Value.Kind() == metrics.KindUint64 {
			a := sample[2].Value.Uint64()
			copy(rates[1:], rates[:])
			if allocs > 0 {
				rates[0] = (a - allocs) * uint64(time.Second) / uint64(gcTuneEvery)
			}
			allocs = a
		}
		storm := false
		if handshakes != nil {
			n, now := handshakes()
			storm, shakes = n-shakes > stormShakes || now > stormShakes, n
		}
		if sample[0].Value.Kind() == metrics.KindUint64 {
			p := gcPercent(sample[0].Value.Uint64(), slices.Max(rates[:]))
			if storm {
				p = stormGCPercent
			}
			// Within a tenth: SetGCPercent itself costs a little.
			if p*10 < cur*9 || p*10 > cur*11 {
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
