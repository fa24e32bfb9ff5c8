package uplink

import (
	"slices"
	"sync"
	"time"
)

// PrimaryRecheck is how long the agent stays on a later server of its list
// before it tries the first one again.
const PrimaryRecheck = 5 * time.Minute

// ServerList is the agent's ordered list of server URLs (from the installed
// config and the policy). The shipper and the policy sync use the current
// one; a failure that says the server is unreachable or unwell moves to the
// next in order, and after PrimaryRecheck on a later one the first is tried
// again, so the fleet returns to it when it is back.
type ServerList struct {
	mu    sync.Mutex
	urls  []string
	cur   int
	moved time.Time
	now   func() time.Time
}

// NewServerList starts on the first of urls (at least one).
func NewServerList(urls []string) *ServerList {
	return &ServerList{urls: slices.Clone(urls), now: time.Now}
}

// Current is the URL to use now.
func (l *ServerList) Current() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != 0 && l.now().Sub(l.moved) >= PrimaryRecheck {
		l.cur, l.moved = 0, l.now()
	}
	return l.urls[l.cur]
}

// URLs returns a copy of the list.
func (l *ServerList) URLs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.urls)
}

// Failed moves on from url to the next server in order (wrapping), unless
// another caller already moved on.
func (l *ServerList) Failed(url string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.urls) < 2 || l.urls[l.cur] != url {
		return
	}
	l.cur = (l.cur + 1) % len(l.urls)
	l.moved = l.now()
}

// Set replaces the list (a policy pushed a new one); the agent starts again
// at its first server.
func (l *ServerList) Set(urls []string) {
	if len(urls) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.Equal(urls, l.urls) {
		return
	}
	l.urls, l.cur, l.moved = slices.Clone(urls), 0, l.now()
}

// failover reports whether an error of kind means "try another server":
// the server is unreachable or failing, not refusing this request.
func failover(kind string) bool {
	return kind != KindRefusedReq && kind != KindGarbage && kind != KindBusy
}
