// Package state is the Mamori server's control-plane store on etcd: policies,
// assignments, agents' static records, hashed enrollment and API tokens, users
// and the latest signed checkpoint. It runs an embedded single-node etcd on unix
// sockets in the data directory, or connects to an external cluster; both use
// the same code path once connected. The key layout is in README.md.
package state

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Prefix is the etcd key prefix under which all Mamori keys live.
const Prefix = "/mamori/"

// Key prefixes below Prefix.
const (
	enrollTokensDir = "enroll-tokens/"
	apiTokensDir    = "api-tokens/"
	usersDir        = "users/"
	agentsDir       = "agents/"
	policiesDir     = "policies/"
	assignmentsDir  = "assignments/"
	registersDir    = "registers/"
	checkpointKey   = "checkpoint"
)

// Limits on stored values; etcd refuses requests above 1.5 MiB by default.
const (
	maxValueBytes = 1 << 20
	maxNameLen    = 128
)

// requestTimeout bounds each etcd round trip when the caller's context has no deadline.
const requestTimeout = 10 * time.Second

var (
	// ErrNotFound is returned when a key, token, user or agent does not exist.
	ErrNotFound = errors.New("state: not found")
	// ErrConflict is returned when an optimistic write lost against a concurrent change.
	ErrConflict = errors.New("state: conflict")
	// ErrTokenInvalid is returned for an unknown, expired or used-up enrollment token.
	ErrTokenInvalid = errors.New("state: enrollment token invalid")
	// ErrBadCredentials is returned by CheckPassword for an unknown user or a wrong password alike.
	ErrBadCredentials = errors.New("state: bad user name or password")
	// ErrInvalid is wrapped by errors for bad input (names, roles, sizes); nothing is changed.
	ErrInvalid = errors.New("state: invalid input")
)

// Config says where the control plane lives.
type Config struct {
	// DataDir holds the embedded etcd in DataDir/etcd. Unused when Endpoints is set.
	DataDir string
	// Endpoints of an external etcd cluster (e.g. "https://10.0.0.5:2379",
	// "unix:///run/etcd.sock"). Empty means embedded single node.
	Endpoints []string
	// TLS, when set, is the client side of TLS to an external cluster: the
	// CA that signed etcd's certificates and, for client certificate auth,
	// this server's certificate (see ClientTLS).
	TLS *tls.Config
	// Username and Password log in to an external cluster with etcd's
	// user/password auth.
	Username, Password string
	// Log receives the store's and etcd's warnings and errors.
	Log zerolog.Logger

	forceTCP bool // tests: take the loopback TCP fallback even where unix sockets work
}

// State is an open control-plane store. It is safe for concurrent use.
type State struct {
	cli      *clientv3.Client
	etcd     *embed.Etcd // nil for an external cluster
	sockDir  string      // short socket dir to remove on Close, if one was made
	log      zerolog.Logger
	baseLog  zerolog.Logger
	closing  atomic.Bool // set when Close starts, to quiet etcd's shutdown chatter
	now      func() time.Time
	endpoint string // client endpoint of the embedded etcd
	avail    availability
	// failLeases is the lease of this window's login-failure counts.
	failLeases windowLease
}

