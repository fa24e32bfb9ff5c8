package register

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mamori/mamori/policies"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/policy"
)

// SharedPolicy is a compiled effective policy as the agent gets it. It is
// shared between every agent with the same inputs: do not modify JSON.
type SharedPolicy struct {
	Version string
	JSON    []byte
	Policy  *policy.Policy // JSON before encoding; shared too: read only
	Source  string
	Until   time.Time // when it changes by time alone (an approval window ends); zero if never
}

// view is everything an effective policy depends on besides the agent's
// own record, read at one etcd revision, plus what was compiled from it.
// Invalidate (the watch that wakes the long-polls) drops it.
type view struct {
	policies   map[string]storedPolicy
	agentPack  map[string]string // agent id -> assigned policy
	deptPack   map[string]string // department -> assigned policy
	snap       *snapshot
	namedHosts map[string]bool // fold keys of the hosts the registers name

	// out holds the compiled policies by (pack, host): host is "" for
	// every host the registers do not name, so those agents share one.
	out map[outKey]SharedPolicy
}

type storedPolicy struct {
	doc []byte
	rev int64
}

type outKey struct{ pack, host string }

// agentRec is what compiling needs of an agent's record. The hostname
// never changes after enrollment; the department does (SetAgentDepartment,
// seen by WatchAgents).
type agentRec struct{ host, dept string }

// Shared compiles the agent's effective policy like Effective, but from a
// view of the policies, assignments and registers read with one etcd
// round trip per change, and compiles each distinct (pack, host named by
// the registers) once per change: a change that wakes 10,000 long-polls
// costs a handful of etcd reads, not 10,000 x 4. The agent's record is
// read once and kept (WatchAgents keeps it current). What a write just
// made is seen once the watch has called Invalidate; a caller that must
// read its own write uses Effective.
func (s *Service) Shared(ctx context.Context, agentID string) (SharedPolicy, error) {
	ag, err := s.agentRecord(ctx, agentID)
	if err != nil {
		return SharedPolicy{}, err
	}
	v, err := s.currentView(ctx)
	if err != nil {
		return SharedPolicy{}, err
	}
	host := ""
	if ag.host != "" && v.namedHosts[foldKey(ag.host)] {
		host = ag.host
	}
	pack := v.pack(agentID, ag.dept)
	now := s.now()
	k := outKey{pack, host}
	s.snapMu.Lock()
	hit, ok := v.out[k]
	s.snapMu.Unlock()
	if ok && (hit.Until.IsZero() || now.Before(hit.Until)) {
		return hit, nil
	}
	p, src, err := s.viewPack(v, pack)
	if err != nil {
		return SharedPolicy{}, err
	}
	until := compileInto(p, v.snap, host, now)
	b, err := json.Marshal(p)
	if err != nil {
		return SharedPolicy{}, fmt.Errorf("register: policy for %s: %w", agentID, err)
	}
	out := SharedPolicy{Version: p.Version(), JSON: b, Policy: p, Source: src, Until: until}
	s.snapMu.Lock()
	v.out[k] = out
	s.snapMu.Unlock()
	return out, nil
}

// pack is the name of the stored policy the agent gets (agent assignment >
// department assignment > "default" > the stored baseline), or "" for the
// built-in baseline.
func (v *view) pack(agentID, dept string) string {
	names := []string{v.agentPack[agentID]}
	if dept != "" {
		names = append(names, v.deptPack[dept])
	}
	for _, n := range append(names, DefaultPolicyName, policies.Baseline) {
		if _, ok := v.policies[n]; ok && n != "" {
			return n
		}
	}
	return ""
}

// viewPack parses the named pack of the view (a fresh copy to compile into).
func (s *Service) viewPack(v *view, name string) (*policy.Policy, string, error) {
	if name == "" {
		p, err := policies.Get(policies.Baseline)
		if err != nil {
			return nil, "", fmt.Errorf("register: %w", err)
		}
		return p, policies.Baseline + " (built-in)", nil
	}
	sp := v.policies[name]
	p, err := s.parseCached(name, sp.doc, sp.rev)
	if err != nil {
		return nil, "", err
	}
	return p, name, nil
}

