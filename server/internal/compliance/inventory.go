package compliance

import (
	"context"
	"errors"
	"fmt"

	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/policy"
)

// DefaultPolicyName applies to every agent without an assignment (as in
// the API's policy long-poll).
const DefaultPolicyName = "default"

// StateInventory lists the agents of the control-plane state with their
// effective policy: the assigned one, else "default", else Fallback. It
// reads etcd on every call; the Tracker caches the answer.
type StateInventory struct {
	State *state.State
	// Fallback is the policy when state holds no "default" (the API's
	// built-in default, api.BuiltinDefault). Nil means policy defaults
	// with every control off.
	Fallback func() *policy.Policy
	// Effective, if set, gives an agent's effective policy as the agent
	// receives it (pack plus the registers' folders, media and approvals);
	// without it, or when it fails, the assigned pack is used.
	Effective func(ctx context.Context, agentID string) (*policy.Policy, error)
}

// Hosts implements Inventory.
func (s StateInventory) Hosts(ctx context.Context) ([]HostInfo, error) {
	agents, err := s.State.ListAgents(ctx)
	if err != nil {
		return nil, fmt.Errorf("compliance: listing agents: %w", err)
	}
	parsed := map[string]*policy.Policy{} // by name; nil = missing
	lookup := func(name string) (*policy.Policy, error) {
		if p, ok := parsed[name]; ok {
			return p, nil
		}
		doc, _, err := s.State.GetPolicy(ctx, name)
		switch {
		case errors.Is(err, state.ErrNotFound):
			parsed[name] = nil
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("compliance: policy %q: %w", name, err)
		}
		p, err := policy.ParseStored(doc)
		if err != nil {
			// PUT validates, so this is a document written around the API.
			return nil, fmt.Errorf("compliance: stored policy %q: %w", name, err)
		}
		parsed[name] = p
		return p, nil
	}
	out := make([]HostInfo, 0, len(agents))
	for _, a := range agents {
		if s.Effective != nil {
			if p, err := s.Effective(ctx, a.ID); err == nil && p != nil {
				out = append(out, HostInfo{Agent: a.ID, Hostname: a.Hostname, Department: a.Department,
					Enrolled: a.Enrolled, Policy: p})
				continue
			}
		}
		name, err := s.State.Assignment(ctx, a.ID)
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return nil, fmt.Errorf("compliance: assignment of %s: %w", a.ID, err)
		}
		var p *policy.Policy
		if name != "" {
			if p, err = lookup(name); err != nil {
				return nil, err
			}
		}
		if p == nil {
			if p, err = lookup(DefaultPolicyName); err != nil {
				return nil, err
			}
		}
		if p == nil && s.Fallback != nil {
			p = s.Fallback()
		}
		out = append(out, HostInfo{Agent: a.ID, Hostname: a.Hostname, Department: a.Department,
			Enrolled: a.Enrolled, Policy: p})
	}
	return out, nil
}
