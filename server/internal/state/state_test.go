package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func testLog(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openDir(t *testing.T, dir string) *State {
	t.Helper()
	s, err := Open(ctxT(t), Config{DataDir: dir, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openTest(t *testing.T) *State {
	t.Helper()
	s := openDir(t, t.TempDir())
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// unixSockets reports whether this OS can make unix sockets (Wine cannot).
func unixSockets(t *testing.T) bool {
	return probeUnix(filepath.Join(t.TempDir(), "p.sock")) == nil
}

// fakeNow lets a test move the store's clock.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time      { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) add(d time.Duration) { f.mu.Lock(); f.t = f.t.Add(d); f.mu.Unlock() }

func TestTwoEmbeddedStoresDoNotClash(t *testing.T) {
	ctx := ctxT(t)
	a, b := openTest(t), openTest(t)
	prefix := "unix://"
	if !unixSockets(t) {
		prefix = "http://127.0.0.1:"
	}
	if a.Endpoint() == b.Endpoint() || !strings.HasPrefix(a.Endpoint(), prefix) {
		t.Fatalf("endpoints %q %q", a.Endpoint(), b.Endpoint())
	}
	if err := a.PutPolicy(ctx, "default", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := b.PutPolicy(ctx, "default", []byte("b")); err != nil {
		t.Fatal(err)
	}
	ya, _, err := a.GetPolicy(ctx, "default")
	if err != nil || string(ya) != "a" {
		t.Fatalf("a: %q %v", ya, err)
	}
	yb, _, err := b.GetPolicy(ctx, "default")
	if err != nil || string(yb) != "b" {
		t.Fatalf("b: %q %v", yb, err)
	}
}

func TestShortDataDirKeepsSocketsInside(t *testing.T) {
	if !unixSockets(t) {
		t.Skip("no unix sockets here")
	}
	dir, err := os.MkdirTemp("", "ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := openDir(t, dir)
	defer s.Close()
	want := "unix://" + filepath.ToSlash(filepath.Join(dir, "etcd", "client.sock"))
	if s.Endpoint() != want {
		t.Fatalf("endpoint %q, want %q", s.Endpoint(), want)
	}
	if s.sockDir != "" {
		t.Fatalf("made a fallback socket dir %s for a short path", s.sockDir)
	}
}

func TestLongDataDirFallsBackToShortSocketDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 90))
	s := openDir(t, dir)
	sockDir := s.sockDir
	if sockDir == "" {
		t.Fatal("no fallback socket dir for a long data dir")
	}
	fi, err := os.Stat(sockDir)
	if err != nil || runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir %s: %v %v", sockDir, fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd", "member")); err != nil {
		t.Fatalf("etcd data not in data dir: %v", err)
	}
	if err := s.PutCheckpoint(ctxT(t), []byte("cp")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sockDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket dir left behind: %v", err)
	}
	// Reopened, the node gets another socket dir (so other peer URLs) and
	// must still start on its data.
	s2 := openDir(t, dir)
	defer s2.Close()
	if s2.sockDir == sockDir {
		t.Fatal("same socket dir reused")
	}
	if cp, err := s2.LatestCheckpoint(ctxT(t)); err != nil || string(cp) != "cp" {
		t.Fatalf("after reopen: %q %v", cp, err)
	}
}

func TestOpenNeedsDataDirOrEndpoints(t *testing.T) {
	if _, err := Open(ctxT(t), Config{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err %v", err)
	}
}

func TestEnrollTokenUsesAndExpiry(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	clk := &fakeNow{t: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	s.now = clk.now

	plain, tok, err := s.CreateEnrollToken(ctx, time.Hour, 2, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) < 43 || tok.UsesLeft != 2 || tok.CreatedBy != "admin" || !tok.Expires.Equal(clk.t.Add(time.Hour)) {
		t.Fatalf("token %q %+v", plain, tok)
	}
	// Only the hash is stored: the plaintext appears nowhere in etcd.
	resp, err := s.Client().Get(ctx, Prefix, clientWithPrefix()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key), plain) || strings.Contains(string(kv.Value), plain) {
			t.Fatalf("plaintext stored in %s", kv.Key)
		}
	}

	got, err := s.ConsumeEnrollToken(ctx, plain)
	if err != nil || got.UsesLeft != 1 || got.ID != tok.ID {
		t.Fatalf("first use: %+v %v", got, err)
	}
	if _, err := s.ConsumeEnrollToken(ctx, plain); err != nil {
		t.Fatalf("second use: %v", err)
	}
	if _, err := s.ConsumeEnrollToken(ctx, plain); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("third use: %v", err)
	}

	plain2, _, err := s.CreateEnrollToken(ctx, time.Minute, 5, "admin")
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute)
	_, rev0, err := s.get(ctx, enrollTokensDir+tokenHash(plain2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeEnrollToken(ctx, plain2); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("expired use: %v", err)
	}
	_, rev1, err := s.get(ctx, enrollTokensDir+tokenHash(plain2))
	if err != nil || rev1 != rev0 {
		t.Fatalf("expired consume changed the record: rev %d -> %d (%v)", rev0, rev1, err)
	}

	for _, bad := range []string{"", "short", plain + "x", strings.Repeat("A", 43), "has space in it and is long enough"} {
		if _, err := s.ConsumeEnrollToken(ctx, bad); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("token %q: %v", bad, err)
		}
	}
	if _, _, err := s.CreateEnrollToken(ctx, 0, 1, "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ttl 0: %v", err)
	}
	if _, _, err := s.CreateEnrollToken(ctx, time.Hour, 0, "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("uses 0: %v", err)
	}

	list, err := s.ListEnrollTokens(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list %+v %v", list, err)
	}
	if err := s.RevokeEnrollToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeEnrollToken(ctx, tok.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	if err := s.RevokeEnrollToken(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty revoke: %v", err)
	}
	if list, _ := s.ListEnrollTokens(ctx); len(list) != 1 {
		t.Fatalf("after revoke: %+v", list)
	}
}

