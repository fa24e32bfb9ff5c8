package eventlog_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
)

// TestPruneChunks prunes more events than one chunk clears, in log order
// from where each chunk ended: every old event once, none of the new.
func TestPruneChunks(t *testing.T) {
	ctx := context.Background()
	s, err := eventlog.OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const old, all = 11_000, 12_000
	evs := storetest.Chain("pc-001", 1, all, "")
	t0 := storetest.Base.Add(30 * time.Minute)
	now := t0
	s.SetClock(func() time.Time { return now })
	for i := 0; i < all; i += 1000 {
		if i == old {
			now = t0.Add(time.Hour)
		}
		if _, err := s.Append(ctx, "pc-001", evs[i:i+1000]); err != nil {
			t.Fatal(err)
		}
	}
	want, err := s.Prunable(ctx, now)
	if err != nil || want < old {
		t.Fatalf("Prunable = %d, %v; want at least %d", want, err, old)
	}
	if n, err := s.Prune(ctx, now); err != nil || n != want {
		t.Fatalf("Prune = %d, %v; want %d", n, err, want)
	}
	var pruned, kept int64
	for _, st := range storetest.All(t, s, eventlog.Filter{}) {
		if st.Pruned != st.Received.Before(now) {
			t.Fatalf("event %d received %s: pruned %v", st.Index, st.Received, st.Pruned)
		}
		if st.Pruned {
			pruned++
		} else {
			kept++
		}
	}
	if pruned != want || kept < all-old {
		t.Fatalf("%d events pruned, %d kept; want %d and at least %d", pruned, kept, want, all-old)
	}
	if n, err := s.Prune(ctx, now); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want 0", n, err)
	}
}
