package eventlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/event"
)

// TestAgentRuns checks agent_runs, which replaced the (agent, seq) index on
// SQLite: one run per batch (split at runMax), exact for the rows the writer
// commits; an agent's pages, resend checks and the heads check read
// through it, on a new store and on one migrated from the index, where a
// gap can put another stream's rows inside a run.
func TestAgentRuns(t *testing.T) {
	// Rows: the test turns the store into one from before agent_runs.
	t.Cleanup(SetWriteRecords(false))
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	c := newChains(start)
	chain := func(a string, n int, skip uint64) []event.Event { return c.next(t, a, n, skip, nil) }
	appendAll := func(a string, evs []event.Event, dups int) {
		t.Helper()
		res, err := s.Append(ctx, a, evs)
		if err != nil {
			t.Fatal(err)
		}
		if res.Duplicates != dups {
			t.Fatalf("%s: %d duplicates, want %d", a, res.Duplicates, dups)
		}
	}
	// Before the migration: pc-a's seqs 1..10, pc-b's one event, then
	// pc-a from 13 on (11 and 12 lost): the gap event and pc-b's row fill
	// the two slots, so the old rows group into one run of pc-a's over both.
	appendAll("pc-a", chain("pc-a", 10, 0), 0)
	appendAll("pc-b", chain("pc-b", 1, 0), 0)
	appendAll("pc-a", chain("pc-a", 5, 2), 0)
	var big []event.Event
	for range 3 {
		appendAll("pc-b", chain("pc-b", 40, 0), 0)
		big = chain("pc-c", 1500, 0) // more than runMax: two runs
		appendAll("pc-c", big, 0)
		appendAll("pc-a", chain("pc-a", 7, 0), 0)
	}
	checkRuns(t, s, true)
	checkAgentPages(t, s)
	appendAll("pc-c", big[runMax-20:runMax+20], 40)    // a resend across two runs
	forged := slices.Clone(big[runMax-30 : runMax-20]) // other events under seqs of the first run
	for i := range forged {
		forged[i].Object = `D:\forged`
		p := big[runMax-31].Hash
		if i > 0 {
			p = forged[i-1].Hash
		}
		if err := forged[i].Seal(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Append(ctx, "pc-c", forged); !errors.Is(err, event.ErrChain) {
		t.Fatalf("resent events unlike the stored ones: %v, want %v", err, event.ErrChain)
	}

	// The same log on a store from before agent_runs.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP TABLE agent_runs;
		CREATE UNIQUE INDEX events_agent_seq ON events(agent, seq);
		DROP TABLE records;
		UPDATE schema_version SET version = 6`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err = OpenSQLite(ctx, path, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM agent_runs WHERE stream = 'pc-a' AND seq_lo = 1 AND n = 17`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("migrated: pc-a's run over the gap: %d, %v", n, err)
	}
	checkRuns(t, s, false)
	checkAgentPages(t, s)
	appendAll("pc-c", big[runMax-20:runMax+20], 40)
	// Resending pc-a's 1..15 finds 1..10 and 13..15 but neither the lost
	// seqs nor the rows of other streams inside the run.
	rows, err := s.rdb.QueryContext(ctx, storedHashesSQL, "pc-a", 1, 15)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for rows.Next() {
		var seq uint64
		var hash []byte
		if err := rows.Scan(&seq, &hash); err != nil {
			t.Fatal(err)
		}
		got = append(got, seq)
	}
	rows.Close()
	if want := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15}; !slices.Equal(got, want) {
		t.Errorf("stored seqs of pc-a in [1, 15]: %v, want %v", got, want)
	}
	// The heads check reads the runs: a head edited away is rebuilt with
	// the stream's last event and its exact count.
	want := s.heads["pc-a"]
	if _, err := s.wdb.ExecContext(ctx, `UPDATE heads SET seq = 999, events = 1 WHERE agent = 'pc-a'`); err != nil {
		t.Fatal(err)
	}
	s.heads["pc-a"] = &head{seq: 999}
	if err := s.checkHeads(ctx, s.wdb); err != nil {
		t.Fatal(err)
	}
	if h := s.heads["pc-a"]; h.seq != want.seq || h.hash != want.hash || h.events != want.events {
		t.Errorf("rebuilt head %+v, want %+v", *h, *want)
	}
	for range 2 {
		appendAll("pc-a", chain("pc-a", 4, 0), 0)
		appendAll("pc-c", chain("pc-c", 30, 0), 0)
	}
	checkAgentPages(t, s)
}

