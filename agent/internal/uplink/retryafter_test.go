package uplink

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// TestShipperHonoursRetryAfter: a server answering 503 with Retry-After
// (its admission control) is not asked again before it said, however short
// the shipper's own backoff; the events stay spooled meanwhile and are
// delivered exactly once when it takes them.
func TestShipperHonoursRetryAfter(t *testing.T) {
	f := newFakeServer(t)
	dir := enrollTest(t, f)
	sh, sp := newShipper(t, f, dir, 0, io.Discard)
	sh.Backoff.Max = 5 * time.Second // Base stays 2ms: without Retry-After it would retry at once
	f.mode.Store("busy")
	emitN(t, sp, 50, event.Info)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	waitUntil(t, 30*time.Second, "three refused batches", func() bool { return f.hits.Load() >= 3 })
	if k := sh.Failing(); k != KindBusy {
		t.Errorf("failing %q, want %q", k, KindBusy)
	}
	if d := sp.Stats().Depth; d != 50 {
		t.Fatalf("spool depth %d while the server was busy, want all 50 kept", d)
	}
	f.mode.Store("good")
	waitUntil(t, 30*time.Second, "delivery", func() bool { return sp.Stats().Depth == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	times := f.hitTimes
	f.mu.Unlock()
	for i := 1; i < 3; i++ {
		if gap := times[i].Sub(times[i-1]); gap < time.Second {
			t.Errorf("retry %d came %v after a 503 with Retry-After: 1", i, gap)
		}
	}
	got := f.storedEvents()
	if len(got) != 50 {
		t.Fatalf("server stored %d events, want 50", len(got))
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) {
			t.Fatalf("stored[%d].seq = %d", i, e.Seq)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":               0,
		"5":              5 * time.Second,
		"0":              0,
		"-3":             0,
		"soon":           0,
		"99999999999999": 24 * time.Hour,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestRetryAfterDelayJitteredAndCapped: the wait is at least what the
// server asked (up to the cap) and at most half again, so agents told the
// same spread out, and a huge Retry-After does not park an agent for a day.
func TestRetryAfterDelayJitteredAndCapped(t *testing.T) {
	max := 90 * time.Second
	seen := map[time.Duration]bool{}
	for range 200 {
		d := retryAfterDelay(10*time.Second, max)
		if d < 10*time.Second || d >= 15*time.Second {
			t.Fatalf("Retry-After 10s: waited %v", d)
		}
		seen[d] = true
		if d := retryAfterDelay(24*time.Hour, max); d < max || d >= max*3/2 {
			t.Fatalf("Retry-After 24h: waited %v, want [%v, %v)", d, max, max*3/2)
		}
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct waits in 200: not jittered", len(seen))
	}
}
