package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/event"
)

// TestQueryPlans checks that each plan reads through the index it names: a
// walk never sorts, a sort reads its range index (event_keys, below the
// watermark, for user, object and register id; event_ranges for control
// and type).
func TestQueryPlans(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	walk := func(q *query) plan {
		if q.agent != "" {
			return plan{agent: true}
		}
		if len(q.eqs) > 0 {
			return plan{drive: &q.eqs[0]}
		}
		return plan{}
	}
	sortBy := func(obj bool) func(q *query) plan {
		return func(q *query) plan {
			if obj {
				return plan{drive: q.object, sorted: true}
			}
			return plan{drive: q.time, sorted: true}
		}
	}
	for _, c := range []struct {
		f       Filter
		plan    func(*query) plan
		index   string
		sorting bool
	}{
		{Filter{Cursor: "5"}, walk, "INTEGER PRIMARY KEY", false},
		{Filter{Agent: "pc-001", Cursor: "5"}, walk, "agent_runs_pos", false},
		{Filter{Agent: "pc-001", Control: "media", ObjectPrefix: "D:", Cursor: "5"}, walk, "agent_runs_pos", false},
		{Filter{Control: "media", Type: "media.write"}, walk, "event_ranges", false},
		{Filter{Control: "media"}, walk, "event_ranges", false},
		{Filter{Type: "server.gap", Cursor: "9"}, walk, "event_ranges", false},
		{Filter{User: "CORP\\tanaka", ObjectPrefix: `D:\`, From: day}, walk, "VIRTUAL TABLE", false},
		{Filter{RegisterID: "PI-001", User: "u"}, walk, "VIRTUAL TABLE", false},
		{Filter{ObjectPrefix: `D:\顧客\`, From: day, To: day.Add(time.Hour)}, walk, "INTEGER PRIMARY KEY", false},
		// Sorted in Go (readKeys), not by SQLite.
		{Filter{ObjectPrefix: `D:\顧客\`, User: "u", Cursor: "7"}, sortBy(true), "VIRTUAL TABLE", false},
		{Filter{Control: "media", From: day, To: day.Add(time.Hour)}, sortBy(false), "events_time", true},
	} {
		q, err := parseFilter(c.f)
		if err != nil {
			t.Fatal(err)
		}
		q.ranges = s.ranges
		pl, pt := c.plan(q), part{lo: q.after + 1, hi: 1 << 40, src: fromEvents}
		var list []byte
		switch {
		case pl.drive != nil && pl.drive.keyed():
			pt.src, pt.run, list = fromKeys, "keys_0_1", appendPositions(nil, 1, 3)
		case pl.drive != nil && pl.drive.ranged():
			pt.src, pt.run = fromKeys, rangesTable
		}
		sq, args := selectSQL(q, pl, pt, q.limit+1, list)
		plan := explain(t, s.rdb, sq, args...)
		all := strings.Join(plan, "; ")
		if !strings.Contains(plan[0], c.index) {
			t.Errorf("%+v: plan %q does not use %s", c.f, all, c.index)
		}
		// A keyed walk sorts each key's rows (at most keySpan), never the page.
		sorts := strings.Contains(strings.ReplaceAll(all, "TEMP B-TREE FOR LAST TERM OF ORDER BY", ""), "TEMP B-TREE")
		if sorts != c.sorting {
			t.Errorf("%+v: plan %q: sorting %v, want %v", c.f, all, sorts, c.sorting)
		}
	}
}

// explain returns the details of SQLite's plan for q, one per step.
func explain(t *testing.T, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}

// TestPlanChoice builds a log where each plan is the right one for some
// filter, checks which plan the planner picks, and that every plan a filter
// can run returns the same pages as a filter over all events.
func TestPlanChoice(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start, mid := fillPlanLog(t, s)
	checkPlanChoice(t, s, start, mid)
}

// TestPlanChoiceRecords is TestPlanChoice on a store of records, which
// has no time index: a time filter walks the spans, each record whose
// time range misses the filter skipped undecoded.
func TestPlanChoiceRecords(t *testing.T) {
	ctx := context.Background()
	old := writeRecordsDefault
	writeRecordsDefault = true
	t.Cleanup(func() { writeRecordsDefault = old })
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start, mid := fillPlanLog(t, s)
	if s.recordsFrom() != 0 {
		t.Fatalf("records from %d", s.recordsFrom())
	}
	checkPlanChoice(t, s, start, mid)
}

func checkPlanChoice(t *testing.T, s *SQLite, start, mid time.Time) {
	ctx := context.Background()
	size := s.size.Load()
	// Every watermark gives the same pages: all keys indexed (where the
	// plans are checked), none (all tail), and the tail starting mid-log.
	for _, wm := range []int64{size, 0, size / 3, size - 7} {
		if err := s.SetWatermark(ctx, wm); err != nil {
			t.Fatal(err)
		}
		checkPlans(t, s, wm == size, start, mid)
	}
}

// fillPlanLog appends 3 agents x 6,000 events over 10 days, time following
// log order, but agent "late" sends a backlog of old events at the end. It
// returns the first event's time and one in the middle.
func fillPlanLog(t *testing.T, s *SQLite) (start, mid time.Time) {
	ctx := context.Background()
	start = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	const per = 6000
	prev := map[string]string{}
	for r := range 6 {
		for _, a := range []string{"pc-a", "pc-b", "late"} {
			var evs []event.Event
			for i := r * per / 6; i < (r+1)*per/6; i++ {
				e := event.Event{Agent: a, Seq: uint64(i + 1), Control: "fileaccess", Type: "file.read",
					Severity: event.Info, User: fmt.Sprintf("u%d", i%7), Object: fmt.Sprintf(`D:\dep%d\f%d`, i%10, i)}
				e.Time = start.Add(time.Duration(r*per+i) * 10 * time.Second)
				if a == "late" {
					e.Time = start.Add(time.Duration(i) * time.Second)
					if r < 5 {
						continue
					}
				}
				if i%1000 == 999 {
					e.Control, e.Type, e.Object = "media", "media.inserted", "USB:"+fmt.Sprint(i)
				}
				if err := e.Seal(prev[a]); err != nil {
					t.Fatal(err)
				}
				prev[a] = e.Hash
				evs = append(evs, e)
			}
			if len(evs) > 0 {
				if _, err := s.Append(ctx, a, evs); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return start, start.Add(per * 30 * time.Second)
}

func checkPlans(t *testing.T, s *SQLite, checkPlan bool, start, mid time.Time) {
	ctx := context.Background()
	// Expected pages come from every row, read once by a full scan (server
	// gap events included).
	all := scanLog(t, s)
	for _, c := range []struct {
		f    Filter
		want string // plan the planner should pick: walk, agent, sort-object, sort-time
	}{
		{Filter{}, "walk"},
		{Filter{ObjectPrefix: `D:\dep3\`}, "walk"},
		{Filter{ObjectPrefix: `D:\dep3\f1003`}, "sort-object"},
		{Filter{ObjectPrefix: `D:\dep3\f1003`, Type: "file.read"}, "sort-object"},
		{Filter{ObjectPrefix: `USB:`, Type: "media.inserted"}, "walk"},
		{Filter{From: mid, To: mid.Add(time.Hour)}, "sort-time"}, // the late backlog widens every span
		{Filter{From: mid, To: mid.Add(time.Hour), ObjectPrefix: `D:\`}, "sort-time"},
		{Filter{From: start, To: mid.Add(24 * time.Hour)}, "walk"},
		{Filter{From: mid}, "walk"},
		{Filter{Agent: "late", From: mid}, "agent"},
		{Filter{Agent: "pc-a", ObjectPrefix: `D:\dep3\f1003`}, "sort-object"},
		{Filter{Agent: "pc-a", ObjectPrefix: `D:\dep3\`, User: "u3"}, "agent"},
		{Filter{User: "u3", ObjectPrefix: `D:\dep`}, "walk"},
		{Filter{Control: "media", From: start}, "walk"},
		{Filter{To: start.Add(time.Hour)}, "sort-time"},
	} {
		f := c.f
		f.Limit = 50
		q, err := parseFilter(f)
		if err != nil {
			t.Fatal(err)
		}
		// Expected: the log indexes of the events matches accepts.
		var want []int64
		for _, st := range all {
			if matches(st.Event, f) {
				want = append(want, st.Index)
			}
		}
		tx, err := s.rdb.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := s.choosePlan(ctx, tx, q)
		tx.Rollback()
		if err != nil {
			t.Fatal(err)
		}
		if c.want == "sort-time" && s.recordsFrom() != noRecords {
			c.want = "walk"
		}
		if got := planName(pl); checkPlan && got != c.want {
			t.Errorf("%+v: plan %s, want %s", c.f, got, c.want)
		}
		// Every page through Query, whatever plan each page takes.
		got := pageIndexes(t, s, f)
		if !slices.Equal(got, want) {
			t.Errorf("%+v (watermark %d): %d events %v..., want %d %v...", c.f, s.watermark.Load(), len(got), first5(got), len(want), first5(want))
		}
	}
}

func first5(x []int64) []int64 { return x[:min(len(x), 5)] }

// scanLog reads every row of the log by a full scan, server events too.
func scanLog(t *testing.T, s *SQLite) []Stored {
	t.Helper()
	full, err := s.rdb.QueryContext(context.Background(), `SELECT idx, agent, seq, time, received, control, type,
		severity, "user", process, object, register_id, attrs, prev, hash FROM `+logEvents+` ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	var all []Stored
	for full.Next() {
		st, err := scanStored(full)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, st)
	}
	return all
}

// pageIndexes reads every page of f through Query, from f's cursor on,
// and returns the events' log indexes.
func pageIndexes(t *testing.T, s *SQLite, f Filter) []int64 {
	t.Helper()
	var got []int64
	for {
		p, err := s.Query(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			got = append(got, e.Index)
		}
		if p.Next == "" {
			return got
		}
		f.Cursor = p.Next
	}
}

func planName(pl plan) string {
	switch {
	case pl.sorted && pl.drive.col == "object":
		return "sort-object"
	case pl.sorted:
		return "sort-time"
	case pl.agent:
		return "agent"
	}
	return "walk"
}

// matches is Filter's meaning, written plainly.
func matches(e event.Event, f Filter) bool {
	return (f.Agent == "" || e.Agent == f.Agent) && (f.Control == "" || e.Control == f.Control) &&
		(f.Type == "" || e.Type == f.Type) && (f.User == "" || e.User == f.User) &&
		(f.RegisterID == "" || e.RegisterID == f.RegisterID) &&
		(f.ObjectPrefix == "" || strings.HasPrefix(e.Object, f.ObjectPrefix)) &&
		(f.From.IsZero() || !e.Time.Before(f.From)) && (f.To.IsZero() || e.Time.Before(f.To))
}
