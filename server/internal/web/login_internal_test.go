package web

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/state"
)

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/hosts": "/hosts", "/hosts?x=1&y=%20": "/hosts?x=1&y=%20", "/registers/media/": "/registers/media",
		"//evil.example": "/", "/\\evil.example": "/", "/\t/evil.example/x": "/", "/%09/x": "/",
		"/%5cevil": "/", "https://evil.example": "/", "/..//evil.example": "/evil.example", "": "/",
		"/a/%2F%2Fevil.example": "/a/evil.example",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "//x", "/\\x", "/%09/x", "/a?b=c", "http://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := localPath(in)
		if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.ContainsAny(out, "\\\t\r\n\x00") ||
			!utf8.ValidString(out) {
			t.Fatalf("localPath(%q) = %q", in, out)
		}
	})
}

func TestThrottleLogSummarises(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	var timers []func()
	var got []throttleSummary
	tl := newThrottleLog(func() time.Time { return now }, func(_ string, s throttleSummary) { got = append(got, s) })
	tl.afterFunc = func(_ time.Duration, f func()) { timers = append(timers, f) }
	if !tl.add("10.0.0.1", "admin") {
		t.Fatal("first refused attempt of a window not reported as first")
	}
	for i := range 999 {
		now = now.Add(time.Millisecond)
		if tl.add("10.0.0.1", "user"+strings.Repeat("x", i%20)) {
			t.Fatal("a later attempt opened another window")
		}
	}
	if len(timers) != 1 {
		t.Fatalf("%d windows", len(timers))
	}
	timers[0]()
	if len(got) != 1 || got[0].Count != 999 || len(got[0].Names) != maxSummaryNames {
		t.Fatalf("summary %+v", got)
	}
	if !tl.add("10.0.0.1", "admin") {
		t.Fatal("no new window after the summary")
	}
	// Stopping mid-window emits the window's summary once, not again when
	// its timer fires.
	tl.add("10.0.0.1", "admin")
	tl.flush()
	timers[len(timers)-1]()
	if len(got) != 2 || got[1].Count != 1 {
		t.Fatalf("summaries after flush %+v", got)
	}
}

func TestLimiterBackoff(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	l := newLimiter(func() time.Time { return now }, 5, 15*time.Minute)
	ctx := context.Background()
	for range 5 {
		if !l.allowed(ctx, "k") {
			t.Fatal("refused under the limit")
		}
		l.fail(ctx, "k")
	}
	if l.allowed(ctx, "k") {
		t.Fatal("allowed right after the fifth failure")
	}
	now = now.Add(31 * time.Second)
	if !l.allowed(ctx, "k") {
		t.Fatal("not allowed after the first backoff")
	}
	l.fail(ctx, "k")
	now = now.Add(31 * time.Second)
	if l.allowed(ctx, "k") {
		t.Fatal("backoff did not double")
	}
	now = now.Add(30 * time.Second)
	if !l.allowed(ctx, "k") {
		t.Fatal("not allowed after the doubled backoff")
	}
	if !l.allowed(ctx, "other") {
		t.Fatal("another key is refused")
	}
}

func TestBoundName(t *testing.T) {
	if s := boundName(strings.Repeat("管", 100)); len(s) > maxLoggedName+3 || !utf8.ValidString(s) {
		t.Fatalf("%q", s)
	}
	if s := boundName("a\x00b\xff"); strings.ContainsAny(s, "\x00") || !utf8.ValidString(s) {
		t.Fatalf("%q", s)
	}
}

// FuzzBoundName: whatever the login form sends as a user name, what is
// stored is short valid UTF-8 without control characters.
func FuzzBoundName(f *testing.F) {
	for _, s := range []string{"admin", strings.Repeat("管理者", 100), "a\x00b", "\xff\xfe", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := boundName(in)
		if len(out) > maxLoggedName+len("…") || !utf8.ValidString(out) {
			t.Fatalf("boundName(%q) = %q", in, out)
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("boundName(%q) keeps a control character", in)
			}
		}
	})
}

// sharedFails is the site's count as etcd keeps it (state.AddLoginFailure).
type sharedFails struct {
	m    map[string][]time.Time
	down bool
}

func (f *sharedFails) LoginFailures(_ context.Context, k string) ([]time.Time, error) {
	if f.down {
		return nil, errors.New("etcd is unavailable")
	}
	return f.m[k], nil
}

func (f *sharedFails) AddLoginFailure(_ context.Context, k string, t time.Time, _ time.Duration, _ int) error {
	if f.down {
		return errors.New("etcd is unavailable")
	}
	f.m[k] = append(f.m[k], t)
	return nil
}

func (f *sharedFails) ResetLoginFailures(_ context.Context, k string) error {
	delete(f.m, k)
	return nil
}

// Failures on one server count on the others: five wrong passwords spread
// over two servers lock the key on both; with the shared count unavailable,
// each server's own count still limits.
func TestLimiterSharedAcrossServers(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	shared := &sharedFails{m: map[string][]time.Time{}}
	a, b := newLimiter(clock, 5, 15*time.Minute), newLimiter(clock, 5, 15*time.Minute)
	a.kind, a.shared = "user\x00", shared
	b.kind, b.shared = "user\x00", shared
	ctx := context.Background()
	for i := range 5 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if !l.allowed(ctx, "k") {
			t.Fatalf("attempt %d refused under the limit", i)
		}
		l.fail(ctx, "k")
	}
	if a.allowed(ctx, "k") || b.allowed(ctx, "k") {
		t.Fatal("five failures over two servers did not lock the key on both")
	}
	b.reset(ctx, "k")
	if !b.allowed(ctx, "k") || len(shared.m) != 0 {
		t.Fatal("a success did not reset the shared count")
	}
	shared.down = true
	for range 5 {
		a.fail(ctx, "j")
	}
	if a.allowed(ctx, "j") {
		t.Fatal("with etcd down, this server's own count did not limit")
	}
}

// memSessions is etcd's side of sessions, in memory.
type memSessions struct {
	mu sync.Mutex
	m  map[string]state.Session
}

func (f *memSessions) CreateSession(_ context.Context, id string, s state.Session, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[id] = s
	return nil
}

func (f *memSessions) SessionByID(_ context.Context, id string) (state.Session, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.m[id]
	if !ok {
		return state.Session{}, 0, state.ErrNotFound
	}
	return s, 1, nil
}

func (f *memSessions) TouchSession(context.Context, int64) error { return nil }

func (f *memSessions) DeleteSession(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, id)
	return nil
}

func (f *memSessions) DeleteUserSessions(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, s := range f.m {
		if s.Name == name {
			delete(f.m, id)
		}
	}
	return nil
}

// A browser's parallel requests read one session at once (run with -race);
// a session ended elsewhere is gone here once the copy is older than
// sessionRecheck.
func TestSessionsConcurrentAndEndedElsewhere(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	var clock sync.Mutex
	at := func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	st := &memSessions{m: map[string]state.Session{}}
	here, there := newSessions(at, st, zerolog.Nop()), newSessions(at, st, zerolog.Nop())
	ctx := context.Background()
	s, err := here.create(ctx, "alice", "admin")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if got := there.get(ctx, s.id); got == nil || got.Name != "alice" || got.CSRF != s.CSRF {
					t.Error("a live session was not found on the other server")
					return
				}
			}
		}()
	}
	wg.Wait()
	here.drop(ctx, s.id)
	clock.Lock()
	now = now.Add(sessionRecheck)
	clock.Unlock()
	if there.get(ctx, s.id) != nil {
		t.Fatal("a session logged out on one server lives on on another past sessionRecheck")
	}
}
