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

// TestRangeKeys checks the control and type keys the writer commits
// (event_ranges): a few per batch, every event covered by a key of its
// values, keys of one value never overlapping, and every page of a control
// or type filter equal to a scan of the log, on a new store, on one
// migrated from per-row indexes (one key per old row) and across both.
func TestRangeKeys(t *testing.T) {
	// Rows: the test turns the store into one from before event_ranges.
	t.Cleanup(SetWriteRecords(false))
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	c := newChains(start)
	// fill appends rounds of one batch per agent: mostly reads, a write
	// every 10th event, a delete now and then (gaps over keyGap split its
	// keys), media events in runs, and batches longer than keySpan.
	fill := func(rounds int) {
		t.Helper()
		for r := range rounds {
			for ai, a := range []string{"pc-a", "pc-b", "pc-c"} {
				n := 300 + 500*ai // pc-c's batches pass keySpan
				mk := func(off int) func(int, *event.Event) {
					return func(i int, e *event.Event) {
						i += off
						e.User, e.Object = fmt.Sprintf("u%d", i%3), fmt.Sprintf(`D:\f%d`, i)
						e.Time = start.Add(time.Duration(r*10000+i) * time.Second)
						switch {
						case i%10 == 3:
							e.Type = "file.write"
						case i == 5 || i == 200 || i == 201 || i%400 == 105: // inside a media.write key
							e.Type = "file.delete"
						case i%400 >= 100 && i%400 < 110:
							e.Control, e.Type = "media", "media.write"
						}
					}
				}
				var evs []event.Event
				if a == "pc-b" { // a gap after 17 events: the server stream gets a server.gap event
					evs = append(c.next(t, a, 17, 0, mk(0)), c.next(t, a, n-17, 3, mk(17))...)
				} else {
					evs = c.next(t, a, n, 0, mk(0))
				}
				if _, err := s.Append(ctx, a, evs); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	fill(3)
	size := s.size.Load()
	keys := checkRanges(t, s)
	if keys*10 > size {
		t.Errorf("%d range keys for %d events: want a few per batch", keys, size)
	}
	checkRangePages(t, s, start)
	checkRangeCounts(t, s, start)

	// A store from before event_ranges: control and type indexed on events.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP TABLE event_ranges;
		DROP TABLE agent_runs;
		CREATE UNIQUE INDEX events_agent_seq ON events(agent, seq);
		CREATE INDEX events_control ON events(control) WHERE control IS NOT NULL;
		CREATE INDEX events_type ON events(type) WHERE type IS NOT NULL;
		DROP TABLE records;
		UPDATE schema_version SET version = 5`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err = OpenSQLite(ctx, path, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if keys := checkRanges(t, s); keys != 2*size {
		t.Errorf("migrated: %d keys for %d rows, want one per row and column", keys, size)
	}
	for _, ix := range []string{"events_control", "events_type"} {
		var n int
		if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = ?`, ix).Scan(&n); err != nil || n != 0 {
			t.Errorf("index %s after the migration: %d, %v", ix, n, err)
		}
	}
	checkRangePages(t, s, start)
	checkRangeCounts(t, s, start)
	fill(2)
	checkRanges(t, s)
	checkRangePages(t, s, start)
	checkRangeCounts(t, s, start)
}

// checkRangeCounts checks Count and Scan with type and control filters
// against a scan, and that rare types are read through their keys.
func checkRangeCounts(t *testing.T, s *SQLite, start time.Time) {
	t.Helper()
	ctx := context.Background()
	all := scanLog(t, s)
	long := [2]time.Time{start.Add(-time.Hour), start.Add(100 * 24 * time.Hour)}
	short := [2]time.Time{start.Add(10000 * time.Second), start.Add(10400 * time.Second)}
	for _, c := range []struct {
		q      CountQuery
		byKeys bool // whether aggFrom must read the keys
	}{
		{CountQuery{From: long[0], To: long[1], Types: []string{"file.delete", "media.write"}}, true},
		{CountQuery{From: long[0], To: long[1], Types: []string{"file.delete", "server.gap"}, Agents: []string{"pc-a", event.ServerStream}}, true},
		{CountQuery{From: short[0], To: short[1], Controls: []string{"media"}, GroupBy: []string{"agent"}}, true},
		{CountQuery{From: long[0], To: long[1], Controls: []string{"fileaccess"}, GroupBy: []string{"user"}}, false},
		{CountQuery{From: short[0], To: short[1], Controls: []string{"fileaccess", "media"}, Types: []string{"file.read"}}, false},
	} {
		q := c.q
		q.GroupBy = append(q.GroupBy, "type")
		want := map[string]int64{}
		for _, st := range all {
			e := st.Event
			if e.Time.Before(q.From) || !e.Time.Before(q.To) || !in(e.Agent, q.Agents) || !in(e.Control, q.Controls) || !in(e.Type, q.Types) {
				continue
			}
			k := e.Type
			if len(q.GroupBy) == 2 {
				k = map[string]string{"agent": e.Agent, "user": e.User}[q.GroupBy[0]] + "|" + k
			}
			want[k]++
		}
		gs, err := s.Count(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for _, g := range gs {
			got[strings.Join(g.Keys, "|")] = g.Events
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(want) == 0 {
			t.Errorf("count %+v: %v, want %v", c.q, got, want)
		}
		var n int64
		if err := s.Scan(ctx, q, nil, func(*ScanRow) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, v := range want {
			total += v
		}
		if n != total {
			t.Errorf("scan %+v: %d rows, want %d", c.q, n, total)
		}
		tx, err := s.rdb.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var args []any
		from, byKeys, err := s.aggFrom(ctx, tx, &q, &args)
		tx.Rollback()
		if err != nil || byKeys != c.byKeys {
			t.Errorf("count %+v: read through keys %v, want %v (%v)", c.q, byKeys, c.byKeys, err)
		}
		if byKeys {
			// The keys, then each key's rows by idx: no index of events.
			w, err := q.where(&args, true)
			if err != nil {
				t.Fatal(err)
			}
			plan := explain(t, s.rdb, "SELECT 1 FROM "+from+" WHERE "+w, args...)
			if len(plan) != 2 || !strings.Contains(plan[0], "SEARCH r USING PRIMARY KEY") ||
				!strings.Contains(plan[1], "SEARCH events USING INTEGER PRIMARY KEY") {
				t.Errorf("count %+v: plan %q", c.q, plan)
			}
		}
	}
}

func in(v string, vs []string) bool { return len(vs) == 0 || slices.Contains(vs, v) }

// checkRanges checks that every event's control and type are covered by a
// key of that value, that keys of one value do not overlap and stay within
// keySpan, and returns the number of keys.
func checkRanges(t *testing.T, s *SQLite) int64 {
	t.Helper()
	ctx := context.Background()
	type kv struct {
		kind int
		val  string
	}
	cover := map[kv][][2]int64{}
	rows, err := s.rdb.QueryContext(ctx, `SELECT kind, val, pos, coalesce(upto, pos + 1) FROM event_ranges ORDER BY kind, val, pos`)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for rows.Next() {
		var k kv
		var lo, hi int64
		if err := rows.Scan(&k.kind, &k.val, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		n++
		if hi <= lo || hi-lo > keySpan {
			t.Errorf("key %v [%d, %d): span", k, lo, hi)
		}
		if c := cover[k]; len(c) > 0 && c[len(c)-1][1] > lo {
			t.Errorf("key %v [%d, %d) overlaps [%d, %d)", k, lo, hi, c[len(c)-1][0], c[len(c)-1][1])
		}
		cover[k] = append(cover[k], [2]int64{lo, hi})
	}
	rows.Close()
	ev, err := s.rdb.QueryContext(ctx, `SELECT idx, control, type FROM `+logEvents+` ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	for ev.Next() {
		var idx int64
		var c, ty string
		if err := ev.Scan(&idx, &c, &ty); err != nil {
			t.Fatal(err)
		}
		for _, k := range []kv{{2, c}, {3, ty}} {
			ks := cover[k]
			i, _ := slices.BinarySearchFunc(ks, idx, func(r [2]int64, x int64) int {
				switch {
				case r[1] <= x:
					return -1
				case r[0] > x:
					return 1
				}
				return 0
			})
			if i == len(ks) || ks[i][0] > idx || ks[i][1] <= idx {
				t.Fatalf("event %d: no key covers %v", idx, k)
			}
		}
	}
	return n
}

// checkRangePages reads every page of control and type filters, alone and
// with others, small pages so that keys are cut mid-range, against a scan.
func checkRangePages(t *testing.T, s *SQLite, start time.Time) {
	t.Helper()
	all := scanLog(t, s)
	for _, f := range []Filter{
		{Control: "fileaccess", Limit: 500},
		{Control: "media", Limit: 7},
		{Type: "file.delete", Limit: 2},
		{Type: "file.write", Limit: 33},
		{Type: "server.gap"},
		{Control: "media", Type: "media.write", Limit: 9},
		{Control: "fileaccess", Type: "media.write"},
		{Type: "file.write", Agent: "pc-c", Limit: 40},
		{Type: "file.delete", User: "u2", Limit: 3},
		{Control: "media", From: start.Add(10000 * time.Second), To: start.Add(20300 * time.Second), Limit: 4},
		{Type: "file.read", ObjectPrefix: `D:\f12`, Limit: 6},
		{Type: "nothing"},
	} {
		var want []int64
		for _, st := range all {
			if matches(st.Event, f) {
				want = append(want, st.Index)
			}
		}
		got := pageIndexes(t, s, f)
		if !slices.Equal(got, want) {
			t.Errorf("%+v: %d events %v..., want %d %v...", f, len(got), first5(got), len(want), first5(want))
		}
	}
}
