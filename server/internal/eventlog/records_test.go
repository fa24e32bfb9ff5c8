package eventlog_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
	"github.com/mamori/mamori/shared/event"
)

// TestRecordsAfterRows: a store written as rows, then reopened to write
// records (the upgrade of docs/record-store.md), reads one log across the
// boundary: every filter's pages, counts, an agent's chain continued from
// a row into a record, resends checked against both, the heads, and the
// Merkle tree (inclusion of events on both sides, the size consistent).
func TestRecordsAfterRows(t *testing.T) {
	t.Cleanup(eventlog.SetWriteRecords(false)) // the store starts as rows
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	open := func() *eventlog.SQLite {
		t.Helper()
		s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	chains := map[string][]event.Event{}
	for _, a := range []string{"pc-1", "pc-2", "pc-3"} {
		chains[a] = storetest.Chain(a, 1, 90, "")
	}
	var want []event.Event // in commit order
	appendPart := func(s *eventlog.SQLite, from, to int) {
		t.Helper()
		for _, a := range []string{"pc-1", "pc-2", "pc-3"} {
			for lo := from; lo < to; lo += 15 {
				evs := chains[a][lo:min(lo+15, to)]
				if r, err := s.Append(ctx, a, evs); err != nil || r.Stored != len(evs) {
					t.Fatalf("%s [%d, %d): %+v %v", a, lo, lo+len(evs), r, err)
				}
				want = append(want, evs...)
			}
		}
	}
	s := open()
	appendPart(s, 0, 45)
	if n := s.RecordsFrom(); n != -1 {
		t.Fatalf("rows store holds records from %d", n)
	}
	rowsRoot, err := tlog.TreeHash(int64(len(want)), s)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	eventlog.WriteRecords(t)
	s = open()
	defer s.Close()
	boundary := int64(len(want))
	appendPart(s, 45, 90)
	if got := s.RecordsFrom(); got != boundary {
		t.Fatalf("records from %d, want %d", got, boundary)
	}
	// A resend of events stored as rows and as records: duplicates; one
	// altered under a stored seq: refused.
	r, err := s.Append(ctx, "pc-2", chains["pc-2"][40:50])
	if err != nil || r.Duplicates != 10 || r.Stored != 0 {
		t.Fatalf("resend across the boundary: %+v %v", r, err)
	}
	forged := storetest.Chain("pc-2", 44, 3, chains["pc-2"][42].Hash)
	forged[0].User = "someone else"
	if err := forged[0].Seal(chains["pc-2"][42].Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "pc-2", forged[:1]); err == nil {
		t.Fatal("an event altered under a stored seq was taken")
	}

	// Pages: the whole log, then by each kind of filter, in small pages
	// that cross the boundary, against the events appended.
	all := storetest.All(t, s, eventlog.Filter{Limit: 7})
	if len(all) != len(want) {
		t.Fatalf("%d events, want %d", len(all), len(want))
	}
	for i, st := range all {
		if st.Index != int64(i) || st.Hash != want[i].Hash || st.Agent != want[i].Agent || st.Seq != want[i].Seq {
			t.Fatalf("event %d: %s/%d %s, want %s/%d %s", i, st.Agent, st.Seq, st.Hash, want[i].Agent, want[i].Seq, want[i].Hash)
		}
	}
	for _, f := range []eventlog.Filter{
		{Agent: "pc-2", Limit: 4},
		{Control: "media", Limit: 5},
		{Type: "file.read", Limit: 3},
		{User: `CORP\佐藤`, Limit: 6},
		{ObjectPrefix: `D:\顧客\`, Limit: 5},
		{RegisterID: "PI-005", Limit: 2},
		{Agent: "pc-3", Control: "fileaccess", Limit: 4},
		{From: storetest.Base.Add(30 * 60e9), To: storetest.Base.Add(70 * 60e9), Limit: 9},
		{Agent: "pc-1", From: storetest.Base.Add(40 * 60e9), ObjectPrefix: `D:\`, Limit: 3},
		// Bounds inside records (seqs 46-60 and 61-75 are one each).
		{From: storetest.Base.Add(50 * 60e9), To: storetest.Base.Add(65 * 60e9), Limit: 4},
		{From: storetest.Base.Add(50 * 60e9), To: storetest.Base.Add(65 * 60e9), Type: "file.read", Limit: 4},
	} {
		got := storetest.All(t, s, f)
		var exp []int64
		for i, e := range all {
			if matches(f, e) {
				exp = append(exp, int64(i))
			}
		}
		if len(got) != len(exp) || len(exp) == 0 {
			t.Fatalf("%+v: %d events, want %d", f, len(got), len(exp))
		}
		var rows, recs int
		for k, st := range got {
			if st.Index != exp[k] {
				t.Fatalf("%+v: event %d has index %d, want %d", f, k, st.Index, exp[k])
			}
			if st.Index < boundary {
				rows++
			} else {
				recs++
			}
		}
		if (rows == 0 && f.From.Before(storetest.Base.Add(45*60e9))) || recs == 0 {
			t.Errorf("%+v: %d from rows, %d from records: the filter does not test the boundary", f, rows, recs)
		}
	}

	// Counts and scans over both.
	groups, err := s.Count(ctx, eventlog.CountQuery{From: storetest.Base, To: storetest.Base.Add(1e15), GroupBy: []string{"agent"}, Types: []string{"media.write"}})
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]int64{}
	for _, g := range groups {
		counted[g.Keys[0]] = g.Events
	}
	exp := map[string]int64{}
	for _, e := range want {
		if e.Type == "media.write" {
			exp[e.Agent]++
		}
	}
	if fmt.Sprint(counted) != fmt.Sprint(exp) {
		t.Errorf("count: %v, want %v", counted, exp)
	}

	// A window that starts and ends inside records, with and without the
	// type keys, and a scan of it.
	from, to := storetest.Base.Add(50*60e9), storetest.Base.Add(65*60e9)
	for _, types := range [][]string{nil, {"file.read"}} {
		groups, err := s.Count(ctx, eventlog.CountQuery{From: from, To: to, GroupBy: []string{"type"}, Types: types})
		if err != nil {
			t.Fatal(err)
		}
		got, exp := map[string]int64{}, map[string]int64{}
		for _, g := range groups {
			got[g.Keys[0]] = g.Events
		}
		for _, e := range all {
			if !e.Time.Before(from) && e.Time.Before(to) && (types == nil || e.Type == types[0]) {
				exp[e.Type]++
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("count %v in [%s, %s): %v, want %v", types, from, to, got, exp)
		}
	}
	var scanned int
	if err := s.Scan(ctx, eventlog.CountQuery{From: from, To: to}, nil, func(*eventlog.ScanRow) error { scanned++; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := len(storetest.All(t, s, eventlog.Filter{From: from, To: to})); scanned != want {
		t.Errorf("scan: %d events, want %d", scanned, want)
	}

	// The tree: the rows' root is kept, inclusion proofs on both sides.
	n := int64(len(want))
	root, err := tlog.TreeHash(n, s)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := tlog.ProveTree(n, boundary, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(cons, n, root, boundary, rowsRoot); err != nil {
		t.Errorf("the tree with records does not extend the rows': %v", err)
	}
	for _, i := range []int64{0, boundary - 1, boundary, n - 1} {
		p, err := tlog.ProveRecord(n, i, s)
		if err != nil {
			t.Fatal(err)
		}
		leaf := all[i]
		if err := tlog.CheckRecord(p, n, root, i, tlog.RecordHash(storetest.Record(mustHex(t, leaf.Hash), leaf.Received))); err != nil {
			t.Errorf("inclusion of %d: %v", i, err)
		}
	}

	// Reopened, the heads and the tree are read back from records.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	h, err := s.Head(ctx, "pc-3")
	if err != nil || h.Seq != 90 || h.Hash != chains["pc-3"][89].Hash {
		t.Fatalf("head after reopen: %+v %v", h, err)
	}
	if again, err := tlog.TreeHash(n, s); err != nil || again != root {
		t.Fatalf("tree after reopen: %v %v", again, err)
	}
	if r, err := s.Append(ctx, "pc-3", storetest.Chain("pc-3", 91, 2, chains["pc-3"][89].Hash)); err != nil || r.Stored != 2 {
		t.Fatalf("append after reopen: %+v %v", r, err)
	}
}

// matches is f's filter on one stored event, as the store applies it.
func matches(f eventlog.Filter, e eventlog.Stored) bool {
	switch {
	case f.Agent != "" && e.Agent != f.Agent,
		f.Control != "" && e.Control != f.Control,
		f.Type != "" && e.Type != f.Type,
		f.User != "" && e.User != f.User,
		f.RegisterID != "" && e.RegisterID != f.RegisterID,
		f.ObjectPrefix != "" && (len(e.Object) < len(f.ObjectPrefix) || e.Object[:len(f.ObjectPrefix)] != f.ObjectPrefix),
		!f.From.IsZero() && e.Time.Before(f.From),
		!f.To.IsZero() && !e.Time.Before(f.To):
		return false
	}
	return true
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