// currentView returns the view of this change generation, reading it in
// one transaction when there is none.
func (s *Service) currentView(ctx context.Context) (*view, error) {
	s.snapMu.Lock()
	for s.view == nil && s.viewLoading != nil { // one read at a time: the rest wait for it
		loading := s.viewLoading
		s.snapMu.Unlock()
		select {
		case <-loading:
		case <-ctx.Done():
			return nil, fmt.Errorf("register: read policy inputs: %w", ctx.Err())
		}
		s.snapMu.Lock()
	}
	if v := s.view; v != nil {
		s.snapMu.Unlock()
		return v, nil
	}
	gen := s.snapGen
	loading := make(chan struct{})
	s.viewLoading = loading
	s.snapMu.Unlock()
	defer func() {
		s.snapMu.Lock()
		s.viewLoading = nil
		close(loading)
		s.snapMu.Unlock()
	}()

	ctx, cancel := opCtx(ctx)
	defer cancel()
	pol, asg, reg := state.Prefix+"policies/", state.Prefix+"assignments/", state.Prefix+entriesDir
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(pol, clientv3.WithPrefix()),
		clientv3.OpGet(asg, clientv3.WithPrefix()),
		clientv3.OpGet(reg, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("register: read policy inputs: %w", err)
	}
	v := &view{policies: map[string]storedPolicy{}, agentPack: map[string]string{}, deptPack: map[string]string{},
		namedHosts: map[string]bool{}, out: map[outKey]SharedPolicy{}}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		v.policies[strings.TrimPrefix(string(kv.Key), pol)] = storedPolicy{doc: kv.Value, rev: kv.ModRevision}
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		rest := strings.TrimPrefix(string(kv.Key), asg)
		if dept, ok := strings.CutPrefix(rest, strings.TrimPrefix(deptAssignDir, "assignments/")); ok {
			v.deptPack[dept] = string(kv.Value)
		} else if !strings.Contains(rest, "/") {
			v.agentPack[rest] = string(kv.Value)
		}
	}
	if v.snap, err = parseSnapshot(resp.Responses[2].GetResponseRange().Kvs); err != nil {
		return nil, err
	}
	for _, e := range v.snap.pi {
		for _, l := range e.Locations {
			v.namedHosts[foldKey(l.Host)] = true
		}
	}
	for _, a := range v.snap.approvals {
		v.namedHosts[foldKey(a.Host)] = true
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if s.snapGen != gen {
		return v, nil // a change arrived while reading: use it once, keep nothing
	}
	s.view, s.snap = v, v.snap
	return v, nil
}

// foldKey maps strings equal under strings.EqualFold to the same key:
// each rune becomes the smallest of its case-folding orbit.
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r == utf8.RuneError {
			b.WriteRune(r)
			continue
		}
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// agentRecord is the agent's hostname and department, read once. A
// missing record compiles as no host and no department, as Effective does.
func (s *Service) agentRecord(ctx context.Context, agentID string) (agentRec, error) {
	// A record is kept whenever it is served, so that WatchAgents can tell
	// when what was served changed. A read that a change overtook (the
	// generation moved) is read again; after a few tries, in a storm of
	// renewals, it is kept anyway: the next change of the record corrects it.
	for try := 0; ; try++ {
		s.agentsMu.Lock()
		rec, ok := s.agents[agentID]
		gen := s.agentsGen
		s.agentsMu.Unlock()
		if ok {
			return rec, nil
		}
		ag, err := s.st.GetAgent(ctx, agentID)
		if errors.Is(err, state.ErrNotFound) {
			return agentRec{}, nil
		}
		if err != nil {
			return agentRec{}, fmt.Errorf("register: agent %s: %w", agentID, err)
		}
		rec = agentRec{host: ag.Hostname, dept: ag.Department}
		s.agentsMu.Lock()
		kept := s.agentsGen == gen || try >= 3
		if kept {
			s.agents[agentID] = rec
		}
		s.agentsMu.Unlock()
		if kept {
			return rec, nil
		}
	}
}

// forgetAgent drops the kept record of an agent whose record changed.
func (s *Service) forgetAgent(agentID string) {
	s.agentsMu.Lock()
	delete(s.agents, agentID)
	s.agentsGen++
	s.agentsMu.Unlock()
}

// WatchAgents keeps the agent records Shared reads current until ctx
// ends: a record that changed what compiling reads (a department set
// through another server) is updated and changed is called, so the
// long-polls are woken. Enrollments of new agents call nothing.
func (s *Service) WatchAgents(ctx context.Context, changed func()) {
	dir := state.Prefix + "agents/"
	for ctx.Err() == nil {
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), dir, clientv3.WithPrefix())
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			woke := false
			for _, ev := range resp.Events {
				id := strings.TrimPrefix(string(ev.Kv.Key), dir)
				s.agentsMu.Lock()
				if !ev.IsCreate() { // a read racing this change must not keep what it read
					s.agentsGen++
				}
				old, kept := s.agents[id]
				if kept {
					var a state.Agent
					if ev.Type == clientv3.EventTypeDelete || json.Unmarshal(ev.Kv.Value, &a) != nil {
						delete(s.agents, id)
						woke = true
					} else if rec := (agentRec{host: a.Hostname, dept: a.Department}); rec != old {
						s.agents[id] = rec
						woke = true
					}
				}
				s.agentsMu.Unlock()
			}
			if woke {
				changed()
			}
		}
		if ctx.Err() != nil {
			return
		}
		// The watch broke (etcd restart, compaction): changes may have
		// been missed, so read every record again when next needed.
		s.agentsMu.Lock()
		clear(s.agents)
		s.agentsGen++
		s.agentsMu.Unlock()
		changed()
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
