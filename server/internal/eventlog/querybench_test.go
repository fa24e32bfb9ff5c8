package eventlog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// BenchmarkQueryFilters reports the p50/p95 latency of one Query page (limit
// 100) for each filter combination the API allows, on a large SQLite store,
// first page and a page from a cursor in the middle of the log.
//
// The store is MAMORI_BENCH_DB if set (an existing store of the web
// benchmark's shape, e.g. a copy of /tmp/mamori-web-bench-10000000/events.db;
// it is migrated in place), else one of MAMORI_BENCH_EVENTS events (default
// 200,000) built once and cached in $TMPDIR/mamori-eventlog-query-<events>:
//
//	MAMORI_BENCH_DB=/tmp/qbench/events.db go test -run '^$' -bench QueryFilters -benchtime 20x ./server/internal/eventlog/
//
// Shape (as server/internal/web's fixture): 1,000 agents over 30 days,
// interleaved in 20 rounds; mostly file access by 200 users in ten
// department folders (one folder = 10% of the log), media events every 97th,
// status events every 500th.
func BenchmarkQueryFilters(b *testing.B) {
	ctx := context.Background()
	path := os.Getenv("MAMORI_BENCH_DB")
	if path == "" {
		total := 200_000
		if v := os.Getenv("MAMORI_BENCH_EVENTS"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < benchQueryHosts*20 {
				b.Fatalf("MAMORI_BENCH_EVENTS=%q: want a number >= %d", v, benchQueryHosts*20)
			}
			total = n
		}
		path = buildQueryFixture(b, total)
	}
	t0 := time.Now()
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.New(zerolog.NewTestWriter(b)).Level(zerolog.WarnLevel))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.Logf("opened %s in %s", path, time.Since(t0).Round(time.Millisecond))
	size, err := s.TreeSize(ctx)
	if err != nil || size == 0 {
		b.Fatalf("tree size %d, %v", size, err)
	}
	var first, last time.Time
	for _, c := range []string{"0", strconv.FormatInt(size-2, 10)} {
		p, err := s.Query(ctx, eventlog.Filter{Cursor: c, Limit: 1})
		if err != nil || len(p.Events) != 1 {
			b.Fatalf("cursor %s: %v", c, err)
		}
		first, last = last, p.Events[0].Time
	}
	first = first.Add(-time.Hour)
	last = last.Add(time.Hour)
	end := last.Truncate(time.Hour)
	mid := first.Add(last.Sub(first) / 2).Truncate(time.Hour)
	agent := "ag-bench0003"
	folder, file := `D:\顧客\部署3\`, `D:\顧客\部署3\file-00042.xlsx`
	filters := []struct {
		name string
		f    eventlog.Filter
	}{
		{"all", eventlog.Filter{}},
		{"agent", eventlog.Filter{Agent: agent}},
		{"agent+day", eventlog.Filter{Agent: agent, From: mid, To: mid.Add(24 * time.Hour)}},
		{"agent+prefix", eventlog.Filter{Agent: agent, ObjectPrefix: folder}},
		{"control", eventlog.Filter{Control: "media"}},
		{"control+type", eventlog.Filter{Control: "fileaccess", Type: "file.read"}},
		{"type-rare", eventlog.Filter{Type: "screenlock.status"}},
		{"user", eventlog.Filter{User: "user003"}},
		{"user+prefix", eventlog.Filter{User: "user003", ObjectPrefix: folder}},
		{"user+prefix-other", eventlog.Filter{User: "user004", ObjectPrefix: folder}},
		{"user+last3days", eventlog.Filter{User: "user003", From: end.Add(-72 * time.Hour)}},
		{"register", eventlog.Filter{RegisterID: "PI-001"}},
		{"prefix-broad", eventlog.Filter{ObjectPrefix: folder}},
		{"prefix-file", eventlog.Filter{ObjectPrefix: file}},
		{"prefix+last3days", eventlog.Filter{ObjectPrefix: folder, From: end.Add(-72 * time.Hour)}},
		{"prefix+hour", eventlog.Filter{ObjectPrefix: folder, From: mid, To: mid.Add(time.Hour)}},
		{"time-all", eventlog.Filter{From: first, To: last}},
		{"time-last3days", eventlog.Filter{From: end.Add(-72 * time.Hour)}},
		{"time-day", eventlog.Filter{From: mid, To: mid.Add(24 * time.Hour)}},
		{"time-hour", eventlog.Filter{From: mid, To: mid.Add(time.Hour)}},
		{"time-empty", eventlog.Filter{From: last.Add(time.Hour), To: last.Add(2 * time.Hour)}},
		{"control+last3days", eventlog.Filter{Control: "media", From: end.Add(-72 * time.Hour)}},
	}
	for _, fc := range filters {
		for _, page := range []string{"first", "mid"} {
			f := fc.f
			f.Limit = 100
			if page == "mid" {
				f.Cursor = strconv.FormatInt(size/2, 10)
			}
			b.Run(fc.name+"/"+page, func(b *testing.B) {
				var n int
				ds := make([]time.Duration, 0, b.N)
				for b.Loop() {
					t0 := time.Now()
					p, err := s.Query(ctx, f)
					ds = append(ds, time.Since(t0))
					if err != nil {
						b.Fatal(err)
					}
					n = len(p.Events)
				}
				slices.Sort(ds)
				b.ReportMetric(float64(n), "events")
				b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(ds[min(len(ds)-1, len(ds)*95/100)].Microseconds())/1000, "p95-ms")
			})
		}
	}
}

const benchQueryHosts = 1000

// buildQueryFixture returns the path of a cached store of total events,
// building it if needed.
func buildQueryFixture(b *testing.B, total int) string {
	b.Helper()
	ctx := context.Background()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("mamori-eventlog-query-%d", total))
	path := filepath.Join(dir, "events.db")
	done := filepath.Join(dir, "complete")
	if _, err := os.Stat(done); err == nil {
		return path
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now()
	per := total / benchQueryHosts
	rounds := min(per, 20)
	start, span := time.Now().UTC().Add(-30*24*time.Hour), 30*24*time.Hour
	prev := make([]string, benchQueryHosts)
	for r := range rounds {
		for i := range benchQueryHosts {
			id := fmt.Sprintf("ag-bench%04d", i)
			var evs []event.Event
			for seq := r*per/rounds + 1; seq <= (r+1)*per/rounds; seq++ {
				var e event.Event
				switch {
				case seq%500 == 0:
					c := []string{"screenlock", "media", "backup", "posture"}[(seq/500)%4]
					e = event.Event{Control: c, Type: c + ".status", Severity: event.Info, Attrs: event.Attrs{"status": "pass"}}
				case seq%97 == 0:
					e = event.Event{Control: "media", Type: "media.inserted", Severity: event.Warning,
						User: fmt.Sprintf("user%03d", i%200), Object: "USB:AA" + strconv.Itoa(seq)}
				default:
					typ := "file.modified"
					if seq%3 == 0 {
						typ = "file.read"
					}
					e = event.Event{Control: "fileaccess", Type: typ, Severity: event.Info, User: fmt.Sprintf("user%03d", i%200),
						Process: "EXCEL.EXE", Object: fmt.Sprintf(`D:\顧客\部署%d\file-%05d.xlsx`, i%10, seq%20000)}
				}
				e.Agent, e.Seq = id, uint64(seq)
				e.Time = start.Add(time.Duration(int64(span) / int64(per) * int64(seq)))
				if err := e.Seal(prev[i]); err != nil {
					b.Fatal(err)
				}
				prev[i] = e.Hash
				evs = append(evs, e)
			}
			if _, err := s.Append(ctx, id, evs); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(done, []byte(strconv.Itoa(total)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d events in %s (%s)", total, time.Since(t0).Round(time.Second), dir)
	return path
}
