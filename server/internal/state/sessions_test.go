package state

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Sessions are shared through etcd: found by id, not stored under it, ended
// by logout or for all of a user's sessions, and by their lease when idle.
func TestSessions(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	if err := s.CreateSession(ctx, "id-alice-1", Session{Name: "alice", Role: "admin", CSRF: "c1", Created: now}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, "id-alice-2", Session{Name: "alice", Role: "admin", CSRF: "c2", Created: now}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, "id-bob", Session{Name: "bob", Role: "auditor", CSRF: "c3", Created: now}, time.Hour); err != nil {
		t.Fatal(err)
	}
	got, lease, err := s.SessionByID(ctx, "id-alice-1")
	if err != nil || got.Name != "alice" || got.CSRF != "c1" || !got.Created.Equal(now) || lease == 0 {
		t.Fatalf("session: %+v lease %d %v", got, lease, err)
	}
	if err := s.TouchSession(ctx, lease); err != nil {
		t.Fatal(err)
	}
	resp, err := s.cli.Get(ctx, key(sessionsDir), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key), "id-") {
			t.Fatalf("a session id is stored as a key: %s", kv.Key)
		}
	}
	if err := s.DeleteUserSessions(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"id-alice-1", "id-alice-2"} {
		if _, _, err := s.SessionByID(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s after the user's sessions ended: %v", id, err)
		}
	}
	if _, _, err := s.SessionByID(ctx, "id-bob"); err != nil {
		t.Fatalf("another user's session ended too: %v", err)
	}
	if err := s.DeleteSession(ctx, "id-bob"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SessionByID(ctx, "id-bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after logout: %v", err)
	}
	// Idle: the lease ends it.
	if err := s.CreateSession(ctx, "id-idle", Session{Name: "carol", Role: "manager", Created: now}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, _, err := s.SessionByID(ctx, "id-idle"); errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an idle session did not end with its lease")
		}
	}
	if err := s.CreateSession(ctx, "", Session{Name: "x"}, time.Hour); !errors.Is(err, ErrInvalid) {
		t.Fatalf("session without an id: %v", err)
	}
}

// Servers counting failures of one key at once lose none (compare and
// swap), the count keeps the window's newest, and a reset forgets it.
func TestLoginFailuresShared(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Now()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.AddLoginFailure(ctx, "user\x00alice\x0010.0.0.1", now.Add(time.Duration(i)*time.Millisecond), 15*time.Minute, 20); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	ts, err := s.LoginFailures(ctx, "user\x00alice\x0010.0.0.1")
	if err != nil || len(ts) != 8 {
		t.Fatalf("%d failures counted, %v; want 8", len(ts), err)
	}
	// Old ones fall out of the window; at most keep are kept.
	if err := s.AddLoginFailure(ctx, "user\x00alice\x0010.0.0.1", now.Add(20*time.Minute), 15*time.Minute, 20); err != nil {
		t.Fatal(err)
	}
	if ts, _ := s.LoginFailures(ctx, "user\x00alice\x0010.0.0.1"); len(ts) != 1 {
		t.Fatalf("after the window: %d", len(ts))
	}
	for i := range 30 {
		if err := s.AddLoginFailure(ctx, "ip\x0010.0.0.2", now.Add(time.Duration(i)*time.Second), 15*time.Minute, 20); err != nil {
			t.Fatal(err)
		}
	}
	if ts, _ := s.LoginFailures(ctx, "ip\x0010.0.0.2"); len(ts) != 20 || !ts[19].Equal(now.Add(29*time.Second)) {
		t.Fatalf("kept %d", len(ts))
	}
	if err := s.ResetLoginFailures(ctx, "ip\x0010.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if ts, _ := s.LoginFailures(ctx, "ip\x0010.0.0.2"); len(ts) != 0 {
		t.Fatalf("after reset: %d", len(ts))
	}
}
