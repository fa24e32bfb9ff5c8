package eventlog

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"

	"github.com/rs/zerolog"
)

// TestMergePolicy appends runs of random sizes as the indexer would (small
// at light ingest, up to a batch at saturation, large at catch-up) and
// checks after each that tiers never increase along the log and that the
// runs below the final tier stay few.
func TestMergePolicy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var runs []keyRun
	at, merges := int64(0), 0
	for i := 0; i < 20000; i++ {
		n := int64(1 + rng.IntN(600))
		switch rng.IntN(10) {
		case 0:
			n = indexBatch
		case 1:
			n = 8 * indexBatch
		}
		a := absorbFrom(runs, at, at+n)
		r := keyRun{lo: at, hi: at + n}
		if a < len(runs) {
			r.lo = runs[a].lo
		}
		runs = append(runs[:a:a], r)
		at += n
		for j := mergeDue(runs); j >= 0; j = mergeDue(runs) {
			m := keyRun{lo: runs[j].lo, hi: runs[j+runFanIn-1].hi}
			runs = append(append(runs[:j:j], m), runs[j+runFanIn:]...)
			merges++
		}
		small := 0
		for k, r := range runs {
			if k > 0 && tier(r.hi-r.lo) > tier(runs[k-1].hi-runs[k-1].lo) && tier(runs[k-1].hi-runs[k-1].lo) < runFinal {
				t.Fatalf("after %d runs: tier rises at run %d: %v", i+1, k, runs)
			}
			if tier(r.hi-r.lo) < runFinal {
				small++
			}
		}
		if small > (runFanIn-1)*runFinal+runFanIn {
			t.Fatalf("after %d runs: %d runs below the final tier", i+1, small)
		}
		if !covered(runs, at) {
			t.Fatalf("runs do not cover [0, %d): %v", at, runs)
		}
	}
	t.Logf("%d events in %d runs after %d merges", at, len(runs), merges)
}

func covered(runs []keyRun, n int64) bool {
	at := int64(0)
	for _, r := range runs {
		if r.lo != at {
			return false
		}
		at = r.hi
	}
	return at == n
}

// TestKeyRuns indexes a log as many small runs, which merge, and checks
// every page against a scan; then that the runs survive a restart without
// a rebuild, and that a keys file from before runs (one event_keys table)
// or a run's table gone makes the open rebuild.
func TestKeyRuns(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	start, mid := fillPlanLog(t, s)
	size := s.size.Load()
	if err := s.SetWatermark(ctx, 0); err != nil { // holds the indexer
		t.Fatal(err)
	}
	indexBy(t, s, size, 300, nil)
	runs, merges := s.Runs()
	if merges == 0 || !covered(s.runs, size) || s.Indexed() != size {
		t.Fatalf("%d events: runs %v after %d merges, watermark %d", size, runs, merges, s.Indexed())
	}
	t.Logf("%d events in runs %v after %d merges", size, runs, merges)
	if lag, n := s.IndexLag(); lag != 0 || n != len(runs) {
		t.Errorf("IndexLag %d events, %d runs; want 0, %d", lag, n, len(runs))
	}
	checkPlans(t, s, false, start, mid)
	// A new run read from the log seeks each form of it by primary key.
	for _, q := range []string{logValsRows, logValsRecords} {
		if plan := strings.Join(explain(t, s.kdb, q, 0, size), "; "); !strings.Contains(plan, "USING INTEGER PRIMARY KEY") || strings.Contains(plan, "SCAN") {
			t.Errorf("a run's values are read by %s", plan)
		}
	}

	reopen := func(what string) {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err = OpenSQLite(ctx, path, zerolog.Nop()); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !covered(s.runs, size) || s.Indexed() != size {
			t.Fatalf("%s: runs %v, watermark %d", what, s.runs, s.Indexed())
		}
		checkPlans(t, s, false, start, mid)
	}
	keysFile := func(stmts ...string) {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", path+"-keys")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, st := range stmts {
			if _, err := db.Exec(st); err != nil {
				t.Fatalf("%s: %v", st, err)
			}
		}
		if s, err = OpenSQLite(ctx, path, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
	}

	reopen("restart")
	if s.IndexRuns() != 0 {
		t.Errorf("restart rebuilt %d runs", s.IndexRuns())
	}

	// A keys file from before runs (every key in event_keys, no key_runs):
	// the open registers event_keys as the one run, finds it not a run of
	// key blocks and rebuilds.
	var drop []string
	for _, r := range s.runs {
		drop = append(drop, "DROP TABLE "+r.name)
	}
	keysFile(append(drop, "DROP TABLE key_runs", "INSERT INTO event_keys (kind, val, pos) VALUES (5, 'x', 0)")...)
	if !covered(s.runs, size) || s.runs[0].name == "event_keys" || s.IndexRuns() == 0 {
		t.Fatalf("keys file from before runs: runs %v, %d indexed at open", s.runs, s.IndexRuns())
	}
	checkPlans(t, s, false, start, mid)

	// A run's table gone: the open rebuilds the keys.
	if err := s.SetWatermark(ctx, size); err != nil { // three runs
		t.Fatal(err)
	}
	keysFile("DROP TABLE " + s.runs[1].name)
	defer s.Close()
	if !covered(s.runs, size) || s.Indexed() != size || s.IndexRuns() == 0 {
		t.Fatalf("a run's table gone: runs %v, watermark %d, %d runs built", s.runs, s.Indexed(), s.IndexRuns())
	}
	checkPlans(t, s, false, start, mid)
}

