package main

import (
	"os"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		live, rate uint64
		want       int
	}{
		{0, 0, maxGCPercent},
		{1 << 20, 0, maxGCPercent}, // idle: capped, not 12,800
		{64 << 20, 0, 200},         // 128 MiB of room, the most given
		{70 << 20, 200 << 20, 165}, // ingest at 50,000 events/s: 116 MiB of room
		{96 << 20, 0, 66},          // 64 MiB of room
		{122 << 20, 0, 10},         // a tenth of the live heap from here on
		{140 << 20, 5 << 20, 10},   // 10,000 agents' connections, 200 events/s
		{300 << 20, 600 << 20, 80}, // 1,000 agents saturating: room for 0.4 s of allocation
		{300 << 20, 2 << 30, 100},  // the rate buys at most GOGC's default
		{1 << 40, 0, 10},
	} {
		if got := gcPercent(c.live, c.rate); got != c.want {
			t.Errorf("gcPercent(%d MiB, %d MiB/s) = %d, want %d", c.live>>20, c.rate>>20, got, c.want)
		}
	}
}

// TestTuneGC: the tuner sets the GOGC of the live heap at once, stops when
// told, and leaves a GOGC from the environment alone.
func TestTuneGC(t *testing.T) {
	gogc := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	defer debug.SetGCPercent(debug.SetGCPercent(100))

	t.Setenv("GOGC", "100")
	done := make(chan struct{})
	go func() { tuneGC(nil, nil); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("tuneGC ran with GOGC set in the environment")
	}
	if p := gogc(); p != 100 {
		t.Fatalf("GOGC %d with GOGC=100 in the environment", p)
	}

	os.Unsetenv("GOGC")
	stop := make(chan struct{})
	done = make(chan struct{})
	go func() { tuneGC(stop, nil); close(done) }()
	// A test binary's live heap is a few MB: the most headroom there is.
	deadline := time.Now().Add(5 * time.Second)
	for gogc() != maxGCPercent {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d, want %d for a small live heap", gogc(), maxGCPercent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("tuneGC did not stop")
	}
}

// TestTuneGCStorm: many handshakes begun in a tick, or under way, hold the
// heap tight whatever the live heap, and the rules come back after.
func TestTuneGCStorm(t *testing.T) {
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	gogc := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	var begun, underWay atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go tuneGC(stop, func() (int64, int64) { return begun.Load(), underWay.Load() })
	wait := func(want int, what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for gogc() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: GOGC %d, want %d", what, gogc(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait(maxGCPercent, "quiet, small heap")
	begun.Store(10_000)
	underWay.Store(9_000)
	wait(stormGCPercent, "10,000 handshakes begun")
	// No more begun, but thousands still under way: still a storm.
	time.Sleep(3 * gcTuneEvery)
	wait(stormGCPercent, "9,000 handshakes under way")
	underWay.Store(3)
	wait(maxGCPercent, "storm over")
}
