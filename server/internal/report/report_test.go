package report

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/incident"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

var genAgents = 200

var depts = []string{"営業部", "総務部", "経理部", "開発部"}

// tally is what the generator put in the period, counted as it went:
// the numbers the report must reproduce.
type tally struct {
	total, blocked  int64
	byControl       map[string]int64
	byDept          map[string]int64
	reported, fails map[string]map[string]bool // control -> "agent|month"
	access          map[string]int64           // register id -> file events
	accessType      map[string]map[string]int64
	users           map[string]map[string]bool
	runs            map[string]int // control -> exception runs
	runSeconds      int64          // over all runs (open ones to the period end)
	open            map[string]time.Time
}

// failing is the fault pattern: each (agent, control) fails in some
// ten-day stretches.
func failing(agent, ci, day int) bool { return (agent*7+(day/10)*13+ci*5)%23 == 0 }

// gen writes a year of 200 PCs straight into the store through Append
// (chain checks and Merkle log as for real batches), with checkpoints
// signed (backdated) at the start and end of the period.
func gen(t *testing.T, store *eventlog.SQLite, signer note.Signer, from, end time.Time) *tally {
	ctx := context.Background()
	tl := &tally{byControl: map[string]int64{}, byDept: map[string]int64{}, reported: map[string]map[string]bool{},
		fails: map[string]map[string]bool{}, access: map[string]int64{}, accessType: map[string]map[string]int64{},
		users: map[string]map[string]bool{}, runs: map[string]int{}, open: map[string]time.Time{}}
	for _, c := range Controls {
		tl.reported[c], tl.fails[c] = map[string]bool{}, map[string]bool{}
	}
	agents := genAgents
	prev := make([]string, agents)
	seq := make([]uint64, agents)
	buf := make([]event.Event, 0, 4096)
	flush := func(a int) {
		if len(buf) == 0 {
			return
		}
		if _, err := store.Append(ctx, fmt.Sprintf("pc-%03d", a), buf); err != nil {
			t.Fatal(err)
		}
		buf = buf[:0]
	}
	emit := func(a int, e event.Event, inPeriod bool) {
		seq[a]++
		e.Agent, e.Seq = fmt.Sprintf("pc-%03d", a), seq[a]
		if err := e.Seal(prev[a]); err != nil {
			t.Fatal(err)
		}
		prev[a] = e.Hash
		buf = append(buf, e)
		if len(buf) == cap(buf) {
			flush(a)
		}
		if inPeriod {
			tl.total++
			tl.byControl[e.Control]++
			tl.byDept[depts[a%4]]++
		}
	}
	checkpoint := func(at time.Time) {
		n, err := store.TreeSize(ctx)
		if err != nil {
			t.Fatal(err)
		}
		root, err := store.TreeHash(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := evidence.Sign(evidence.Checkpoint{Origin: signer.Name(), Size: n, Root: root}, signer)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.PutCheckpoint(ctx, eventlog.Checkpoint{Size: n, Root: root, Note: string(msg), Created: at}); err != nil {
			t.Fatal(err)
		}
	}
	status := func(c string, fail bool, at time.Time) event.Event {
		st, sev, reason := "pass", event.Info, c+".ok"
		if fail {
			st, sev, reason = "fail", event.Violation, c+".ng"
		}
		return event.Event{Time: at, Control: c, Type: c + ".status", Severity: sev,
			Attrs: event.Attrs{"status": st, "reason": reason, "reason_ja": c + " の設定が基準を満たしていません"}}
	}
	// Before the period: one status each, then the start checkpoint.
	for a := range agents {
		for _, c := range Controls {
			emit(a, status(c, false, from.Add(-2*time.Hour)), false)
		}
		flush(a)
	}
	checkpoint(from.Add(-time.Second))
	days := int(end.Sub(from) / (24 * time.Hour))
	types := []string{"file.created", "file.modified", "file.read"}
	for a := range agents {
		for d := range days {
			day := from.AddDate(0, 0, d)
			month := day.In(JST).Format("2006-01")
			for ci, c := range Controls {
				at := day.Add(9*time.Hour + time.Duration(ci)*time.Minute)
				f := failing(a, ci, d)
				emit(a, status(c, f, at), true)
				key := fmt.Sprintf("pc-%03d|%s", a, c)
				tl.reported[c][fmt.Sprintf("pc-%03d|%s", a, month)] = true
				if f {
					tl.fails[c][fmt.Sprintf("pc-%03d|%s", a, month)] = true
					if _, ok := tl.open[key]; !ok {
						tl.open[key] = at
						tl.runs[c]++
					}
				} else if st, ok := tl.open[key]; ok {
					tl.runSeconds += int64(at.Sub(st) / time.Second)
					delete(tl.open, key)
				}
			}
			reg := fmt.Sprintf("PI-%04d", a%20+1)
			for k := range 9 + (a+d)%3 {
				typ := types[k%3]
				user := fmt.Sprintf(`OFFICE\user%d`, (a+k)%7)
				emit(a, event.Event{Time: day.Add(10*time.Hour + time.Duration(k)*time.Minute), Control: "fileaccess", Type: typ,
					Severity: event.Info, User: user, Object: fmt.Sprintf(`D:\顧客\%d\%d.xlsx`, d, k), RegisterID: reg}, true)
				tl.access[reg]++
				if tl.accessType[reg] == nil {
					tl.accessType[reg], tl.users[reg] = map[string]int64{}, map[string]bool{}
				}
				tl.accessType[reg][typ]++
				tl.users[reg][user] = true
			}
			if (a+d)%97 == 0 {
				emit(a, event.Event{Time: day.Add(14 * time.Hour), Control: "media", Type: "media.blocked", Severity: event.Violation,
					Object: `\\.\E:`, Attrs: event.Attrs{"serial": fmt.Sprintf("S%d", d)}}, true)
				tl.blocked++
			}
		}
		flush(a)
	}
	for _, st := range tl.open {
		tl.runSeconds += int64(end.Sub(st) / time.Second)
	}
	checkpoint(end.Add(-time.Second))
	// After the period: not counted.
	for a := range agents {
		emit(a, status("screenlock", true, end.Add(time.Hour)), false)
		flush(a)
	}
	return tl
}

func TestAuditReportOverAYear(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a million events")
	}
	if raceOn {
		genAgents = 20 // 110,000 events: the figures are checked, not the time
		defer func() { genAgents = 200 }()
	}
	ctx := context.Background()
	d := newDeps(t)
	store, regs, incs := d.store, d.regs, d.incs
	skey, vkey, err := note.GenerateKey(rand.Reader, "mamori/test")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)

	from := time.Date(2025, 12, 1, 0, 0, 0, 0, JST)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, JST)
	end := last.AddDate(0, 0, 1)
	start := time.Now()
	tl := gen(t, store, signer, from, end)
	size, _ := store.TreeSize(ctx)
	t.Logf("generated %d events (%d in the period) in %v", size, tl.total, time.Since(start))
	if tl.total < int64(genAgents)*5000 {
		t.Fatalf("only %d events", tl.total)
	}

	for i := 1; i <= 20; i++ {
		reviewed := "2026-06-01"
		if i%5 == 0 {
			reviewed = "2025-06-01" // more than 12 months before the end
		}
		e := &register.PIEntry{Meta: register.Meta{ID: fmt.Sprintf("PI-%04d", i)}, Name: fmt.Sprintf("顧客名簿 %d", i), Purpose: "商品発送",
			RecordCount: 100 * i, Medium: "electronic", Owner: "山田",
			Locations: []register.Location{{Host: fmt.Sprintf("PC-%03d", i), Folder: `D:\顧客`}}, Department: depts[i%4], Retention: "5y",
			DisposalMethod: "データ消去", LastReviewed: reviewed}
		if _, err := regs.Create(ctx, "admin", e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := incs.Open(ctx, "admin", incident.OpenRequest{Title: "USB メモリの紛失", DiscoveredAt: from.AddDate(0, 3, 0)}); err != nil {
		t.Fatal(err)
	}
	var agents []Agent
	for a := range genAgents {
		agents = append(agents, Agent{ID: fmt.Sprintf("pc-%03d", a), Hostname: fmt.Sprintf("PC-%03d", a), Department: depts[a%4]})
	}
	svc, err := New(Config{Store: store, Registers: regs, Incidents: incs, Verifier: verifier,
		Agents: func(context.Context) ([]Agent, error) { return agents, nil }})
	if err != nil {
		t.Fatal(err)
	}

	lag, _ := store.IndexLag()
	t.Logf("index lag before the report: %d events", lag)
	t0 := time.Now()
	cpu0, cpuOK := processCPU()
	r, err := svc.Build(ctx, Params{From: from, To: last})
	if err != nil {
		t.Fatal(err)
	}
	var html, csvb bytes.Buffer
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if err := r.CSV(&csvb); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	cpu1, _ := processCPU()
	cpu := cpu1 - cpu0
	t.Logf("report built and rendered in %v wall, %v CPU (%d bytes HTML, %d bytes CSV)", took, cpu, html.Len(), csvb.Len())
	// Within 5 s of wall time. On a machine shared with other work the
	// wall time is mostly waiting for a CPU; then what counts is the CPU
	// time the three parallel passes used, over the cores they may use
	// (the wall time they would take alone).
	cores := time.Duration(min(runtime.GOMAXPROCS(0), 3))
	if !raceOn && took > 5*time.Second && (!cpuOK || cpu/cores > 5*time.Second) {
		t.Errorf("report took %v wall and %v CPU, want <= 5s", took, cpu)
	}

	// Every number against the generator's own count.
	if r.TotalEvents != tl.total {
		t.Errorf("total %d, generated %d", r.TotalEvents, tl.total)
	}
	for c, n := range tl.byControl {
		if r.EventsByControl[c] != n {
			t.Errorf("%s events %d, generated %d", c, r.EventsByControl[c], n)
		}
	}
	if r.MediaEvents["media.blocked"] != tl.blocked {
		t.Errorf("blocked %d, generated %d", r.MediaEvents["media.blocked"], tl.blocked)
	}
	var runs int
	var secs int64
	for _, c := range r.Controls {
		hostMonths, failMonths := 0, 0
		for _, m := range c.Months {
			hostMonths += m.Hosts
			failMonths += m.Failing
		}
		if hostMonths != len(tl.reported[c.Control]) || failMonths != len(tl.fails[c.Control]) {
			t.Errorf("%s: host-months %d/%d failing, generated %d/%d", c.Control, hostMonths, failMonths,
				len(tl.reported[c.Control]), len(tl.fails[c.Control]))
		}
		want := float64(len(tl.reported[c.Control])-len(tl.fails[c.Control])) / float64(len(tl.reported[c.Control]))
		if d := c.Rate - want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s rate %v, want %v", c.Control, c.Rate, want)
		}
		if c.Exceptions != tl.runs[c.Control] {
			t.Errorf("%s exceptions %d, generated %d", c.Control, c.Exceptions, tl.runs[c.Control])
		}
		if len(c.Months) != 12 || len(c.Clauses) == 0 {
			t.Errorf("%s: %d months, clauses %v", c.Control, len(c.Months), c.Clauses)
		}
		runs += c.Exceptions
	}
	for _, e := range r.Exceptions {
		secs += e.Seconds
	}
	if runs == 0 || len(r.Exceptions) != runs || secs != tl.runSeconds {
		t.Errorf("exceptions %d lasting %ds, generated %d runs lasting %ds", len(r.Exceptions), secs, runs, tl.runSeconds)
	}
	if len(r.Access) != len(tl.access) {
		t.Errorf("access rows %d, generated %d", len(r.Access), len(tl.access))
	}
	for _, a := range r.Access {
		if a.Events != tl.access[a.RegisterID] || a.Users != int64(len(tl.users[a.RegisterID])) || a.Name == "" {
			t.Errorf("%s: %d events %d users, generated %d/%d", a.RegisterID, a.Events, a.Users, tl.access[a.RegisterID], len(tl.users[a.RegisterID]))
		}
		for typ, n := range tl.accessType[a.RegisterID] {
			if a.ByType[typ] != n {
				t.Errorf("%s %s: %d, generated %d", a.RegisterID, typ, a.ByType[typ], n)
			}
		}
	}
	overdue := 0
	for _, v := range r.Reviews {
		if v.Overdue {
			overdue++
		}
	}
	if len(r.Reviews) != 20 || overdue != 4 || len(r.Incidents) != 1 {
		t.Errorf("reviews %d (%d overdue), incidents %d", len(r.Reviews), overdue, len(r.Incidents))
	}
	in := r.Integrity
	// The generator's agent clocks are a year behind the server's received
	// time, so the server adds one server.clock_skew event per agent
	// before the period starts: count them into the sizes.
	skews, err := store.Query(ctx, eventlog.Filter{Agent: event.ServerStream, Type: eventlog.ClockSkewType, Limit: eventlog.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	base := int64(genAgents)*5 + int64(len(skews.Events))
	if !in.Verified || in.StartSize != base || in.EndSize != base+tl.total || len(in.Proof) == 0 {
		t.Errorf("integrity %+v", in)
	}
	for _, want := range []string{"社外秘", "監査報告書", "2025-12-01 から 2026-11-30 まで", "§10", "12か月以上未見直し", "USB メモリの紛失", "整合性証明"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if !bytes.HasPrefix(csvb.Bytes(), []byte("\ufeff\"区分\",\"項目\"")) || !strings.Contains(csvb.String(), fmt.Sprintf(`"概要","イベント数","%d"`, tl.total)) {
		t.Errorf("CSV head: %.300s", csvb.String())
	}

	// One department: only its PCs' events.
	r2, err := svc.Build(ctx, Params{From: from, To: last, Department: "営業部"})
	if err != nil {
		t.Fatal(err)
	}
	if r2.TotalEvents != tl.byDept["営業部"] || r2.Hosts != genAgents/4 {
		t.Errorf("営業部: %d events on %d PCs, generated %d", r2.TotalEvents, r2.Hosts, tl.byDept["営業部"])
	}
	// Bad parameters.
	if _, err := svc.Build(ctx, Params{From: last, To: from}); !errors.Is(err, ErrInvalid) {
		t.Errorf("reversed period: %v", err)
	}
}