// TestRunsOfRangeKeys: runs hold range keys (runkeys.go), each read from the
// log; every page is checked against a scan, then again after a restart,
// and a keys file of the format before is rebuilt.
func TestRunsOfRangeKeys(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.indexPaused.Store(true)
	start, mid := fillPlanLog(t, s)
	size := s.size.Load()
	indexBy(t, s, size, 700, nil)
	if !covered(s.runs, size) || s.Indexed() != size {
		t.Fatalf("runs %v, watermark %d", s.runs, s.Indexed())
	}
	// fillPlanLog's users take turns within each batch: one key covers many rows.
	for _, r := range s.runs {
		keys, err := s.runKeysOf(ctx, r.name)
		if err != nil {
			t.Fatal(err)
		}
		var ranges, users int
		for _, k := range keys {
			if k.kind == 4 {
				users++
				if k.upto != 0 {
					ranges++
				}
			}
		}
		if ranges == 0 {
			t.Errorf("run %v: %d user keys, none a range", r, users)
		}
	}
	checkPlans(t, s, false, start, mid)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenSQLite(ctx, path, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if !covered(s.runs, size) || s.IndexRuns() != 0 {
		t.Fatalf("restart: runs %v, %d built", s.runs, s.IndexRuns())
	}
	checkPlans(t, s, false, start, mid)

	// A server from before range keys finds last unlike the hash it wants,
	// and rebuilds rather than misread them.
	var last, hash []byte
	if err := s.kdb.QueryRowContext(ctx, `SELECT last, (SELECT hash FROM `+logEvents+` WHERE idx = watermark - 1) FROM index_state`).Scan(&last, &hash); err != nil {
		t.Fatal(err)
	}
	if len(hash) != 32 || !bytes.Equal(last, append(hash, keysFormat)) {
		t.Errorf("index_state.last %x for hash %x", last, hash)
	}

	// A keys file of the format before (runs of key rows, last the hash
	// and 1) is rebuilt at the open.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path+"-keys")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE index_state SET last = ?`, append(hash, 1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err = OpenSQLite(ctx, path, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !covered(s.runs, size) || s.IndexRuns() == 0 {
		t.Fatalf("keys file of format 1: runs %v, %d built", s.runs, s.IndexRuns())
	}
	checkPlans(t, s, false, start, mid)
}

