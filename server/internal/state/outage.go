package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// etcd outages. When the cluster has lost its quorum (or this server is cut
// off from it) nothing can be written, and a linearizable read cannot be
// answered either. Writes then fail with ErrUnavailable, which the API and
// the web UI answer 503. Reads are answered from the last value this server
// read, for up to CacheTTL: the admin API and the web UI go on showing
// agents, policies, tokens and users, admins' tokens and agents go on
// authenticating. Nothing is served from the cache while etcd answers.

// errRequestTimeout is the cause of opCtx's own deadline.
var errRequestTimeout = errors.New("state: etcd did not answer within the request timeout")

// ErrUnavailable is wrapped by errors of operations that failed because etcd
// could not be reached or had no quorum (no leader, timed out); nothing was
// written. Try again when the cluster is back.
var ErrUnavailable = errors.New("etcd is unavailable (no quorum or not reachable)")

// CacheTTL is how long a value read from etcd may be served instead of it
// while etcd is unavailable. Short, because a value changed on another server
// (a revoked token, a disabled agent) is not seen until etcd is back.
const CacheTTL = 5 * time.Minute

// Probing while etcd is unavailable: how often, and how long each probe
// may take.
const (
	probeEvery   = 500 * time.Millisecond
	probeTimeout = 2 * time.Second
)

// availability is the State's view of etcd's health and its read cache.
type availability struct {
	down    atomic.Bool // a request failed as unavailable and no probe has succeeded since
	probing atomic.Bool
	mu      sync.Mutex
	cache   map[string]cached // "g"+key or "l"+dir ("k" suffix: keys only)
}

type cached struct {
	names []string
	vals  [][]byte
	rev   int64
	at    time.Time
}

// unavailable says whether err means etcd could not answer: our own
// deadline, no leader, a timeout inside etcd, no endpoint to talk to. A
// caller that gave up (context.Canceled) is not an outage.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, clientv3.ErrNoAvailableEndpoints) {
		return true
	}
	var coded interface{ Code() codes.Code } // etcd's rpctypes.EtcdError
	if errors.As(err, &coded) {
		c := coded.Code()
		return c == codes.Unavailable || c == codes.DeadlineExceeded
	}
	if st, ok := status.FromError(err); ok {
		return st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded
	}
	return false
}

// etcdErr wraps err, which a request under ctx (from opCtx or writeCtx)
// returned, with ErrUnavailable when it means an outage, and notes the
// outage so reads go to the cache until a probe succeeds. The caller's own
// deadline or cancellation is not an outage: only ours (opCtx's) is.
func (s *State) etcdErr(ctx context.Context, err error) error {
	if !unavailable(err) || ctx.Err() != nil && !errors.Is(context.Cause(ctx), errRequestTimeout) {
		return err
	}
	s.markDown(err)
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Available reports whether etcd answered the last request or probe.
func (s *State) Available() bool { return !s.avail.down.Load() }

// Reachable asks etcd once, bounded by probeTimeout: nil when the cluster
// has a leader and answers a linearizable read.
func (s *State) Reachable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := s.cli.Get(clientv3.WithRequireLeader(ctx), key(checkpointKey), clientv3.WithCountOnly())
	if err != nil {
		if unavailable(err) || ctx.Err() != nil {
			return fmt.Errorf("state: %w: %w", ErrUnavailable, err)
		}
		return fmt.Errorf("state: probe: %w", err)
	}
	return nil
}

// markDown notes an outage and starts the probe that ends it.
func (s *State) markDown(why error) {
	if s.closing.Load() {
		return
	}
	if !s.avail.down.Swap(true) {
		s.log.Warn().Err(why).Msg("etcd is unavailable: reads are served from this server's cache, writes are refused until it is back")
	}
	if s.avail.probing.Swap(true) {
		return
	}
	go func() {
		defer s.avail.probing.Store(false)
		for !s.closing.Load() {
			time.Sleep(probeEvery)
			if s.Reachable(context.Background()) == nil {
				s.avail.down.Store(false)
				s.log.Warn().Msg("etcd answers again")
				return
			}
		}
	}()
}

// writeCtx is opCtx for a write: it fails at once while etcd is known to
// be unavailable, and asks etcd to refuse rather than wait when its member
// has no leader.
func (s *State) writeCtx(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.avail.down.Load() {
		return nil, nil, fmt.Errorf("state: %w", ErrUnavailable)
	}
	ctx, cancel := opCtx(ctx)
	return clientv3.WithRequireLeader(ctx), cancel, nil
}

func (a *availability) load(k string) (cached, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[k]
	if ok && time.Since(c.at) > CacheTTL {
		delete(a.cache, k)
		return cached{}, false
	}
	return c, ok
}

func (a *availability) store(k string, c cached) {
	c.at = time.Now()
	a.mu.Lock()
	if a.cache == nil {
		a.cache = make(map[string]cached)
	}
	a.cache[k] = c
	a.mu.Unlock()
}

// forget drops what is cached of rel (a key below Prefix, or a directory
// with a trailing "/"): the key itself, anything below it and the listings
// of the directories above it. Called after this server changed it, so an
// outage right after cannot bring the old value back.
func (a *availability) forget(rel string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.cache {
		kind, p := k[:1], strings.TrimSuffix(k[1:], "\x00k")
		if strings.HasPrefix(p, rel) || kind == "l" && strings.HasPrefix(rel, p) {
			delete(a.cache, k)
		}
	}
}

// drop removes the cache entry k.
func (a *availability) drop(k string) {
	a.mu.Lock()
	delete(a.cache, k)
	a.mu.Unlock()
}

func getKey(rel string) string { return "g" + rel }

func listKey(dir string, keysOnly bool) string {
	if keysOnly {
		return "l" + dir + "\x00k"
	}
	return "l" + dir
}
