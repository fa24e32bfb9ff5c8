package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PutPolicy stores a policy's YAML text as given; the caller validates it
// with shared/policy first.
func (s *State) PutPolicy(ctx context.Context, name string, yaml []byte) error {
	if err := checkName("policy name", name); err != nil {
		return err
	}
	if len(yaml) == 0 {
		return fmt.Errorf("state: %w: empty policy %s", ErrInvalid, name)
	}
	_, err := s.putIf(ctx, policiesDir+name, yaml, -1)
	return err
}

// GetPolicy returns a policy's YAML and its mod revision, which changes on
// every write (usable as a version or ETag).
func (s *State) GetPolicy(ctx context.Context, name string) ([]byte, int64, error) {
	if err := checkName("policy name", name); err != nil {
		return nil, 0, err
	}
	return s.get(ctx, policiesDir+name)
}

// ListPolicies returns the names of all policies, sorted.
func (s *State) ListPolicies(ctx context.Context) ([]string, error) {
	names, _, err := s.list(ctx, policiesDir, true)
	return names, err
}

// DeletePolicy removes a policy. It refuses (ErrConflict) while an agent is
// assigned to it, so no agent is left pointing at nothing.
func (s *State) DeletePolicy(ctx context.Context, name string) error {
	if err := checkName("policy name", name); err != nil {
		return err
	}
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	defer s.avail.forget(policiesDir + name)
	for {
		asg, err := s.cli.Get(ctx, key(assignmentsDir), clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("state: delete policy %s: %w", name, s.etcdErr(ctx, err))
		}
		for _, kv := range asg.Kvs {
			if string(kv.Value) == name {
				return fmt.Errorf("state: policy %s is assigned to agents: %w", name, ErrConflict)
			}
		}
		// Delete only if no assignment changed since the read, so a concurrent
		// Assign cannot leave an agent pointing at a deleted policy.
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key(assignmentsDir)), "<", asg.Header.Revision+1).WithPrefix()).
			Then(clientv3.OpDelete(key(policiesDir + name))).
			Commit()
		if err != nil {
			return fmt.Errorf("state: delete policy %s: %w", name, s.etcdErr(ctx, err))
		}
		if !resp.Succeeded {
			continue // assignments changed meanwhile: look again
		}
		if resp.Responses[0].GetResponseDeleteRange().Deleted == 0 {
			return fmt.Errorf("state: policy %s: %w", name, ErrNotFound)
		}
		return nil
	}
}

// Assign assigns an existing policy to an agent (ErrNotFound if the policy
// does not exist). An empty policyName removes the assignment, so the agent
// falls back to the policy named "default".
func (s *State) Assign(ctx context.Context, agentID, policyName string) error {
	if err := checkName("agent id", agentID); err != nil {
		return err
	}
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	defer s.avail.forget(assignmentsDir + agentID)
	ak := key(assignmentsDir + agentID)
	if policyName == "" {
		if _, err := s.cli.Delete(ctx, ak); err != nil {
			return fmt.Errorf("state: unassign %s: %w", agentID, s.etcdErr(ctx, err))
		}
		return nil
	}
	if err := checkName("policy name", policyName); err != nil {
		return err
	}
	pk := key(policiesDir + policyName)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(pk), ">", 0)).
		Then(clientv3.OpPut(ak, policyName)).
		Commit()
	if err != nil {
		return fmt.Errorf("state: assign %s: %w", agentID, s.etcdErr(ctx, err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("state: assign %s: policy %s: %w", agentID, policyName, ErrNotFound)
	}
	return nil
}

// Assignment returns the policy name assigned to an agent, or an error
// wrapping ErrNotFound when it has none (it then gets "default").
func (s *State) Assignment(ctx context.Context, agentID string) (string, error) {
	if err := checkName("agent id", agentID); err != nil {
		return "", err
	}
	b, _, err := s.get(ctx, assignmentsDir+agentID)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// watchedDirs are the directories whose changes can change an agent's
// effective policy.
var watchedDirs = []string{policiesDir, assignmentsDir, registersDir}

// WatchPolicies returns a channel that receives a value whenever anything under
// policies/, assignments/ or registers/ changes. Bursts are coalesced into one
// value (buffer 1), so a slow reader re-reads once. A broken watch (etcd
// restart, compaction) is re-established and reported as a change, since
// something may have been missed. The channel is closed when ctx ends or the
// State is closed.
func (s *State) WatchPolicies(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	notify := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	for _, dir := range watchedDirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watchDir(ctx, dir, notify)
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// watchDir watches one directory until ctx ends, calling notify on changes.
func (s *State) watchDir(ctx context.Context, dir string, notify func()) {
	var next int64 // revision to resume from; 0 = now
	for ctx.Err() == nil {
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if next > 0 {
			opts = append(opts, clientv3.WithRev(next))
		}
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), key(dir), opts...)
		var broken error
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if resp.CompactRevision > 0 || errors.Is(err, rpctypes.ErrCompacted) {
					next = 0 // history gone: restart from now, and say something changed
					notify()
				}
				broken = err
				if s.Available() {
					s.log.Warn().Err(err).Str("dir", dir).Msg("policy watch broken, re-watching")
				}
				break
			}
			if n := len(resp.Events); n > 0 {
				next = resp.Events[n-1].Kv.ModRevision + 1
				notify()
			}
		}
		if ctx.Err() != nil || s.closing.Load() {
			return
		}
		// The watch ended without ctx ending (client closing or leader
		// lost). Through an outage, wait for etcd rather than re-watch and
		// wake every long-poll twice a second: nothing can change meanwhile.
		if unavailable(broken) {
			s.markDown(broken)
		}
		for !s.Available() && ctx.Err() == nil && !s.closing.Load() {
			select {
			case <-ctx.Done():
			case <-time.After(probeEvery):
			}
		}
		notify()
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// PutCheckpoint stores the latest signed checkpoint (opaque bytes).
func (s *State) PutCheckpoint(ctx context.Context, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("state: %w: empty checkpoint", ErrInvalid)
	}
	_, err := s.putIf(ctx, checkpointKey, b, -1)
	return err
}

// DeleteCheckpoint forgets the latest checkpoint: the server does so only
// when the admin accepts, on start, that the event store lost events it
// covered (the loss itself is recorded in the log).
func (s *State) DeleteCheckpoint(ctx context.Context) error {
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	defer s.avail.forget(checkpointKey)
	if _, err := s.cli.Delete(ctx, key(checkpointKey)); err != nil {
		return fmt.Errorf("state: delete checkpoint: %w", s.etcdErr(ctx, err))
	}
	return nil
}

// LatestCheckpoint returns the latest stored checkpoint, or an error wrapping
// ErrNotFound before the first.
func (s *State) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	b, _, err := s.get(ctx, checkpointKey)
	return b, err
}
