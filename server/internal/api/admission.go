package api

import (
	"math"
	"strconv"
	"sync"
	"time"
)

// DefaultMaxAckWait is how long a batch may expect to wait for its ack
// before the server turns it away: a third of the agent's 30 s timeout, so
// an admitted batch is acked well before the agent gives up on it (and
// sends it again, as a duplicate, after the server stored it anyway).
const DefaultMaxAckWait = 10 * time.Second

// admission decides at once whether a batch can be acked within maxWait,
// from the events queued ahead of it and the rate the store acks at while
// it is busy (events acked per second of time with a batch in the store, so
// a lightly loaded store is not mistaken for a slow one). A batch that
// cannot be acked in time is answered 503 with Retry-After before its body
// is read, instead of joining a queue it would time out in, stored but never
// acked. Admitted batches wait for a decoding slot in arrival order (a
// channel's waiters are served first come, first served) and an agent sends
// one batch at a time, so agents share the store fairly.
type admission struct {
	maxWait time.Duration
	now     func() time.Time

	mu       sync.Mutex
	waiting  int     // admitted, body not yet decoded
	queued   int     // events decoded and in the store, not yet acked
	inStore  int     // batches in the store
	avgBatch float64 // events per batch, moving average

	busySince time.Time
	busy      time.Duration // total time with a batch in the store
	acked     int64         // total events acked
	// marks[i] is (busy, acked) at a past second: the rate is measured over
	// the last len(marks) seconds.
	marks  [10]mark
	markAt int64 // unix second of the newest mark

	refused int64     // 503s since the last warning
	warned  time.Time // when the last warning was logged
}

type mark struct {
	busy  time.Duration
	acked int64
}

func newAdmission(maxWait time.Duration, now func() time.Time) *admission {
	if now == nil {
		now = time.Now
	}
	return &admission{maxWait: maxWait, now: now, avgBatch: 100}
}

// ticket is one admitted batch on its way through the queue.
type ticket struct {
	a        *admission
	n        int
	inStore  bool
	released bool
}

// admit returns a ticket when a new batch may queue; else nil and how long
// the agent should wait before sending it again.
func (a *admission) admit() (*ticket, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rate := a.rateLocked(a.now()); rate > 0 { // else nothing measured yet: no ground to refuse
		ahead := float64(a.queued) + float64(a.waiting+1)*a.avgBatch
		wait := time.Duration(ahead / rate * float64(time.Second))
		if wait > a.maxWait {
			// Come back when the queue ahead should have drained below the limit.
			return nil, min(max(wait-a.maxWait, time.Second), time.Minute)
		}
	}
	a.waiting++
	return &ticket{a: a}, 0
}

// stored: the batch of n events goes into the store.
func (t *ticket) stored(n int) {
	if t == nil || t.inStore || t.released {
		return
	}
	t.n, t.inStore = n, true
	t.a.decoded(n)
}

// release ends the ticket; acked events of it were stored or found already
// stored. Later calls do nothing.
func (t *ticket) release(acked int) {
	if t == nil || t.released {
		return
	}
	t.released = true
	if t.inStore {
		t.a.done(t.n, acked)
	} else {
		t.a.abandoned()
	}
}

// decoded moves an admitted batch from waiting into the store with n events.
func (a *admission) decoded(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.waiting--
	a.queued += n
	if a.inStore == 0 {
		a.busySince = a.now()
	}
	a.inStore++
	a.avgBatch += (float64(n) - a.avgBatch) / 16
}

// abandoned takes back an admitted batch that never reached the store.
func (a *admission) abandoned() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.waiting--
}

// done takes a batch of n events out of the store; acked of them were
// stored or found already stored.
func (a *admission) done(n, acked int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.queued -= n
	a.inStore--
	a.acked += int64(acked)
	if a.inStore == 0 {
		a.busy += now.Sub(a.busySince)
	}
	a.rateLocked(now) // keeps the marks current
}

// rateLocked is events acked per busy second over the window, or 0 before
// a second of busy time has been seen (the first commits of a cold store
// are slow: no ground to refuse on).
func (a *admission) rateLocked(now time.Time) float64 {
	cur := mark{busy: a.busy, acked: a.acked}
	if a.inStore > 0 {
		cur.busy += now.Sub(a.busySince)
	}
	sec := now.Unix()
	n := int64(len(a.marks))
	switch {
	case a.markAt == 0 || sec-a.markAt >= n:
		for i := range a.marks {
			a.marks[i] = cur
		}
		a.markAt = sec
	default:
		for a.markAt < sec {
			a.markAt++
			a.marks[a.markAt%n] = cur
		}
	}
	old := a.marks[(a.markAt+1)%n] // the oldest mark
	db := cur.busy - old.busy
	if db < time.Second {
		return 0
	}
	return float64(cur.acked-old.acked) / db.Seconds()
}

// shouldWarn counts a refusal and reports whether to log (at most every
// 10 s) and how many were refused since the last log.
func (a *admission) shouldWarn() (int64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refused++
	now := a.now()
	if now.Sub(a.warned) < 10*time.Second {
		return 0, false
	}
	n := a.refused
	a.refused, a.warned = 0, now
	return n, true
}

// retryAfterHeader is whole seconds, rounded up, as RFC 9110 wants.
func retryAfterHeader(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}