// Open starts the embedded etcd (or connects to cfg.Endpoints) and returns a
// ready store. It fails if etcd does not answer before ctx ends.
func Open(ctx context.Context, cfg Config) (*State, error) {
	s := &State{log: cfg.Log.With().Str("component", "state").Logger(), baseLog: cfg.Log, now: time.Now}
	endpoints := cfg.Endpoints
	if len(endpoints) == 0 && (cfg.TLS != nil || cfg.Username != "" || cfg.Password != "") {
		return nil, fmt.Errorf("state: %w: etcd TLS and user options are for an external cluster: give its endpoints", ErrInvalid)
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, fmt.Errorf("state: %w: etcd user and password go together", ErrInvalid)
	}
	if len(endpoints) == 0 {
		if cfg.DataDir == "" {
			return nil, fmt.Errorf("state: %w: no data dir and no etcd endpoints", ErrInvalid)
		}
		if err := s.startEmbedded(ctx, cfg.DataDir, cfg.forceTCP); err != nil {
			return nil, err
		}
		endpoints = []string{s.endpoint}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		// A member that hangs (a frozen VM, a dropped route) keeps its TCP
		// connection open: without keepalive pings the client waited on it
		// until the writer's lease ran out, though the other two members
		// had quorum. 5 s is etcd's default --grpc-keepalive-min-time.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		PermitWithoutStream:  true,
		// Room for the largest transaction the embedded node accepts.
		MaxCallSendMsgSize: EmbeddedMaxRequestBytes + 1<<20,
		Context:            context.WithoutCancel(ctx),
		Logger:             newZapLogger(cfg.Log, &s.closing),
		TLS:                cfg.TLS,
		Username:           cfg.Username,
		Password:           cfg.Password,
	})
	if err != nil {
		s.stopEmbedded()
		return nil, fmt.Errorf("state: connect etcd %v: %w", endpoints, err)
	}
	s.cli = cli
	// A first round trip proves the cluster answers (clientv3.New dials lazily).
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := cli.Get(pctx, Prefix+checkpointKey, clientv3.WithCountOnly()); err != nil {
		_ = s.Close()
		if why := tlsProbe(endpoints, cfg.TLS); why != nil {
			return nil, fmt.Errorf("state: etcd %v refused this server: %w", endpoints, why)
		}
		return nil, fmt.Errorf("state: etcd %v not answering: %w", endpoints, err)
	}
	return s, nil
}

// Close closes the client and stops the embedded etcd, if any.
func (s *State) Close() error {
	s.closing.Store(true)
	var err error
	if s.cli != nil {
		if cerr := s.cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) {
			err = fmt.Errorf("state: close client: %w", cerr)
		}
	}
	s.stopEmbedded()
	return err
}

// Client returns the underlying etcd client (for leader election and such).
func (s *State) Client() *clientv3.Client { return s.cli }

// key builds an absolute key from a key below Prefix.
func key(rel string) string { return Prefix + rel }

// opCtx gives a round trip a deadline when the caller's context has none.
func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, requestTimeout, errRequestTimeout)
}

// checkName validates one key segment (policy name, agent id, user name).
func checkName(kind, name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("state: %w: %s must be 1..%d bytes", ErrInvalid, kind, maxNameLen)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '-' || r == '_' || r == '.' || r == '@'
		if !ok {
			return fmt.Errorf("state: %w: %s %q may hold only letters, digits and - _ . @", ErrInvalid, kind, name)
		}
	}
	if name == "." || name == ".." {
		return fmt.Errorf("state: %w: %s %q", ErrInvalid, kind, name)
	}
	return nil
}

// checkKey validates a relative key given to GetJSON/PutJSON: segments
// separated by "/", each a valid name.
func checkKey(rel string) error {
	if rel == "" || len(rel) > 512 {
		return fmt.Errorf("state: %w: key must be 1..512 bytes", ErrInvalid)
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if err := checkName("key segment", seg); err != nil {
			return err
		}
	}
	return nil
}

// GetJSON decodes the JSON value at key (relative to Prefix, e.g.
// "registers/pi/42") into v and returns its mod revision, for a later PutJSON.
func (s *State) GetJSON(ctx context.Context, key string, v any) (rev int64, err error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	b, rev, err := s.get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return 0, fmt.Errorf("state: decode %s: %w", key, err)
	}
	return rev, nil
}

// PutJSON stores v as JSON at key (relative to Prefix). ifRev -1 writes
// unconditionally, 0 only if the key does not exist, n>0 only if the key's mod
// revision is still n; otherwise it returns ErrConflict and writes nothing.
// It returns the key's new mod revision.
func (s *State) PutJSON(ctx context.Context, key string, v any, ifRev int64) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if ifRev < -1 {
		return 0, fmt.Errorf("state: %w: ifRev %d", ErrInvalid, ifRev)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("state: encode %s: %w", key, err)
	}
	return s.putIf(ctx, key, b, ifRev)
}

