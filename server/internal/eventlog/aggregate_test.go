package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
	"github.com/mamori/mamori/shared/event"
)

// aggStore is what Count, Scan and CheckpointBefore are tested on.
type aggStore interface {
	eventlog.Store
	Count(ctx context.Context, q eventlog.CountQuery) ([]eventlog.Group, error)
	Scan(ctx context.Context, q eventlog.CountQuery, attrsFor []string, fn func(*eventlog.ScanRow) error) error
	CheckpointBefore(ctx context.Context, t time.Time) (eventlog.Checkpoint, error)
}

// TestAggregatesSQLite runs the aggregates with every key in event_keys,
// with none (the whole log is the tail above the watermark) and split.
func TestAggregatesSQLite(t *testing.T) {
	for _, c := range []struct {
		name string
		wm   func(size int64) int64
	}{
		{"indexed", func(n int64) int64 { return n }},
		{"tail", func(int64) int64 { return 0 }},
		{"split", func(n int64) int64 { return n / 2 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := eventlog.OpenSQLite(ctx, filepath.Join(t.TempDir(), "e.db"), zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			testAggregates(t, s, func() {
				n, _ := s.TreeSize(ctx)
				if err := s.SetWatermark(ctx, c.wm(n)); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestAggregatesPostgres(t *testing.T) {
	srv := pgtest.Start(t)
	testAggregates(t, openPG(t, srv.Schema(t)), func() {})
}

// testAggregates appends events, calls placed, then checks the aggregates.
func testAggregates(t *testing.T, s aggStore, placed func()) {
	ctx := context.Background()
	var all []event.Event
	for _, a := range []string{"pc-001", "pc-002"} {
		evs := storetest.Chain(a, 1, 400, "")
		if _, err := s.Append(ctx, a, evs); err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
	}
	placed()
	// Minutes apart from storetest.Base: 400 events span under a week, so
	// a 100-day window takes the table-scan path and a 2-day one the index.
	for _, w := range []struct {
		name     string
		from, to time.Time
	}{
		{"long window", storetest.Base.Add(-50 * 24 * time.Hour), storetest.Base.Add(50 * 24 * time.Hour)},
		{"short window", storetest.Base.Add(2 * time.Hour), storetest.Base.Add(5 * time.Hour)},
	} {
		in := func(e event.Event) bool { return !e.Time.Before(w.from) && e.Time.Before(w.to) }
		want := map[string]int64{}
		users := map[string]map[string]bool{}
		var n int64
		for _, e := range all {
			if !in(e) {
				continue
			}
			n++
			want[e.Control+"|"+e.Type]++
			if e.RegisterID != "" {
				if users[e.RegisterID] == nil {
					users[e.RegisterID] = map[string]bool{}
				}
				if e.User != "" {
					users[e.RegisterID][e.User] = true
				}
			}
		}
		gs, err := s.Count(ctx, eventlog.CountQuery{From: w.from, To: w.to, GroupBy: []string{"control", "type"}})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		var total int64
		for _, g := range gs {
			got[g.Keys[0]+"|"+g.Keys[1]] = g.Events
			total += g.Events
		}
		if total != n || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: total %d want %d; %v want %v", w.name, total, n, got, want)
		}
		gs, err = s.Count(ctx, eventlog.CountQuery{From: w.from, To: w.to, HasRegister: true, GroupBy: []string{"register_id"}, DistinctUsers: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(gs) != len(users) {
			t.Errorf("%s: %d register groups, want %d", w.name, len(gs), len(users))
		}
		for _, g := range gs {
			if g.Users != int64(len(users[g.Keys[0]])) {
				t.Errorf("%s: %s has %d users, want %d", w.name, g.Keys[0], g.Users, len(users[g.Keys[0]]))
			}
		}
		// Grouped by user and object (the access-volume chart).
		gs, err = s.Count(ctx, eventlog.CountQuery{From: w.from, To: w.to, GroupBy: []string{"user", "object"}})
		if err != nil {
			t.Fatal(err)
		}
		byUO := map[string]int64{}
		for _, e := range all {
			if in(e) {
				byUO[e.User+"|"+e.Object]++
			}
		}
		gotUO := map[string]int64{}
		for _, g := range gs {
			gotUO[g.Keys[0]+"|"+g.Keys[1]] = g.Events
		}
		if fmt.Sprint(gotUO) != fmt.Sprint(byUO) {
			t.Errorf("%s: by user and object %v, want %v", w.name, gotUO, byUO)
		}
		// Buckets and an agent filter.
		mid := w.from.Add(w.to.Sub(w.from) / 2)
		gs, err = s.Count(ctx, eventlog.CountQuery{From: w.from, To: w.to, Agents: []string{"pc-002"}, Buckets: []time.Time{w.from, mid, w.to}})
		if err != nil {
			t.Fatal(err)
		}
		var b0, b1 int64
		for _, e := range all {
			if in(e) && e.Agent == "pc-002" {
				if e.Time.Before(mid) {
					b0++
				} else {
					b1++
				}
			}
		}
		bs := map[string]int64{}
		for _, g := range gs {
			bs[g.Keys[0]] = g.Events
		}
		if bs["0"] != b0 || bs["1"] != b1 {
			t.Errorf("%s: buckets %v, want 0:%d 1:%d", w.name, bs, b0, b1)
		}
		// Scan: the status events with attrs only for violations.
		var seen []string
		violAttrs := 0
		err = s.Scan(ctx, eventlog.CountQuery{From: w.from, To: w.to, Types: []string{"screenlock.status"}}, []string{"violation"},
			func(r *eventlog.ScanRow) error {
				if r.Severity == "violation" && r.Attrs != nil {
					violAttrs++
				}
				if r.Severity != "violation" && r.Attrs != nil {
					return errors.New("attrs on a non-violation")
				}
				seen = append(seen, fmt.Sprintf("%s|%d", r.Agent, r.Time.UnixNano()))
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		var ws []string
		wantAttrs := 0
		for _, e := range all {
			if in(e) && e.Type == "screenlock.status" {
				ws = append(ws, fmt.Sprintf("%s|%d", e.Agent, e.Time.UnixNano()))
				if e.Severity == event.Violation && len(e.Attrs) > 0 {
					wantAttrs++
				}
			}
		}
		if violAttrs != wantAttrs {
			t.Errorf("%s: %d violations with attrs, want %d", w.name, violAttrs, wantAttrs)
		}
		sort.Strings(seen)
		sort.Strings(ws)
		if fmt.Sprint(seen) != fmt.Sprint(ws) {
			t.Errorf("%s: scan saw %d rows, want %d", w.name, len(seen), len(ws))
		}
	}
	if _, err := s.Count(ctx, eventlog.CountQuery{From: storetest.Base, To: storetest.Base, GroupBy: []string{"attrs"}}); !errors.Is(err, eventlog.ErrBadFilter) {
		t.Errorf("bad query: %v", err)
	}
	if _, err := s.CheckpointBefore(ctx, time.Now()); !errors.Is(err, eventlog.ErrNoCheckpoint) {
		t.Errorf("no checkpoint yet: %v", err)
	}
}

// TestRecordAggregatesMatchSQL: Count and Scan read records in Go
// (recordEvents) with the results the same queries give through
// record_events: every group column, buckets with edges on event times,
// repeated and past the events, agent, control and type filters, register
// ids, distinct users, and the attrs of the severities asked.
func TestRecordAggregatesMatchSQL(t *testing.T) {
	ctx := context.Background()
	s, err := eventlog.OpenSQLite(ctx, filepath.Join(t.TempDir(), "e.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var all []event.Event
	for _, a := range []string{"pc-001", "pc-002", "pc-003"} {
		for from := uint64(1); from <= 300; from += 100 { // several records an agent
			prev := ""
			if n := len(all); from > 1 {
				prev = all[n-1].Hash
			}
			evs := storetest.Chain(a, from, 100, prev)
			if _, err := s.Append(ctx, a, evs); err != nil {
				t.Fatal(err)
			}
			all = append(all, evs...)
		}
	}
	if s.RecordsFrom() != 0 {
		t.Fatalf("records from %d, want every event in records", s.RecordsFrom())
	}
	first, last := all[0].Time, all[len(all)-1].Time
	mid := all[150].Time // an event's own time
	from, to := first.Add(-time.Hour), last.Add(time.Hour)
	var qs []eventlog.CountQuery
	for _, g := range [][]string{nil, {"agent"}, {"control", "type"}, {"severity"}, {"register_id"}, {"user", "object"}, {"agent", "user"}} {
		qs = append(qs,
			eventlog.CountQuery{From: from, To: to, GroupBy: g},
			eventlog.CountQuery{From: mid, To: to, GroupBy: g, DistinctUsers: true, Buckets: []time.Time{first, mid.Add(time.Hour)}},
			eventlog.CountQuery{From: from, To: to, GroupBy: g, Buckets: []time.Time{first, mid, mid, last, to.Add(time.Hour)}},
			eventlog.CountQuery{From: from, To: mid, GroupBy: g, Agents: []string{"pc-002", "pc-003"}, HasRegister: true, DistinctUsers: true},
			eventlog.CountQuery{From: from, To: to, GroupBy: g, Controls: []string{"media", "screenlock"}},
			eventlog.CountQuery{From: from, To: to, GroupBy: g, Types: []string{"file.read"}, Buckets: []time.Time{mid, last}},
		)
	}
	run := func(q eventlog.CountQuery) (string, string) {
		gs, err := s.Count(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var groups []string
		for _, g := range gs {
			groups = append(groups, fmt.Sprintf("%q %d %d", g.Keys, g.Events, g.Users))
		}
		var rows []string
		err = s.Scan(ctx, q, []string{"violation"}, func(r *eventlog.ScanRow) error {
			rows = append(rows, fmt.Sprintf("%d %s %s %s %s %q", r.Time.UnixNano(), r.Agent, r.Control, r.Type, r.Severity, r.Attrs))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(groups)
		sort.Strings(rows)
		return strings.Join(groups, "\n"), strings.Join(rows, "\n")
	}
	inGo := make([][2]string, len(qs))
	for i, q := range qs {
		inGo[i][0], inGo[i][1] = run(q)
		if inGo[i][1] == "" {
			t.Errorf("query %d (%+v) selected no events", i, q)
		}
	}
	eventlog.AggregateRecordsInSQL(t)
	for i, q := range qs {
		groups, rows := run(q)
		if groups != inGo[i][0] {
			t.Errorf("query %d (%+v): groups in Go\n%s\nthrough record_events\n%s", i, q, inGo[i][0], groups)
		}
		if rows != inGo[i][1] {
			t.Errorf("query %d (%+v): scan in Go and through record_events differ", i, q)
		}
	}
}
