package eventlog_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
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

// TestPruneRecords: retention on a store of rows reopened to write
// records clears old events on both sides of the boundary, keeps the
// retention record whole, leaves the tree as it was, reports the newest
// cleared event, and a second run clears nothing.
func TestPruneRecords(t *testing.T) {
	t.Cleanup(eventlog.SetWriteRecords(false)) // the store starts as rows
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	t0 := storetest.Base.Add(30 * time.Minute)
	now := t0
	open := func() *eventlog.SQLite {
		t.Helper()
		s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		s.SetClock(func() time.Time { return now })
		return s
	}
	evs := storetest.Chain("pc-001", 1, 40, "")
	s := open()
	if _, err := s.Append(ctx, "pc-001", evs[:10]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	eventlog.WriteRecords(t)
	s = open()
	defer s.Close()
	for _, part := range [][2]int{{10, 20}, {20, 25}} {
		if _, err := s.Append(ctx, "pc-001", evs[part[0]:part[1]]); err != nil {
			t.Fatal(err)
		}
	}
	now = t0.Add(time.Hour)
	ret, err := s.AppendServer(ctx, event.Event{Time: now, Control: evidence.RetentionControl, Type: evidence.RetentionType,
		Severity: event.Info, Attrs: event.Attrs{"cutoff": now.Format(time.RFC3339)}})
	if err != nil {
		t.Fatal(err)
	}
	now = t0.Add(2 * time.Hour)
	if _, err := s.Append(ctx, "pc-001", evs[25:]); err != nil {
		t.Fatal(err)
	}
	size, _ := s.TreeSize(ctx)
	root, err := s.TreeHash(ctx, size)
	if err != nil {
		t.Fatal(err)
	}
	if s.RecordsFrom() != 10 {
		t.Fatalf("records from %d, want 10", s.RecordsFrom())
	}
	cutoff := t0.Add(90 * time.Minute) // the retention record too, which is kept whole
	want, err := s.Prunable(ctx, cutoff)
	if err != nil || want != 25 {
		t.Fatalf("Prunable = %d, %v; want 25", want, err)
	}
	if n, err := s.Prune(ctx, cutoff); err != nil || n != want {
		t.Fatalf("Prune = %d, %v; want %d", n, err, want)
	}
	var last eventlog.Stored
	for _, st := range storetest.All(t, s, eventlog.Filter{Limit: 6}) {
		wantPruned := st.Received.Before(cutoff) && st.Agent != event.ServerStream
		if st.Pruned != wantPruned {
			t.Fatalf("event %d (%s/%d) received %s: pruned %v", st.Index, st.Agent, st.Seq, st.Received, st.Pruned)
		}
		if st.Pruned {
			if st.Control != "" || st.User != "" || st.Object != "" || st.Attrs != nil || st.Hash == "" || st.Time.IsZero() {
				t.Fatalf("event %d pruned but holds %+v", st.Index, st.Event)
			}
			last = st
		}
		if st.Agent == event.ServerStream && (st.Hash != ret.Hash || st.Type != evidence.RetentionType || st.Attrs["cutoff"] == nil) {
			t.Fatalf("the retention record changed: %+v", st.Event)
		}
	}
	if last.Index != 24 || size != 41 {
		t.Fatalf("last pruned event %d, want 24", last.Index)
	}
	if np, ok, err := s.NewestPruned(ctx); err != nil || !ok || np.Index != last.Index || np.Hash != last.Hash {
		t.Errorf("NewestPruned = %+v %v %v; want index %d", np, ok, err, last.Index)
	}
	if got, err := s.TreeHash(ctx, size); err != nil || got != root {
		t.Errorf("tree hash after prune = %v, %v; want %v", got, err, root)
	}
	if n, err := s.Prune(ctx, cutoff); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want 0", n, err)
	}
	if n, err := s.Prunable(ctx, cutoff); err != nil || n != 0 {
		t.Errorf("Prunable after prune = %d, %v; want 0", n, err)
	}
}
