package state

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// What counts as etcd being unavailable: no leader, etcd's timeouts, gRPC
// Unavailable, our own deadline; not a caller that gave up, nor a refusal.
func TestUnavailableErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{rpctypes.ErrNoLeader, true},
		{fmt.Errorf("state: get x: %w", rpctypes.ErrTimeout), true},
		{status.Error(codes.Unavailable, "connection refused"), true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{rpctypes.ErrPermissionDenied, false},
		{rpctypes.ErrCompacted, false},
		{errors.New("decode"), false},
		{nil, false},
	} {
		if got := unavailable(c.err); got != c.want {
			t.Errorf("unavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A write drops what is cached of the key, below it and the listings above
// it, and nothing else.
func TestCacheForget(t *testing.T) {
	var a availability
	for _, k := range []string{getKey("agents/a1"), getKey("agents/a2"), listKey("agents/", false),
		listKey("policies/", true), getKey("policies/default"), getKey("checkpoint")} {
		a.store(k, cached{vals: [][]byte{[]byte("v")}})
	}
	a.forget("agents/a1")
	for k, want := range map[string]bool{getKey("agents/a1"): false, listKey("agents/", false): false,
		getKey("agents/a2"): true, listKey("policies/", true): true, getKey("policies/default"): true, getKey("checkpoint"): true} {
		if _, ok := a.load(k); ok != want {
			t.Errorf("after forget(agents/a1): %q cached %v, want %v", k, ok, want)
		}
	}
	a.forget("policies/")
	if _, ok := a.load(listKey("policies/", true)); ok {
		t.Error("policies listing kept after forget(policies/)")
	}
	if _, ok := a.load(getKey("policies/default")); ok {
		t.Error("policy kept after forget(policies/)")
	}
}

// The caller's own deadline is not an outage; opCtx's is, and it sends
// reads to the cache and refuses writes at once until a probe succeeds.
func TestOwnTimeoutOnly(t *testing.T) {
	s := &State{log: zerolog.Nop()}
	s.avail.probing.Store(true) // no probe: there is no client here
	caller, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	if err := s.etcdErr(caller, caller.Err()); errors.Is(err, ErrUnavailable) || !s.Available() {
		t.Fatalf("caller's deadline: %v, available %v", err, s.Available())
	}
	ours, cancel := context.WithTimeoutCause(context.Background(), 0, errRequestTimeout)
	defer cancel()
	if err := s.etcdErr(ours, ours.Err()); !errors.Is(err, ErrUnavailable) || s.Available() {
		t.Fatalf("our timeout: %v, available %v", err, s.Available())
	}
	if _, _, err := s.writeCtx(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write while unavailable: %v", err)
	}
	s.avail.store(getKey("users/u"), cached{vals: [][]byte{[]byte(`{}`)}, rev: 7})
	if b, rev, err := s.get(context.Background(), "users/u"); err != nil || string(b) != `{}` || rev != 7 {
		t.Fatalf("cached read while unavailable: %q %d %v", b, rev, err)
	}
	if _, _, err := s.get(context.Background(), "users/v"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("uncached read while unavailable: %v", err)
	}
}

// A key deleted elsewhere is dropped from the cache when a read finds it
// gone, so an outage right after does not bring it back; the rest of the
// cache stays. The read used to scan the whole cache (forget), which made
// reading absent keys quadratic in the agents: with 10,000 PCs, 10% of the
// server's CPU went to the compliance inventory's absent assignments.
func TestReadOfDeletedKeyDropsOnlyItsCopy(t *testing.T) {
	s := openTest(t)
	ctx := ctxT(t)
	for _, k := range []string{"users/u1", "users/u2"} {
		if _, err := s.cli.Put(ctx, key(k), `{}`); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	s.avail.store(listKey("users/", false), cached{vals: [][]byte{[]byte(`{}`), []byte(`{}`)}})
	if _, err := s.cli.Delete(ctx, key("users/u1")); err != nil { // another server
		t.Fatal(err)
	}
	if _, _, err := s.get(ctx, "users/u1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	s.avail.probing.Store(true) // no probe: the outage lasts
	s.avail.down.Store(true)
	if b, _, err := s.get(ctx, "users/u1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("deleted key during an outage: %q %v, want unavailable", b, err)
	}
	if _, _, err := s.get(ctx, "users/u2"); err != nil {
		t.Fatalf("other key during an outage: %v", err)
	}
	if _, ok := s.avail.load(listKey("users/", false)); !ok {
		t.Fatal("listing dropped by a read")
	}
}