// get reads one key below Prefix; while etcd is unavailable, from the
// cache (see outage.go).
func (s *State) get(ctx context.Context, rel string) ([]byte, int64, error) {
	ck := getKey(rel)
	if s.avail.down.Load() {
		if c, ok := s.avail.load(ck); ok {
			return c.vals[0], c.rev, nil
		}
		return nil, 0, fmt.Errorf("state: get %s: %w", rel, ErrUnavailable)
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(clientv3.WithRequireLeader(ctx), key(rel))
	if err != nil {
		err = s.etcdErr(ctx, err)
		if c, ok := s.avail.load(ck); ok && errors.Is(err, ErrUnavailable) {
			return c.vals[0], c.rev, nil
		}
		return nil, 0, fmt.Errorf("state: get %s: %w", rel, err)
	}
	if len(resp.Kvs) == 0 {
		// Gone (deleted elsewhere): an outage must not bring back a copy.
		// Only this key's: forget scans the whole cache, and absent keys
		// are read often (assignments of agents without one).
		s.avail.drop(ck)
		return nil, 0, fmt.Errorf("state: %s: %w", rel, ErrNotFound)
	}
	s.avail.store(ck, cached{vals: [][]byte{resp.Kvs[0].Value}, rev: resp.Kvs[0].ModRevision})
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// putIf writes b at rel under the ifRev rule of PutJSON.
func (s *State) putIf(ctx context.Context, rel string, b []byte, ifRev int64) (int64, error) {
	if len(b) > maxValueBytes {
		return 0, fmt.Errorf("state: %w: value for %s is %d bytes, limit %d", ErrInvalid, rel, len(b), maxValueBytes)
	}
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	defer s.avail.forget(rel)
	k := key(rel)
	put := clientv3.OpPut(k, string(b))
	if ifRev == -1 {
		resp, err := s.cli.Put(ctx, k, string(b))
		if err != nil {
			return 0, fmt.Errorf("state: put %s: %w", rel, s.etcdErr(ctx, err))
		}
		return resp.Header.Revision, nil
	}
	var cmp clientv3.Cmp
	if ifRev == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
	} else {
		cmp = clientv3.Compare(clientv3.ModRevision(k), "=", ifRev)
	}
	resp, err := s.cli.Txn(ctx).If(cmp).Then(put).Commit()
	if err != nil {
		return 0, fmt.Errorf("state: put %s: %w", rel, s.etcdErr(ctx, err))
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("state: put %s at revision %d: %w", rel, ifRev, ErrConflict)
	}
	return resp.Header.Revision, nil
}

// list returns the values under a directory below Prefix, sorted by key;
// while etcd is unavailable, from the cache (see outage.go).
func (s *State) list(ctx context.Context, dir string, keysOnly bool) ([]string, [][]byte, error) {
	ck := listKey(dir, keysOnly)
	if s.avail.down.Load() {
		if c, ok := s.avail.load(ck); ok {
			return c.names, c.vals, nil
		}
		return nil, nil, fmt.Errorf("state: list %s: %w", dir, ErrUnavailable)
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if keysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	resp, err := s.cli.Get(clientv3.WithRequireLeader(ctx), key(dir), opts...)
	if err != nil {
		err = s.etcdErr(ctx, err)
		if c, ok := s.avail.load(ck); ok && errors.Is(err, ErrUnavailable) {
			return c.names, c.vals, nil
		}
		return nil, nil, fmt.Errorf("state: list %s: %w", dir, err)
	}
	names := make([]string, 0, len(resp.Kvs))
	vals := make([][]byte, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		names = append(names, strings.TrimPrefix(string(kv.Key), key(dir)))
		vals = append(vals, kv.Value)
	}
	s.avail.store(ck, cached{names: names, vals: vals})
	return names, vals, nil
}

// ensureDir creates dir with mode 0700.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return os.Chmod(filepath.Clean(dir), 0o700)
}