func TestConsumeEnrollTokenConcurrent(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	for _, uses := range []int{1, 3} {
		plain, _, err := s.CreateEnrollToken(ctx, time.Hour, uses, "admin")
		if err != nil {
			t.Fatal(err)
		}
		var ok, invalid atomic.Int32
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.ConsumeEnrollToken(ctx, plain)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrTokenInvalid):
					invalid.Add(1)
				default:
					t.Errorf("consume: %v", err)
				}
			}()
		}
		wg.Wait()
		if int(ok.Load()) != uses || int(invalid.Load()) != 10-uses {
			t.Fatalf("uses %d: %d succeeded, %d invalid", uses, ok.Load(), invalid.Load())
		}
	}
}

func TestEnsureEnrollTokenIsIdempotent(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	plain, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureEnrollToken(ctx, plain, time.Hour, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeEnrollToken(ctx, plain); err != nil {
		t.Fatal(err)
	}
	// A restart ensures the same token again: the use already made must stay.
	if err := s.EnsureEnrollToken(ctx, plain, time.Hour, 2); err != nil {
		t.Fatal(err)
	}
	got, err := s.ConsumeEnrollToken(ctx, plain)
	if err != nil || got.UsesLeft != 0 {
		t.Fatalf("%+v %v", got, err)
	}
	if err := s.EnsureEnrollToken(ctx, "tooshort", time.Hour, 1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short plaintext: %v", err)
	}
}

func TestAPITokens(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	plain, tok, err := s.CreateAPIToken(ctx, "ci", RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.LookupAPIToken(ctx, plain)
	if err != nil || got != tok || got.Role != RoleAuditor || got.Name != "ci" {
		t.Fatalf("%+v %v", got, err)
	}
	other, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupAPIToken(ctx, other); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := s.LookupAPIToken(ctx, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty token: %v", err)
	}
	if _, _, err := s.CreateAPIToken(ctx, "x", "root"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad role: %v", err)
	}
	boot, _ := NewToken()
	if err := s.EnsureAPIToken(ctx, boot, "bootstrap", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureAPIToken(ctx, boot, "renamed", RoleManager); err != nil {
		t.Fatal(err)
	}
	got, err = s.LookupAPIToken(ctx, boot)
	if err != nil || got.Name != "bootstrap" || got.Role != RoleAdmin {
		t.Fatalf("ensure changed an existing token: %+v %v", got, err)
	}
}

func TestUsers(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	if err := s.EnsureUser(ctx, "admin", RoleAdmin, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	u, err := s.CheckPassword(ctx, "admin", "correct horse battery")
	if err != nil || u.Role != RoleAdmin || u.Name != "admin" {
		t.Fatalf("%+v %v", u, err)
	}
	if string(u.PasswordHash) == "correct horse battery" || !strings.HasPrefix(string(u.PasswordHash), "$2") {
		t.Fatalf("password not bcrypt-hashed: %q", u.PasswordHash)
	}
	if _, err := s.CheckPassword(ctx, "admin", "wrong horse battery"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := s.CheckPassword(ctx, "nobody", "correct horse battery"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	// Ensure again with another password must not reset the existing one.
	if err := s.EnsureUser(ctx, "admin", RoleAdmin, "another password!"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(ctx, "admin", "correct horse battery"); err != nil {
		t.Fatalf("password reset by EnsureUser: %v", err)
	}
	for _, c := range []struct{ name, role, pw string }{
		{"", RoleAdmin, "long enough password"},
		{"a/b", RoleAdmin, "long enough password"},
		{"bob", "root", "long enough password"},
		{"bob", RoleAdmin, "short"},
	} {
		if err := s.EnsureUser(ctx, c.name, c.role, c.pw); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if _, err := s.CheckPassword(ctx, "bob", "long enough password"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("bad input created a user: %v", err)
	}
}

func TestAgents(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	enrolled := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"ag-b", "ag-a"} {
		a := Agent{ID: id, Hostname: "pc-" + id, OS: "windows", Arch: "amd64", OSVersion: "10.0.19045",
			Department: "総務", CertSerial: "01ab", Enrolled: enrolled}
		if err := s.PutAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.GetAgent(ctx, "ag-a")
	if err != nil || a.Hostname != "pc-ag-a" || a.Department != "総務" || !a.Enrolled.Equal(enrolled) {
		t.Fatalf("%+v %v", a, err)
	}
	if _, err := s.GetAgent(ctx, "ag-zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing agent: %v", err)
	}
	list, err := s.ListAgents(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "ag-a" || list[1].ID != "ag-b" {
		t.Fatalf("%+v %v", list, err)
	}
	if err := s.PutAgent(ctx, Agent{ID: "../x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad id: %v", err)
	}
	// The inventory's OS version replaces only the version: a disable stays.
	if _, err := s.SetAgentDisabled(ctx, "ag-b", true, "lost"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAgentOSVersion(ctx, "ag-b", "Microsoft Windows 11 Pro 10.0.22631"); err != nil {
		t.Fatal(err)
	}
	if a, err := s.GetAgent(ctx, "ag-b"); err != nil || a.OSVersion != "Microsoft Windows 11 Pro 10.0.22631" ||
		!a.Disabled || a.CertSerial != "01ab" {
		t.Fatalf("after SetAgentOSVersion: %+v %v", a, err)
	}
	if err := s.SetAgentOSVersion(ctx, "ag-zz", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OS version of a missing agent: %v", err)
	}
}

func TestPoliciesAssignmentsCheckpoint(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	if err := s.Assign(ctx, "ag-1", "strict"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("assign to missing policy: %v", err)
	}
	if _, err := s.Assignment(ctx, "ag-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("assignment after failed assign: %v", err)
	}
	if err := s.PutPolicy(ctx, "strict", []byte("name: strict\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPolicy(ctx, "default", []byte("name: default\n")); err != nil {
		t.Fatal(err)
	}
	_, rev1, err := s.GetPolicy(ctx, "strict")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutPolicy(ctx, "strict", []byte("name: strict\n# v2\n")); err != nil {
		t.Fatal(err)
	}
	y, rev2, err := s.GetPolicy(ctx, "strict")
	if err != nil || rev2 <= rev1 || !strings.Contains(string(y), "v2") {
		t.Fatalf("%q %d %d %v", y, rev1, rev2, err)
	}
	names, err := s.ListPolicies(ctx)
	if err != nil || strings.Join(names, ",") != "default,strict" {
		t.Fatalf("%v %v", names, err)
	}
	if err := s.Assign(ctx, "ag-1", "strict"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Assignment(ctx, "ag-1"); err != nil || p != "strict" {
		t.Fatalf("%q %v", p, err)
	}
	if err := s.DeletePolicy(ctx, "strict"); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete assigned policy: %v", err)
	}
	if err := s.Assign(ctx, "ag-1", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePolicy(ctx, "strict"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GetPolicy(ctx, "strict"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted policy: %v", err)
	}
	if err := s.PutPolicy(ctx, "bad name", []byte("x")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if err := s.PutPolicy(ctx, "big", make([]byte, maxValueBytes+1)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized: %v", err)
	}

	if _, err := s.LatestCheckpoint(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no checkpoint yet: %v", err)
	}
	for _, cp := range []string{"cp1", "cp2"} {
		if err := s.PutCheckpoint(ctx, []byte(cp)); err != nil {
			t.Fatal(err)
		}
	}
	if cp, err := s.LatestCheckpoint(ctx); err != nil || string(cp) != "cp2" {
		t.Fatalf("%q %v", cp, err)
	}
}

func TestJSONOptimisticConcurrency(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	type rec struct{ N int }
	rev, err := s.PutJSON(ctx, "registers/media/1", rec{1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutJSON(ctx, "registers/media/1", rec{9}, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("create over existing: %v", err)
	}
	var r rec
	got, err := s.GetJSON(ctx, "registers/media/1", &r)
	if err != nil || got != rev || r.N != 1 {
		t.Fatalf("%+v %d %v", r, got, err)
	}
	rev2, err := s.PutJSON(ctx, "registers/media/1", rec{2}, rev)
	if err != nil || rev2 <= rev {
		t.Fatalf("%d %v", rev2, err)
	}
	if _, err := s.PutJSON(ctx, "registers/media/1", rec{3}, rev); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale revision: %v", err)
	}
	if _, err := s.PutJSON(ctx, "registers/media/1", rec{4}, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetJSON(ctx, "registers/media/1", &r); err != nil || r.N != 4 {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := s.GetJSON(ctx, "registers/none", &r); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	for _, k := range []string{"", "/abs", "a//b", "a/../b", "a b"} {
		if _, err := s.PutJSON(ctx, k, rec{}, -1); !errors.Is(err, ErrInvalid) {
			t.Errorf("key %q: %v", k, err)
		}
	}
}

func TestWatchPoliciesFires(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	wctx, cancel := context.WithCancel(ctx)
	ch := s.WatchPolicies(wctx)
	// Give the watches a moment to register before writing.
	time.Sleep(200 * time.Millisecond)
	expect := func(what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("no notification after %s", what)
		}
	}
	if err := s.PutPolicy(ctx, "default", []byte("x")); err != nil {
		t.Fatal(err)
	}
	expect("PutPolicy")
	if err := s.Assign(ctx, "ag-1", "default"); err != nil {
		t.Fatal(err)
	}
	expect("Assign")
	if _, err := s.PutJSON(ctx, "registers/pi/1", map[string]string{"name": "顧客台帳"}, 0); err != nil {
		t.Fatal(err)
	}
	expect("register change")
	// Unrelated keys do not wake policy long-polls.
	if err := s.PutCheckpoint(ctx, []byte("cp")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("notified for a checkpoint write")
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed after ctx ended")
	}
}

func TestRestartKeepsData(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	s := openDir(t, dir)
	plain, _, err := s.CreateEnrollToken(ctx, time.Hour, 2, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeEnrollToken(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPolicy(ctx, "default", []byte("keep me")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openDir(t, dir)
	defer s2.Close()
	y, _, err := s2.GetPolicy(ctx, "default")
	if err != nil || string(y) != "keep me" {
		t.Fatalf("%q %v", y, err)
	}
	got, err := s2.ConsumeEnrollToken(ctx, plain)
	if err != nil || got.UsesLeft != 0 {
		t.Fatalf("token after restart: %+v %v", got, err)
	}
}

func TestExternalEndpoints(t *testing.T) {
	ctx := ctxT(t)
	emb := openTest(t)
	ext, err := Open(ctx, Config{Endpoints: []string{emb.Endpoint()}, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	if ext.Endpoint() != "" || ext.etcd != nil {
		t.Fatal("external store started its own etcd")
	}
	if err := ext.PutPolicy(ctx, "default", []byte("from ext")); err != nil {
		t.Fatal(err)
	}
	y, _, err := emb.GetPolicy(ctx, "default")
	if err != nil || string(y) != "from ext" {
		t.Fatalf("%q %v", y, err)
	}
	plain, _, err := emb.CreateEnrollToken(ctx, time.Hour, 1, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ext.ConsumeEnrollToken(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if _, err := emb.ConsumeEnrollToken(ctx, plain); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("token used through the other client still valid: %v", err)
	}

	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	dead := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	if s, err := Open(short, Config{Endpoints: []string{dead}, Log: testLog(t)}); err == nil {
		s.Close()
		t.Fatal("Open succeeded against a dead endpoint")
	}
}

func clientWithPrefix() []clientv3.OpOption { return []clientv3.OpOption{clientv3.WithPrefix()} }

func TestLoopbackTCPFallback(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	s, err := Open(ctx, Config{DataDir: dir, Log: testLog(t), forceTCP: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Endpoint(), "http://127.0.0.1:") {
		t.Fatalf("endpoint %q", s.Endpoint())
	}
	if err := s.PutPolicy(ctx, "default", []byte("tcp")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The same data dir later opened on unix sockets (OS upgraded) keeps its data.
	s2 := openDir(t, dir)
	defer s2.Close()
	if y, _, err := s2.GetPolicy(ctx, "default"); err != nil || string(y) != "tcp" {
		t.Fatalf("%q %v", y, err)
	}
}

// A bootstrap token revoked by an admin (after a leak: it was printed at
// first start) stays revoked: each start ensured it again, and a deleted
// record counted as missing, so a restart brought it back with fresh uses.
// Also for a site whose tokens were made before the marker existed.
func TestRevokedBootstrapTokensStayRevoked(t *testing.T) {
	ctx := ctxT(t)
	for _, old := range []bool{false, true} {
		s := openTest(t)
		enroll, _ := NewToken()
		admin, _ := NewToken()
		if old { // as a server before the marker stored them
			if _, err := s.putEnrollToken(ctx, enroll, time.Hour, 5, "bootstrap"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.putAPIToken(ctx, admin, "admin", RoleAdmin); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 { // each start
			if err := s.EnsureEnrollToken(ctx, enroll, time.Hour, 5); err != nil {
				t.Fatal(err)
			}
			if err := s.EnsureAPIToken(ctx, admin, "admin", RoleAdmin); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.RevokeEnrollToken(ctx, tokenHash(enroll)[:16]); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeAPIToken(ctx, tokenHash(admin)[:16]); err != nil {
			t.Fatal(err)
		}
		// The next start.
		if err := s.EnsureEnrollToken(ctx, enroll, time.Hour, 5); err != nil {
			t.Fatal(err)
		}
		if err := s.EnsureAPIToken(ctx, admin, "admin", RoleAdmin); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConsumeEnrollToken(ctx, enroll); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("old=%v: revoked enroll token valid again after a restart: %v", old, err)
		}
		if _, err := s.LookupAPIToken(ctx, admin); !errors.Is(err, ErrNotFound) {
			t.Errorf("old=%v: revoked admin token valid again after a restart: %v", old, err)
		}
	}
}
