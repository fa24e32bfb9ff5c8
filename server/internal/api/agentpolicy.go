package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/mamori/mamori/server/internal/h2loop"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/policy"
	"github.com/mamori/mamori/shared/wire"
)

// DefaultPolicyName applies to every agent without an assignment.
const DefaultPolicyName = "default"

// BuiltinDefault is served when state holds no policy named "default": it
// audits posture and screen lock and leaves the rest off.
func BuiltinDefault() *policy.Policy {
	p := &policy.Policy{
		APIVersion:  policy.APIVersion,
		Kind:        policy.Kind,
		Name:        DefaultPolicyName,
		Description: "built-in default: audit posture and screen lock",
	}
	p.Controls.Screenlock.Mode = policy.Audit
	p.Controls.Posture.Mode = policy.Audit
	p.Normalize()
	return p
}

// compiled is a policy ready to send.
type compiled struct {
	rev  int64
	resp wire.PolicyResponse
}

// policyCache keeps each named policy compiled per revision, and a
// broadcast channel closed (and replaced) on every change.
type policyCache struct {
	mu      sync.Mutex
	byName  map[string]compiled
	changed chan struct{}
	builtin wire.PolicyResponse
	// gen counts changes; perAgent holds each agent's compiled policy of
	// generation gen (older entries are stale), sharing one response per
	// version, so a long-poll that comes back, or is woken by a change that
	// does not concern it, costs no etcd reads.
	gen       uint64
	perAgent  map[string]agentPolicy
	byVersion map[string]*wire.PolicyResponse
}

type agentPolicy struct {
	gen   uint64
	resp  *wire.PolicyResponse
	until time.Time
}

func newPolicyCache() *policyCache {
	p := BuiltinDefault()
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("api: built-in default policy: %v", err)) // a programming error
	}
	return &policyCache{
		byName:    map[string]compiled{},
		changed:   make(chan struct{}),
		builtin:   wire.PolicyResponse{Version: p.Version(), Policy: b},
		perAgent:  map[string]agentPolicy{},
		byVersion: map[string]*wire.PolicyResponse{},
	}
}

// wait returns a channel closed at the next change, and the generation it
// ends.
func (c *policyCache) wait() (<-chan struct{}, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed, c.gen
}

func (c *policyCache) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.gen++
	clear(c.perAgent)
	clear(c.byVersion)
	c.mu.Unlock()
}

// agent returns the agent's policy compiled in generation gen, if still
// valid at now.
func (c *policyCache) agent(id string, gen uint64, now time.Time) (wire.PolicyResponse, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.perAgent[id]
	if !ok || a.gen != gen || !a.until.IsZero() && !now.Before(a.until) {
		return wire.PolicyResponse{}, time.Time{}, false
	}
	return *a.resp, a.until, true
}

// putAgent keeps what was compiled in generation gen, unless a change came
// since.
func (c *policyCache) putAgent(id string, gen uint64, resp wire.PolicyResponse, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	shared, ok := c.byVersion[resp.Version]
	if !ok {
		shared = &resp
		c.byVersion[resp.Version] = shared
	}
	c.perAgent[id] = agentPolicy{gen: gen, resp: shared, until: until}
}

// agentPolicy is the agent's compiled policy, from the cache when this
// generation has it, else compiled holding one of s.stateSlots:
// 10,000 long-polls woken by one change must not send 40,000 reads to etcd
// at once (they time out, answer 500 and come back for more).
// Only long-polls (cached) use the per-agent cache. With the registers,
// every request compiles from their per-change view (register.Shared):
// writes through this server invalidate it at once (policyWritten), those
// of another server when the watch reports them.
func (s *Server) agentPolicy(ctx context.Context, id string, gen uint64, cached bool) (wire.PolicyResponse, time.Time, error) {
	if resp, until, ok := s.policies.agent(id, gen, time.Now()); ok && cached {
		return resp, until, nil
	}
	select {
	case s.stateSlots <- struct{}{}:
		defer func() { <-s.stateSlots }()
	case <-ctx.Done():
		return wire.PolicyResponse{}, time.Time{}, ctx.Err()
	}
	if resp, until, ok := s.policies.agent(id, gen, time.Now()); ok && cached {
		return resp, until, nil // compiled by a request of the same agent meanwhile
	}
	var (
		resp  wire.PolicyResponse
		until time.Time
		err   error
	)
	if s.cfg.Registers != nil {
		// Compiled once per change for every agent with the same inputs.
		var sp register.SharedPolicy
		sp, err = s.cfg.Registers.Shared(ctx, id)
		resp, until = wire.PolicyResponse{Version: sp.Version, Policy: sp.JSON}, sp.Until
	} else {
		resp, err = s.effectivePolicy(ctx, id)
	}
	if err != nil {
		return resp, until, err
	}
	s.policies.putAgent(id, gen, resp, until)
	return resp, until, nil
}

