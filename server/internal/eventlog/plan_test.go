package eventlog

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestQueryPlans checks that the filters the API offers are served by an
// index, and that paging one agent's stream never sorts the whole stream.
func TestQueryPlans(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		f       Filter
		index   string
		sorting bool // a temp B-tree for ORDER BY is acceptable
	}{
		{Filter{Cursor: "5"}, "INTEGER PRIMARY KEY", false},
		{Filter{Agent: "pc-001", Cursor: "5"}, "events_agent_seq", false},
		{Filter{Agent: "pc-001", Control: "media", Cursor: "5"}, "events_agent_seq", false},
		{Filter{Control: "media", Type: "media.write"}, "events_control_type", false},
		{Filter{User: "CORP\\tanaka"}, "events_user", false},
		{Filter{RegisterID: "PI-001"}, "events_register_id", false},
		{Filter{ObjectPrefix: `D:\顧客\`}, "events_object", true},
		{Filter{From: day, To: day.Add(24 * time.Hour)}, "events_time", true},
	} {
		q, args, _, err := buildQuery(c.f)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.rdb.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		all := strings.Join(plan, "; ")
		if !strings.Contains(plan[0], c.index) {
			t.Errorf("%+v: plan %q does not use %s", c.f, all, c.index)
		}
		if !c.sorting && strings.Contains(all, "TEMP B-TREE") {
			t.Errorf("%+v: plan %q sorts", c.f, all)
		}
	}
}
