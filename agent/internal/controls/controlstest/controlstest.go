// Package controlstest provides fakes for testing controls: a clock moved by
// hand and an emitter that records events.
package controlstest

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// FakeClock is a Clock that moves only when Advance is called.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewFakeClock starts at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After fires when Advance moves the clock to or past now+d.
func (c *FakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

// Waiters returns how many After channels are pending; tests poll it to know
// a goroutine has gone to sleep.
func (c *FakeClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// Advance moves the clock and fires due timers in order.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	sort.Slice(c.waiters, func(i, j int) bool { return c.waiters[i].at.Before(c.waiters[j].at) })
	var keep []waiter
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
	c.mu.Unlock()
}

// Recorder is an Emitter that keeps every event, sealed into a chain.
type Recorder struct {
	mu     sync.Mutex
	events []event.Event
	Err    error // returned by Emit when set
}

// Emit records e with the next seq.
func (r *Recorder) Emit(ctx context.Context, e event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Err != nil {
		return r.Err
	}
	e.Agent = "test"
	e.Seq = uint64(len(r.events) + 1)
	prev := ""
	if n := len(r.events); n > 0 {
		prev = r.events[n-1].Hash
	}
	if err := e.Seal(prev); err != nil {
		return err
	}
	r.events = append(r.events, e)
	return nil
}

// Events returns a copy of what was emitted.
func (r *Recorder) Events() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Event(nil), r.events...)
}

// OfType returns the emitted events of type typ.
func (r *Recorder) OfType(typ string) []event.Event {
	var out []event.Event
	for _, e := range r.Events() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}
