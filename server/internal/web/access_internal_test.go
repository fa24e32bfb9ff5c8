package web

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/eventlog"
)

// slowCounter is a store whose Count waits for release, recording the days
// it was asked for.
type slowCounter struct {
	api.EventStore
	release chan struct{}
	mu      sync.Mutex
	asked   []time.Time
}

func (s *slowCounter) Count(ctx context.Context, q eventlog.CountQuery) ([]eventlog.Group, error) {
	<-s.release
	s.mu.Lock()
	s.asked = append(s.asked, q.From)
	s.mu.Unlock()
	return []eventlog.Group{{Keys: []string{"sato", `D:\顧客\a.xlsx`}, Events: 2}}, nil
}

func (s *slowCounter) calls() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.asked) }

// Counting runs in the background: a page waits for it only briefly and
// then shows what is counted, marked partial; finished days are counted
// once, today again only after volumeTTL.
func TestAccessVolumeBackgroundAndCache(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, api.JST)
	var clock sync.Mutex
	sc := &slowCounter{release: make(chan struct{})}
	u := &UI{cfg: Config{Events: sc, Location: api.JST, Now: func() time.Time { clock.Lock(); defer clock.Unlock(); return now }}, log: zerolog.Nop()}

	t0 := time.Now()
	users, _, partial, ok := u.accessVolume(context.Background(), 7)
	if el := time.Since(t0); !ok || !partial || len(users) != 0 || el > time.Second {
		t.Fatalf("first page while counting: ok %v partial %v users %v after %v; want partial, at once", ok, partial, users, el)
	}
	close(sc.release) // the count finishes
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		u.vol.mu.Lock()
		busy := u.vol.busy
		u.vol.mu.Unlock()
		if !busy || time.Now().After(deadline) {
			break
		}
	}
	users, folders, partial, _ := u.accessVolume(context.Background(), 7)
	if partial || users["sato"] != 14 || folders[`D:\顧客\`] != 14 || sc.calls() != 7 {
		t.Fatalf("after counting: partial %v users %v folders %v, %d counts; want 7 days of 2 in 7 counts", partial, users, folders, sc.calls())
	}
	u.accessVolume(context.Background(), 7)
	if sc.calls() != 7 {
		t.Errorf("a counted span was counted again: %d counts", sc.calls())
	}
	clock.Lock()
	now = now.Add(volumeTTL + time.Second)
	clock.Unlock()
	u.accessVolume(context.Background(), 7) // today is stale: recounted, alone
	if sc.calls() != 8 || !sc.asked[7].Equal(time.Date(2026, 12, 3, 0, 0, 0, 0, api.JST)) {
		t.Errorf("after the TTL: %d counts (last %v), want today's alone", sc.calls(), sc.asked[len(sc.asked)-1])
	}
}

// Long bar labels (folder paths) keep their end and fit left of the bars
// instead of running off the chart's edge.
func TestFitLabel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		px   float64
		want string
	}{
		{"root", 138, "root"},
		{"総務部", 138, "総務部"},
		{`/tmp/TestWebUIManagerAndAuditor3449591881/003/コピー/`, 138, "…/003/コピー/"},
		{`D:\顧客\部署3\営業一課\見積書\`, 138, `…\営業一課\見積書\`},
	} {
		if got := fitLabel(tc.in, tc.px); got != tc.want {
			t.Errorf("fitLabel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
