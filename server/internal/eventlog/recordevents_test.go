package eventlog

import (
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// recordsDB opens a database on one connection with record_events and a
// records table holding the payloads of batches, one record each, with
// their first log index.
func recordsDB(t *testing.T, batches ...[]event.Event) (*sql.DB, []int64) {
	t.Helper()
	if err := registerRecordEvents(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	for _, q := range []string{recordEventsSQL, `CREATE TABLE records (lo INTEGER PRIMARY KEY, agent TEXT NOT NULL, payload BLOB NOT NULL)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	var los []int64
	lo := int64(100)
	for _, evs := range batches {
		insertRecord(t, db, lo, evs)
		los = append(los, lo)
		lo += int64(len(evs)) + 3 // records need not be adjacent here
	}
	return db, los
}

// insertRecord stores evs as the record at lo of a test's records table
// and returns their attrs' canonical encodings.
func insertRecord(tb testing.TB, db interface {
	Exec(string, ...any) (sql.Result, error)
}, lo int64, evs []event.Event) [][]byte {
	tb.Helper()
	attrs, err := validAttrs(evs)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := appendPayload(nil, evs, attrs)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO records VALUES (?, ?, ?)`, lo, evs[0].Agent, p); err != nil {
		tb.Fatal(err)
	}
	return attrs
}

// sealedChain returns n chained events of agent, with users, objects and
// register ids that differ from event to event.
func sealedChain(t testing.TB, agent string, n int) []event.Event {
	t.Helper()
	evs := make([]event.Event, n)
	prev := ""
	for i := range evs {
		e := event.Event{Agent: agent, Seq: uint64(i + 1), Time: time.Date(2026, 12, 6, 10, 0, i, 0, time.UTC),
			Control: "media", Type: []string{"media.mount", "media.write", "media.eject"}[i%3], Severity: event.Warning,
			User: fmt.Sprintf(`OFFICE\user%02d`, i%4), Object: fmt.Sprintf(`E:\持出し\%03d.csv`, i), RegisterID: "MB-0001"}
		if i%5 == 0 {
			e.Attrs = event.Attrs{"serial": fmt.Sprint("SN", i)}
		}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev, evs[i] = e.Hash, e
	}
	return evs
}

const recordEventsSelect = `SELECT r.lo + e.i, r.agent, e.seq, e.time, e.control, e.type, e.severity, e.user, e.process, e.object,
	e.register_id, e.attrs, e.prev, e.hash FROM records r, record_events(r.payload) e`

// scanRecordEvents reads recordEventsSelect's rows as scanStored reads rows
// of events.
func scanRecordEvents(t *testing.T, db *sql.DB, where string, args ...any) []Stored {
	t.Helper()
	rows, err := db.Query(recordEventsSelect+" "+where, args...)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	defer rows.Close()
	var out []Stored
	for rows.Next() {
		var (
			st                                      Stored
			seq, tm                                 int64
			control, typ, sev, user, proc, obj, reg sql.NullString
			attrs                                   sql.NullString
			prev, hash                              []byte
		)
		if err := rows.Scan(&st.Index, &st.Agent, &seq, &tm, &control, &typ, &sev, &user, &proc, &obj, &reg, &attrs, &prev, &hash); err != nil {
			t.Fatal(err)
		}
		st.Seq, st.Time = uint64(seq), time.Unix(0, tm).UTC()
		st.Control, st.Type, st.Severity = control.String, typ.String, event.Severity(sev.String)
		st.User, st.Process, st.Object, st.RegisterID = user.String, proc.String, obj.String, reg.String
		if attrs.Valid {
			if err := json.Unmarshal([]byte(attrs.String), &st.Attrs); err != nil {
				t.Fatal(err)
			}
		}
		if prev != nil {
			st.Prev = hex.EncodeToString(prev)
		}
		st.Hash = hex.EncodeToString(hash)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return out
}

// TestRecordEvents: SQL over records through record_events returns each
// event as stored, with its log index, NULL for empty fields, in log order
// without a sort, and bounds on i select what SQLite's own comparison
// would.
func TestRecordEvents(t *testing.T) {
	a, _ := payloadEvents(t)
	b := sealedChain(t, "pc-002", 40)
	db, los := recordsDB(t, a, b)
	want := func(lo int64, evs []event.Event, is ...int) []Stored {
		var out []Stored
		for _, i := range is {
			out = append(out, Stored{Event: evs[i], Index: lo + int64(i)})
		}
		return out
	}
	span := func(n int) []int {
		var is []int
		for i := range n {
			is = append(is, i)
		}
		return is
	}
	same := func(name string, got, want []Stored) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d", name, len(got), len(want))
		}
		for k := range got {
			if got[k].Index != want[k].Index || got[k].Agent != want[k].Agent {
				t.Fatalf("%s: event %d is %s/%d, want %s/%d", name, k, got[k].Agent, got[k].Index, want[k].Agent, want[k].Index)
			}
			samePayloadEvent(t, k, got[k].Event, want[k].Event)
		}
	}
	all := append(want(los[0], a, span(len(a))...), want(los[1], b, span(len(b))...)...)
	same("all", scanRecordEvents(t, db, "ORDER BY r.lo, e.i"), all)
	same("a range", scanRecordEvents(t, db, "WHERE r.lo + e.i BETWEEN ? AND ? ORDER BY r.lo, e.i", los[0]+5, los[1]+2),
		append(want(los[0], a, 5, 6), want(los[1], b, 0, 1, 2)...))
	same("empty user is NULL", scanRecordEvents(t, db, "WHERE e.user IS NULL"), want(los[0], a, 1))
	same("a value", scanRecordEvents(t, db, "WHERE e.type = 'media.eject' AND e.i < 9 ORDER BY r.lo, e.i"), want(los[1], b, 2, 5, 8))

	// Bounds on i, integers (the cursor seeks) and not (SQLite compares:
	// every integer is less than any text, NULL matches nothing).
	for _, c := range []struct {
		where string
		args  []any
		is    []int
	}{
		{"e.i = ?", []any{3}, []int{3}},
		{"e.i >= ?", []any{37}, []int{37, 38, 39}},
		{"e.i > ? AND e.i <= ?", []any{10, 12}, []int{11, 12}},
		{"e.i < ?", []any{2}, []int{0, 1}},
		{"e.i = ?", []any{-1}, nil},
		{"e.i = ?", []any{int64(1) << 40}, nil},
		{"e.i > ?", []any{int64(-1) << 62}, span(40)},
		{"e.i < ?", []any{int64(1) << 62}, span(40)},
		{"e.i >= ? AND e.i < ?", []any{2.5, 5}, []int{3, 4}},
		{"e.i < ?", []any{"x"}, span(40)},
		{"e.i = ?", []any{nil}, nil},
		{"e.i IN (1, 4, 39)", nil, []int{1, 4, 39}},
	} {
		got := scanRecordEvents(t, db, "WHERE r.lo = ? AND "+c.where+" ORDER BY e.i", append([]any{los[1]}, c.args...)...)
		same(fmt.Sprint(c.where, c.args), got, want(los[1], b, c.is...))
	}

	// With the record's first index as base, idx is the log index and
	// bounds on it seek as bounds on i do; without a base idx is NULL.
	byIdx := `SELECT e.idx FROM records r CROSS JOIN record_events(r.payload, r.lo) AS e WHERE r.lo = ? AND `
	// Bounds on time skip events undecoded, and bounds on text columns by
	// reading the one field (byte order, NULL matching nothing, other
	// values compared by SQLite); SQLite still checks each bound.
	// sealedChain's events are a second apart.
	lo, t0, sec := los[1], b[0].Time.UnixNano(), int64(time.Second)
	for _, c := range []struct {
		where string
		args  []any
		is    []int
	}{
		{"e.idx = ?", []any{lo + 3}, []int{3}},
		{"e.idx >= ? AND e.idx < ?", []any{lo + 37, lo + 100}, []int{37, 38, 39}},
		{"e.idx > ? AND e.i <= ?", []any{lo + 10, 12}, []int{11, 12}},
		{"e.idx < ?", []any{lo}, nil},
		{"e.idx > ?", []any{int64(math.MinInt64)}, span(40)},
		{"e.idx < ?", []any{int64(math.MaxInt64)}, span(40)},
		{"e.idx >= ? AND e.idx < ?", []any{float64(lo) + 2.5, lo + 5}, []int{3, 4}},
		{"e.idx = ?", []any{nil}, nil},
		{"e.time >= ? AND e.time < ?", []any{t0 + 5*sec, t0 + 8*sec}, []int{5, 6, 7}},
		{"e.time > ? AND e.time <= ?", []any{t0 + 5*sec, t0 + 8*sec}, []int{6, 7, 8}},
		{"e.time = ?", []any{t0 + 39*sec}, []int{39}},
		{"e.time > ?", []any{int64(math.MaxInt64)}, nil},
		{"e.time <= ?", []any{int64(math.MinInt64)}, nil},
		{"e.time >= ? AND e.time < ?", []any{float64(t0) + 2.5*float64(sec), t0 + 4*sec}, []int{3}},
		{"e.time < ?", []any{"x"}, span(40)},
		{"e.time = ?", []any{nil}, nil},
		{"e.time >= ? AND e.i < ?", []any{t0 + 30*sec, 32}, []int{30, 31}},
		{"e.type = ? AND e.i < ?", []any{"media.eject", 12}, []int{2, 5, 8, 11}},
		{"e.user = ? AND e.i < ?", []any{`OFFICE\user01`, 12}, []int{1, 5, 9}},
		{"e.object >= ? AND e.object < ?", []any{`E:\持出し\035`, `E:\持出し\038`}, []int{35, 36, 37}},
		{"e.object > ? AND e.object <= ?", []any{`E:\持出し\035.csv`, `E:\持出し\037.csv`}, []int{36, 37}},
		{"e.object > ? AND e.object <= ?", []any{`E:\持出し\035`, `E:\持出し\037`}, []int{35, 36}}, // "035.csv" > "035"
		{"e.process = ?", []any{""}, nil},
		{"e.type = ?", []any{5}, nil},
		{"e.register_id = ? AND e.type = ? AND e.i > ?", []any{"MB-0001", "media.mount", 33}, []int{36, 39}},
		{"e.type = ? AND e.time >= ?", []any{"media.write", t0 + 30*sec}, []int{31, 34, 37}},
		{"e.severity < ?", []any{"warning"}, nil},
		{"e.control = ?", []any{[]byte("media")}, nil},
	} {
		rows, err := db.Query(byIdx+c.where+" ORDER BY e.idx", append([]any{lo}, c.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var is []int
		for rows.Next() {
			var x int64
			if err := rows.Scan(&x); err != nil {
				t.Fatal(err)
			}
			is = append(is, int(x-lo))
		}
		rows.Close()
		if !slices.Equal(is, c.is) {
			t.Errorf("%s %v: %v, want %v", c.where, c.args, is, c.is)
		}
	}
	if plan := strings.Join(explain(t, db, byIdx+"e.user = ?", lo, "x"), "\n"); !strings.Contains(plan, ":D=") {
		t.Errorf("a bound on user is not the function's:\n%s", plan)
	}
	if plan := strings.Join(explain(t, db, byIdx+"e.time >= ?", lo, t0), "\n"); !strings.Contains(plan, ":tg") {
		t.Errorf("a bound on time is not the function's:\n%s", plan)
	}
	var nulls int
	if err := db.QueryRow(`SELECT count(*) FROM records r, record_events(r.payload) e WHERE e.idx IS NULL`).Scan(&nulls); err != nil || nulls != len(a)+len(b) {
		t.Errorf("idx without a base: %d NULL of %d, %v", nulls, len(a)+len(b), err)
	}
	plan := strings.Join(explain(t, db, byIdx+"e.idx >= ? ORDER BY e.idx", lo, lo+3), "\n")
	if !strings.Contains(plan, "VIRTUAL TABLE INDEX 2:xg") {
		t.Errorf("a bound on idx does not seek:\n%s", plan)
	}

	// Log order comes from the records' key; SQLite tells a table-valued
	// function the order wanted only when it reads it alone, so in a join
	// it sorts each record's rows (a record at a time, as for a key's rows
	// in TestQueryPlans), never the whole result.
	plan = strings.Join(explain(t, db, recordEventsSelect+" WHERE r.lo >= ? ORDER BY r.lo, e.i", los[0]), "\n")
	if !strings.Contains(plan, "SEARCH r USING INTEGER PRIMARY KEY") || strings.Contains(strings.ReplaceAll(plan, "USE TEMP B-TREE FOR LAST TERM OF ORDER BY", ""), "TEMP B-TREE") {
		t.Errorf("plan:\n%s", plan)
	}
	for _, order := range []string{"i", "i DESC", "seq DESC"} {
		rows, err := db.Query(`SELECT i FROM record_events((SELECT payload FROM records WHERE lo = ?)) ORDER BY `+order, los[1])
		if err != nil {
			t.Fatal(err)
		}
		var is []int
		for rows.Next() {
			var i int
			rows.Scan(&i)
			is = append(is, i)
		}
		rows.Close()
		if want := span(len(b)); order != "i" {
			slices.Reverse(want)
			if !slices.Equal(is, want) {
				t.Errorf("ORDER BY %s: %v", order, is)
			}
		} else if !slices.Equal(is, want) {
			t.Errorf("ORDER BY %s: %v", order, is)
		}
	}
	plan = strings.Join(explain(t, db, `SELECT i, seq FROM record_events((SELECT payload FROM records WHERE lo = ?)) ORDER BY i`, los[1]), "\n")
	if strings.Contains(plan, "TEMP B-TREE") {
		t.Errorf("one record's events sorted again:\n%s", plan)
	}
}

// TestRecordEventsRefused: a damaged payload or a missing argument is an
// error from the query, never a panic or rows made up.
func TestRecordEventsRefused(t *testing.T) {
	db, los := recordsDB(t, sealedChain(t, "pc-003", 5))
	var p []byte
	if err := db.QueryRow(`SELECT payload FROM records`).Scan(&p); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`SELECT count(*) FROM record_events`, `SELECT count(*) FROM record_events(1)`} {
		var n int
		if err := db.QueryRow(q).Scan(&n); err == nil {
			t.Errorf("%s = %d, want an error", q, n)
		}
	}
	for _, bad := range [][]byte{p[:len(p)-1], append([]byte{9}, p[1:]...), {}} {
		if _, err := db.Exec(`UPDATE records SET payload = ? WHERE lo = ?`, bad, los[0]); err != nil {
			t.Fatal(err)
		}
		rows, err := db.Query(recordEventsSelect)
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
			rows.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "record") {
			t.Errorf("payload of %d bytes: %v, want an error", len(bad), err)
		}
		// Given the record's end as well, as the store reads records, the
		// damaged record reads as its five events, each that does not
		// decode (here at least the last) with nothing but its place: the
		// audit names them instead of failing.
		rows, err = db.Query(`SELECT e.idx, e.seq, e.hash, e.type FROM records r CROSS JOIN record_events(r.payload, r.lo, r.lo + 5) AS e`)
		if err != nil {
			t.Fatal(err)
		}
		var idxs []int64
		for rows.Next() {
			var (
				idx       int64
				seq, hash any
				typ       any
			)
			if err := rows.Scan(&idx, &seq, &hash, &typ); err != nil {
				t.Fatal(err)
			}
			if idx == los[0]+4 && (seq != nil || hash != nil || typ != nil) {
				t.Errorf("damaged event %d: seq %v hash %v type %v, want NULL", idx, seq, hash, typ)
			}
			idxs = append(idxs, idx)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil || !slices.Equal(idxs, []int64{los[0], los[0] + 1, los[0] + 2, los[0] + 3, los[0] + 4}) {
			t.Errorf("payload of %d bytes with the record's end: %v %v", len(bad), idxs, err)
		}
	}
}

// BenchmarkRecordEvents reads the same office events as rows of a table
// and as records through record_events, in one SQLite file (the figures in
// docs/record-store.md, "Reads"): MAMORI_BENCH_EVENTS events (default
// 128,000) from 32 agents in records of 500.
//
//	go test -run '^$' -bench RecordEvents -benchtime 5x ./server/internal/eventlog/
func BenchmarkRecordEvents(b *testing.B) {
	n := 128000
	if v := os.Getenv("MAMORI_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 16000 {
			b.Fatalf("MAMORI_BENCH_EVENTS=%q: want a number >= 16000", v)
		}
	}
	const agents, batch = 32, 500
	if err := registerRecordEvents(); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{`PRAGMA journal_mode=WAL`, recordEventsSQL,
		`CREATE TABLE records (lo INTEGER PRIMARY KEY, agent TEXT NOT NULL, payload BLOB NOT NULL)`,
		`CREATE TABLE events (idx INTEGER PRIMARY KEY, agent TEXT, seq INTEGER, time INTEGER, control TEXT, type TEXT,
			severity TEXT, user TEXT, process TEXT, object TEXT, register_id TEXT, attrs TEXT, prev BLOB, hash BLOB)`} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(q, err)
		}
	}
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	var idx int64
	chains := make([][]event.Event, agents)
	for a := range chains {
		chains[a] = officeChain(b, fmt.Sprintf("pc-%05d", a), n/agents, uint64(a))
	}
	for off := 0; off < n/agents; off += batch {
		for _, ch := range chains {
			evs := ch[off:min(off+batch, len(ch))]
			attrs := insertRecord(b, tx, idx, evs)
			for i, e := range evs {
				var r row
				if err := r.set(&e, attrs[i]); err != nil {
					b.Fatal(err)
				}
				vals, err := r.vals()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.Exec(`INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
					append([]any{idx + int64(i)}, vals[:]...)...); err != nil {
					b.Fatal(err)
				}
			}
			idx += int64(len(evs))
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	mid, last := idx/2, chains[agents-1][0].Agent
	for _, c := range []struct{ name, rows, records string }{
		{"count-by-type", `SELECT type, count(*) FROM events GROUP BY type`,
			`SELECT e.type, count(*) FROM records r, record_events(r.payload) e GROUP BY e.type`},
		// One PC's deletions, with no index on either: a scan of the log
		// until the page is full.
		{"scan-for-page", fmt.Sprintf(`SELECT idx, object FROM events WHERE type = 'file.deleted' AND agent = '%s' ORDER BY idx LIMIT 100`, last),
			fmt.Sprintf(`SELECT r.lo + e.i, e.object FROM records r, record_events(r.payload) e WHERE e.type = 'file.deleted' AND r.agent = '%s' ORDER BY r.lo, e.i LIMIT 100`, last)},
		{"page-from-index", fmt.Sprintf(`SELECT idx, object FROM events WHERE idx >= %d ORDER BY idx LIMIT 100`, mid),
			fmt.Sprintf(`SELECT r.lo + e.i, e.object FROM records r, record_events(r.payload) e WHERE r.lo > %d - %d AND e.i >= %d - r.lo ORDER BY r.lo, e.i LIMIT 100`, mid, batch, mid)},
		{"one-event", fmt.Sprintf(`SELECT idx, object FROM events WHERE idx = %d`, mid+123),
			fmt.Sprintf(`SELECT r.lo + e.i, e.object FROM records r, record_events(r.payload) e WHERE r.lo > %d - %d AND r.lo <= %d AND e.i = %d - r.lo`, mid+123, batch, mid+123, mid+123)},
	} {
		var want int
		for _, form := range []struct{ name, q string }{{"rows", c.rows}, {"records", c.records}} {
			b.Run(c.name+"/"+form.name, func(b *testing.B) {
				for range b.N {
					rows, err := db.Query(form.q)
					if err != nil {
						b.Fatal(err)
					}
					got := 0
					for rows.Next() {
						got++
					}
					if err := rows.Err(); err != nil {
						b.Fatal(err)
					}
					rows.Close()
					if form.name == "rows" {
						want = got
					} else if got != want || got == 0 {
						b.Fatalf("%d rows as records, %d as rows", got, want)
					}
				}
			})
		}
	}
}