// checkRuns checks that every run lies within runMax and its rows are its
// stream's seqs in order (exact: no other rows inside), and that every
// agent event is in exactly one run.
func checkRuns(t *testing.T, s *SQLite, exact bool) {
	t.Helper()
	ctx := context.Background()
	type ev struct {
		agent string
		seq   int64
	}
	var log []ev
	rows, err := s.rdb.QueryContext(ctx, `SELECT agent, seq FROM `+logEvents+` ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var e ev
		if err := rows.Scan(&e.agent, &e.seq); err != nil {
			t.Fatal(err)
		}
		log = append(log, e)
	}
	rows.Close()
	in := make([]int, len(log))
	runs, err := s.rdb.QueryContext(ctx, `SELECT stream, seq_lo, pos, n FROM agent_runs`)
	if err != nil {
		t.Fatal(err)
	}
	defer runs.Close()
	var count int
	for runs.Next() {
		var r agentRun
		if err := runs.Scan(&r.stream, &r.seqLo, &r.pos, &r.n); err != nil {
			t.Fatal(err)
		}
		count++
		if r.n < 1 || r.n > runMax || r.pos+r.n > int64(len(log)) {
			t.Fatalf("run %+v", r)
		}
		for i := range r.n {
			e := log[r.pos+i]
			if e.agent != r.stream {
				if exact {
					t.Errorf("run %+v holds %s's row at %d", r, e.agent, r.pos+i)
				}
				continue
			}
			if e.seq != r.seqLo+i {
				t.Errorf("run %+v: row %d has seq %d", r, r.pos+i, e.seq)
			}
			in[r.pos+i]++
		}
	}
	for i, e := range log {
		if in[i] != 1 {
			t.Errorf("event %d (%s %d) in %d runs", i, e.agent, e.seq, in[i])
		}
	}
	if exact && count > len(log)/10 {
		t.Errorf("%d runs for %d events", count, len(log))
	}
}

// checkAgentPages reads every agent's pages, small ones from every kind of
// cursor (the agent's own event, another stream's, past the end), against
// a scan.
func checkAgentPages(t *testing.T, s *SQLite) {
	t.Helper()
	all := scanLog(t, s)
	for _, f := range []Filter{
		{Agent: "pc-a", Limit: 4},
		{Agent: "pc-a", Cursor: "10", Limit: 3}, // pc-b's row inside pc-a's migrated run
		{Agent: "pc-b", Limit: 7},
		{Agent: "pc-c", Limit: 333},
		{Agent: "pc-c", Cursor: "1100", Limit: 50},
		{Agent: "pc-a", User: "u1", Limit: 2},
		{Agent: event.ServerStream},
		{Agent: "pc-b", Cursor: "99999"},
		{Agent: "nobody"},
	} {
		var want []int64
		after := int64(-1)
		if f.Cursor != "" {
			fmt.Sscan(f.Cursor, &after)
		}
		for _, st := range all {
			if st.Index > after && matches(st.Event, f) {
				want = append(want, st.Index)
			}
		}
		got := pageIndexes(t, s, f)
		if !slices.Equal(got, want) {
			t.Errorf("%+v: %d events %v..., want %d %v...", f, len(got), first5(got), len(want), first5(want))
		}
	}
}

// chains makes sealed events of several agents, each continuing its own
// chain: file reads by three users, one second apart by seq.
type chains struct {
	start time.Time
	prev  map[string]string
	seqs  map[string]uint64
}

func newChains(start time.Time) *chains {
	return &chains{start: start, prev: map[string]string{}, seqs: map[string]uint64{}}
}

// next returns a's next n events after skip lost seqs; mk, if set, changes
// event i before it is sealed.
func (c *chains) next(t *testing.T, a string, n int, skip uint64, mk func(i int, e *event.Event)) []event.Event {
	t.Helper()
	evs := make([]event.Event, 0, n)
	c.seqs[a] += skip
	for i := range n {
		c.seqs[a]++
		e := event.Event{Agent: a, Seq: c.seqs[a], Control: "fileaccess", Type: "file.read", Severity: event.Info,
			User: fmt.Sprintf("u%d", i%3), Object: fmt.Sprintf(`D:\f%d`, i), Time: c.start.Add(time.Duration(c.seqs[a]) * time.Second)}
		if mk != nil {
			mk(i, &e)
		}
		if err := e.Seal(c.prev[a]); err != nil {
			t.Fatal(err)
		}
		c.prev[a] = e.Hash
		evs = append(evs, e)
	}
	return evs
}
