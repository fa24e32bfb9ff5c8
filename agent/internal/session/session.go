// Package session carries interactive-session changes (lock, unlock, logon,
// logoff) from where the OS reports them to the controls that record them.
//
// On Windows the service loop receives SERVICE_CONTROL_SESSIONCHANGE and
// publishes here; on other systems whoever can observe them does. Publishing
// never blocks: a subscriber that falls behind loses changes, and the count
// of lost changes is kept so the control can say so.
package session

import (
	"sync"
	"sync/atomic"
	"time"
)

// Kind of change, named after the WTS_SESSION_* codes.
type Kind string

const (
	Lock   Kind = "lock"   // WTS_SESSION_LOCK (7)
	Unlock Kind = "unlock" // WTS_SESSION_UNLOCK (8)
	Logon  Kind = "logon"  // WTS_SESSION_LOGON (5)
	Logoff Kind = "logoff" // WTS_SESSION_LOGOFF (6)
)

// Change is one session event.
type Change struct {
	Kind      Kind
	SessionID uint32
	User      string // DOMAIN\user or user, when known
	Time      time.Time
}

// Bus fans changes out to subscribers.
type Bus struct {
	mu   sync.Mutex
	subs []chan Change
	lost atomic.Int64
}

// Default is the process-wide bus the service loop publishes to.
var Default = &Bus{}

// Subscribe returns a buffered channel of future changes.
func (b *Bus) Subscribe() <-chan Change {
	ch := make(chan Change, 64)
	b.mu.Lock()
	b.subs = append(b.subs, ch)
	b.mu.Unlock()
	return ch
}

// Unsubscribe stops delivery to ch.
func (b *Bus) Unsubscribe(ch <-chan Change) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, s := range b.subs {
		if s == ch {
			b.subs = append(b.subs[:i], b.subs[i+1:]...)
			return
		}
	}
}

// Publish delivers c to every subscriber without blocking.
func (b *Bus) Publish(c Change) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs {
		select {
		case s <- c:
		default:
			b.lost.Add(1)
		}
	}
}

// Lost returns how many deliveries were dropped because a subscriber was full.
func (b *Bus) Lost() int64 { return b.lost.Load() }
