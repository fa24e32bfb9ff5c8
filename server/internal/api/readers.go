package api

import (
	"net"
	"net/http"
	"sync"
)

// Defaults of the bounds on batch bodies being read (Config).
const (
	defaultBodyReadsPerAgent  = 2
	defaultBodyReadsPerSource = 32
)

// bodyReaders counts the batch bodies being read per agent certificate and
// per source address, so that slow senders with one stolen certificate or
// from one address hold a bounded number of connections and buffers.
type bodyReaders struct {
	perAgent, perSource int
	mu                  sync.Mutex
	agents, sources     map[string]int
}

func newBodyReaders(perAgent, perSource int) *bodyReaders {
	return &bodyReaders{perAgent: perAgent, perSource: perSource, agents: map[string]int{}, sources: map[string]int{}}
}

// acquire counts one more body read for agent from r's source address; it
// says which bound is full ("" when admitted). Admitted reads must release.
func (b *bodyReaders) acquire(agent string, r *http.Request) (src, full string) {
	src = sourceIP(r)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.agents[agent] >= b.perAgent:
		return src, "agent certificate"
	case b.sources[src] >= b.perSource:
		return src, "source address"
	}
	b.agents[agent]++
	b.sources[src]++
	return src, ""
}

func (b *bodyReaders) release(agent, src string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.agents[agent]--; b.agents[agent] <= 0 {
		delete(b.agents, agent)
	}
	if b.sources[src]--; b.sources[src] <= 0 {
		delete(b.sources, src)
	}
}

// sourceIP is the request's peer address without the port.
func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