// TestAbsorbedRuns: a run that takes in the smaller runs before it
// (absorbFrom), as after a merge at 50,000 events/s, replaces them with
// their keys and its own.
func TestAbsorbedRuns(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.indexPaused.Store(true)
	start, mid := fillPlanLog(t, s)
	conn, err := s.kdb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s.imu.Lock()
	for _, hi := range []int64{700, 1400, 2100, 2100 + runUnit} {
		if err := s.addRun(ctx, conn, s.Indexed(), hi); err != nil {
			s.imu.Unlock()
			t.Fatal(err)
		}
	}
	s.imu.Unlock()
	if len(s.runs) != 1 || s.runs[0].lo != 0 || s.runs[0].hi != 2100+runUnit {
		t.Fatalf("runs %v, want one from 0", s.runs)
	}
	checkPlans(t, s, false, start, mid)
}

// TestLogVals: the values the indexer reads back from the log are the
// ones the writer handed over, from rows and from records, over windows
// that start and end inside a record, empty fields and all.
func TestLogVals(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	var want []keyVals // by log index
	prev, seqs := map[string]string{}, map[string]uint64{}
	appendSome := func(s *SQLite, n int) {
		t.Helper()
		for b := 0; b < n; b++ {
			a := fmt.Sprintf("pc-%d", b%3)
			var evs []event.Event
			for i := range 7 + b%5 {
				seqs[a]++
				seq := seqs[a]
				e := event.Event{Agent: a, Seq: seq, Time: time.Now().UTC(), Control: "fileaccess",
					Type: "file.read", Severity: event.Info, User: fmt.Sprintf("u%d", i%3), Object: fmt.Sprintf(`D:\個人情報\顧客%d.xlsx`, seq)}
				switch i % 4 {
				case 1:
					e.User = ""
				case 2:
					e.RegisterID = "R-" + fmt.Sprint(seq%5)
				case 3:
					e.Object = ""
				}
				if err := e.Seal(prev[a]); err != nil {
					t.Fatal(err)
				}
				prev[a] = e.Hash
				evs = append(evs, e)
			}
			if _, err := s.Append(ctx, a, evs); err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				want = append(want, keyVals{e.Agent, e.User, e.Object, e.RegisterID})
			}
		}
	}
	for _, records := range []bool{false, true} {
		restore := SetWriteRecords(records)
		s, err := OpenSQLite(ctx, path, zerolog.Nop())
		restore()
		if err != nil {
			t.Fatal(err)
		}
		s.indexPaused.Store(true)
		appendSome(s, 12)
		if s.size.Load() != int64(len(want)) {
			t.Fatalf("log of %d events, %d appended", s.size.Load(), len(want))
		}
		conn, err := s.kdb.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		n := int64(len(want))
		for _, w := range [][2]int64{{0, n}, {3, n - 2}, {n / 2, n/2 + 1}, {n - 1, n}} {
			got, err := logVals(ctx, tx, w[0], w[1])
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want[w[0]:w[1]]) {
				t.Errorf("records %v: [%d, %d):\n got %v\nwant %v", records, w[0], w[1], got, want[w[0]:w[1]])
			}
		}
		tx.Rollback()
		conn.Close()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// indexBy adds runs of step events up to size, as the indexer does, merging
// after each; before, if not nil, runs before each run is added.
func indexBy(t *testing.T, s *SQLite, size, step int64, before func(lo, hi int64)) {
	t.Helper()
	ctx := context.Background()
	conn, err := s.kdb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s.imu.Lock()
	defer s.imu.Unlock()
	for lo := int64(0); lo < size; lo += step {
		hi := min(lo+step, size)
		if before != nil {
			before(lo, hi)
		}
		if err := s.addRun(ctx, conn, lo, hi); err != nil {
			t.Fatal(err)
		}
		if err := s.compact(ctx, conn); err != nil {
			t.Fatal(err)
		}
	}
}
