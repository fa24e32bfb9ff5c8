package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Web sessions and failed-login counts live in etcd so that every server of
// a site sees the same ones: a session opened on one server works on the
// others and outlives the server it was opened on, and an attacker cannot
// multiply the login attempts allowed by spreading them over the servers.
// Keys are SHA-256 of the secret (session id) or of the counted key (user
// name and address), so etcd holds no usable session id.
const (
	sessionsDir   = "web-sessions/"
	loginFailsDir = "login-failures/"
)

// Session is a logged-in web user.
type Session struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
}

func hashedKey(dir, secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return dir + hex.EncodeToString(sum[:])
}

// CreateSession stores a new session under id, kept while it is touched at
// least every idle (TouchSession).
func (s *State) CreateSession(ctx context.Context, id string, sess Session, idle time.Duration) error {
	if id == "" || sess.Name == "" || idle < time.Second {
		return fmt.Errorf("state: %w: session needs an id, a user and an idle time", ErrInvalid)
	}
	b, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("state: session: %w", err)
	}
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	lease, err := s.cli.Grant(ctx, int64(idle/time.Second))
	if err != nil {
		return fmt.Errorf("state: session lease: %w", s.etcdErr(ctx, err))
	}
	if _, err := s.cli.Put(ctx, key(hashedKey(sessionsDir, id)), string(b), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("state: put session: %w", s.etcdErr(ctx, err))
	}
	return nil
}

// SessionByID returns the session stored under id, or ErrNotFound when it
// never was, ended or was dropped. lease is what TouchSession renews.
func (s *State) SessionByID(ctx context.Context, id string) (sess Session, lease int64, err error) {
	if s.avail.down.Load() {
		return Session{}, 0, fmt.Errorf("state: session: %w", ErrUnavailable)
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(clientv3.WithRequireLeader(ctx), key(hashedKey(sessionsDir, id)))
	if err != nil {
		return Session{}, 0, fmt.Errorf("state: session: %w", s.etcdErr(ctx, err))
	}
	if len(resp.Kvs) == 0 {
		return Session{}, 0, fmt.Errorf("state: session: %w", ErrNotFound)
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &sess); err != nil {
		return Session{}, 0, fmt.Errorf("state: session: %w", err)
	}
	return sess, resp.Kvs[0].Lease, nil
}

// TouchSession restarts a session's idle time.
func (s *State) TouchSession(ctx context.Context, lease int64) error {
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.cli.KeepAliveOnce(ctx, clientv3.LeaseID(lease)); err != nil {
		return fmt.Errorf("state: touch session: %w", s.etcdErr(ctx, err))
	}
	return nil
}

// DeleteSession ends the session under id (logout).
func (s *State) DeleteSession(ctx context.Context, id string) error {
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := s.cli.Delete(ctx, key(hashedKey(sessionsDir, id)), clientv3.WithPrevKV())
	if err != nil {
		return fmt.Errorf("state: delete session: %w", s.etcdErr(ctx, err))
	}
	for _, kv := range resp.PrevKvs {
		_, _ = s.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)) // its lease has nothing else
	}
	return nil
}

// DeleteUserSessions ends every session of a user, on every server (role
// change, disable, password reset).
func (s *State) DeleteUserSessions(ctx context.Context, name string) error {
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, key(sessionsDir), clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("state: list sessions: %w", s.etcdErr(ctx, err))
	}
	for _, kv := range resp.Kvs {
		var sess Session
		if json.Unmarshal(kv.Value, &sess) != nil || sess.Name != name {
			continue
		}
		if _, err := s.cli.Delete(ctx, string(kv.Key)); err != nil {
			return fmt.Errorf("state: delete session: %w", s.etcdErr(ctx, err))
		}
		_, _ = s.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease))
	}
	return nil
}

// LoginFailures returns the times of the failed logins counted under k
// (oldest first), as every server of the site counted them.
func (s *State) LoginFailures(ctx context.Context, k string) ([]time.Time, error) {
	ts, _, err := s.loginFailures(ctx, k)
	return ts, err
}

func (s *State) loginFailures(ctx context.Context, k string) ([]time.Time, int64, error) {
	if s.avail.down.Load() {
		return nil, 0, fmt.Errorf("state: login failures: %w", ErrUnavailable)
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(clientv3.WithRequireLeader(ctx), key(hashedKey(loginFailsDir, k)))
	if err != nil {
		return nil, 0, fmt.Errorf("state: login failures: %w", s.etcdErr(ctx, err))
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	var ts []time.Time
	if err := json.Unmarshal(resp.Kvs[0].Value, &ts); err != nil {
		return nil, 0, fmt.Errorf("state: login failures: %w", err)
	}
	return ts, resp.Kvs[0].ModRevision, nil
}

// AddLoginFailure counts a failed login at t under k, keeping those of the
// last window and at most keep of them; the key ends a window after the
// last failure.
func (s *State) AddLoginFailure(ctx context.Context, k string, t time.Time, window time.Duration, keep int) error {
	for range 10 { // compare-and-swap: servers may count the same key at once
		ts, rev, err := s.loginFailures(ctx, k)
		if err != nil {
			return err
		}
		i := 0
		for i < len(ts) && t.Sub(ts[i]) > window {
			i++
		}
		ts = append(ts[i:], t)
		if len(ts) > keep {
			ts = ts[len(ts)-keep:]
		}
		b, _ := json.Marshal(ts)
		lease, err := s.failLease(ctx, window)
		if err != nil {
			return err
		}
		wctx, cancel, err := s.writeCtx(ctx)
		if err != nil {
			return err
		}
		k := key(hashedKey(loginFailsDir, k))
		cmp := clientv3.Compare(clientv3.ModRevision(k), "=", rev)
		resp, err := s.cli.Txn(wctx).If(cmp).Then(clientv3.OpPut(k, string(b), clientv3.WithLease(lease))).Commit()
		err = s.etcdErr(wctx, err)
		cancel()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) { // etcd lost it (restored, replaced)
			s.failLeases.mu.Lock()
			s.failLeases.id = 0
			s.failLeases.mu.Unlock()
			continue
		}
		if err != nil {
			return fmt.Errorf("state: count login failure: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("state: count login failure: %w", ErrConflict)
}

// ResetLoginFailures forgets the failures under k (a successful login).
func (s *State) ResetLoginFailures(ctx context.Context, k string) error {
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.cli.Delete(ctx, key(hashedKey(loginFailsDir, k))); err != nil {
		return fmt.Errorf("state: reset login failures: %w", s.etcdErr(ctx, err))
	}
	return nil
}

// failLeases shares one lease among the failure counts written in the same
// window, so a spray of failures makes a few leases, not one per failure:
// a count lives between one and two windows after its last failure.
type windowLease struct {
	mu    sync.Mutex
	start time.Time
	id    clientv3.LeaseID
}

func (s *State) failLease(ctx context.Context, window time.Duration) (clientv3.LeaseID, error) {
	l := &s.failLeases
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.id != 0 && now.Sub(l.start) < window {
		return l.id, nil
	}
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	lease, err := s.cli.Grant(ctx, int64(2*window/time.Second))
	if err != nil {
		return 0, fmt.Errorf("state: login failure lease: %w", s.etcdErr(ctx, err))
	}
	l.start, l.id = now, lease.ID
	return lease.ID, nil
}