// watchPolicies turns the state watch into broadcasts until Close.
func (s *Server) watchPolicies(ctx context.Context) {
	defer close(s.done)
	defer s.policies.notify() // wake long-polls on shutdown
	if s.cfg.Registers != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { s.cfg.Registers.WatchAgents(ctx, s.policies.notify) })
	}
	for {
		ch := s.cfg.State.WatchPolicies(ctx)
		for range ch {
			s.invalidateRegisters()
			s.policies.notify()
		}
		if ctx.Err() != nil {
			return
		}
		// The watch ended on its own (etcd hiccup): re-arm after a pause,
		// and wake everyone since changes may have been missed.
		s.invalidateRegisters()
		s.policies.notify()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// policyWritten wakes this server's long-polls at once after a write that
// can change effective policies, without waiting for the watch.
func (s *Server) policyWritten() {
	s.invalidateRegisters()
	s.policies.notify()
}

// invalidateRegisters drops the compiler's cached registers (another
// server, or etcd directly, may have changed them).
func (s *Server) invalidateRegisters() {
	if s.cfg.Registers != nil {
		s.cfg.Registers.Invalidate()
	}
}

// effectivePolicy is the agent's assigned policy, else "default", else the
// built-in default.
func (s *Server) effectivePolicy(ctx context.Context, agentID string) (wire.PolicyResponse, error) {
	name, err := s.cfg.State.Assignment(ctx, agentID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return wire.PolicyResponse{}, err
	}
	if name != "" {
		resp, ok, err := s.namedPolicy(ctx, name)
		if err != nil || ok {
			return resp, err
		}
		s.log.Warn().Str("agent", agentID).Str("policy", name).Msg("api: assigned policy missing; using default")
	}
	resp, ok, err := s.namedPolicy(ctx, DefaultPolicyName)
	if err != nil || ok {
		return resp, err
	}
	return s.policies.builtin, nil
}

func (s *Server) namedPolicy(ctx context.Context, name string) (wire.PolicyResponse, bool, error) {
	doc, rev, err := s.cfg.State.GetPolicy(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return wire.PolicyResponse{}, false, nil
	}
	if err != nil {
		return wire.PolicyResponse{}, false, err
	}
	c := s.policies
	c.mu.Lock()
	hit, ok := c.byName[name]
	c.mu.Unlock()
	if ok && hit.rev == rev {
		return hit.resp, true, nil
	}
	p, err := policy.ParseStored(doc)
	if err != nil {
		// PUT validates, so this is a document written around the API.
		return wire.PolicyResponse{}, false, fmt.Errorf("api: stored policy %q: %w", name, err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return wire.PolicyResponse{}, false, fmt.Errorf("api: policy %q: %w", name, err)
	}
	resp := wire.PolicyResponse{Version: p.Version(), Policy: b}
	c.mu.Lock()
	c.byName[name] = compiled{rev: rev, resp: resp}
	c.mu.Unlock()
	return resp, true, nil
}

// handlePolicy answers GET /v1/policy?version=V&wait=D: at once when the
// effective policy's version differs from V, else when it changes, else
// 304 after D.
func (s *Server) handlePolicy(w http.ResponseWriter, r *http.Request) {
	id := agentFrom(r.Context())
	q := r.URL.Query()
	have := q.Get("version")
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			s.fail(w, r, http.StatusBadRequest, "wait: want a Go duration such as 30s")
			return
		}
		wait = min(d, s.cfg.MaxPolicyWait)
	}
	// Measured from the request's arrival: a parked request runs again.
	deadline := h2loop.Arrived(r).Add(wait)
	for {
		changed, gen := s.policies.wait() // before reading, so no change is missed
		resp, until, err := s.agentPolicy(r.Context(), id, gen, wait > 0)
		if err != nil && r.Context().Err() != nil {
			return // the agent went away (or the server is closing): no one to answer, nothing failed
		}
		if err != nil {
			s.internal(w, r, "effective policy", err)
			return
		}
		if resp.Version != have {
			s.writeJSON(w, r, http.StatusOK, resp)
			return
		}
		if !time.Now().Before(deadline) || s.closing() {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		wakeAt := deadline
		if end := until.Add(10 * time.Millisecond); !until.IsZero() && end.Before(wakeAt) {
			wakeAt = end // an approval window ending changes the policy
		}
		// On the agents' connection loop the request waits without a
		// goroutine; it comes back here when woken.
		if h2loop.Park(r, changed, wakeAt) {
			return
		}
		t := time.NewTimer(time.Until(wakeAt))
		select {
		case <-t.C:
		case <-changed:
		case <-r.Context().Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

func (s *Server) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
