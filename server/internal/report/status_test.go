package report

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/event"
)

// A report counts a control only on the PCs where it ran: a PC whose
// control was off (the agent says so in an info status) is not a
// compliant PC, and one whose control could not tell (unknown) is not one
// either. And a report made before its period ends does not count a
// violation still open as lasting to the period's end, which has not
// come. A 台帳 entry with no review on record says so, rather than "over
// 12 months" (it may have been registered last week).
func TestReportCountsOnlyControlsThatRanUntilMade(t *testing.T) {
	ctx := context.Background()
	d := newDeps(t)
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, JST)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, JST)
	made := time.Date(2026, 11, 20, 12, 0, 0, 0, JST) // before the period ends
	failAt := time.Date(2026, 11, 10, 9, 0, 0, 0, JST)

	prev := map[string]string{}
	seq := map[string]uint64{}
	emit := func(agent, control, status string, at time.Time) {
		t.Helper()
		sev := event.Info
		switch status {
		case "fail":
			sev = event.Violation
		case "unknown":
			sev = event.Warning
		}
		seq[agent]++
		e := event.Event{Agent: agent, Seq: seq[agent], Time: at, Control: control, Type: control + ".status", Severity: sev,
			Attrs: event.Attrs{"status": status, "reason": control + "." + status, "reason_ja": control + " は " + status}}
		if err := e.Seal(prev[agent]); err != nil {
			t.Fatal(err)
		}
		prev[agent] = e.Hash
		if _, err := d.store.Append(ctx, agent, []event.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	day := func(n int) time.Time { return from.AddDate(0, 0, n-1).Add(9 * time.Hour) }
	emit("a", "backup", "off", day(2))
	emit("a", "screenlock", "pass", day(2))
	emit("a", "screenlock", "fail", failAt)
	emit("b", "backup", "unknown", day(3))
	emit("b", "screenlock", "pass", day(3))
	emit("b", "posture", "off", day(3))
	emit("b", "posture", "pass", day(4)) // turned on during the month

	// 台帳 entries: one never reviewed (not "over 12 months": it may be new),
	// one reviewed two years before.
	for _, e := range []struct{ id, reviewed string }{{"PI-0001", ""}, {"PI-0002", "2024-10-01"}} {
		if _, err := d.regs.Create(ctx, "admin", &register.PIEntry{Meta: register.Meta{ID: e.id}, Name: "名簿 " + e.id, Purpose: "業務",
			RecordCount: 10, Medium: "electronic", Owner: "山田", Locations: []register.Location{{Host: "PC-A", Folder: `D:\名簿`}},
			Department: "総務部", Retention: "5y", DisposalMethod: "データ消去", LastReviewed: e.reviewed}); err != nil {
			t.Fatal(err)
		}
	}
	_, vkey, _ := note.GenerateKey(rand.Reader, "mamori/test")
	v, _ := note.NewVerifier(vkey)
	svc, err := New(Config{Store: d.store, Registers: d.regs, Incidents: d.incs, Verifier: v, Now: func() time.Time { return made },
		Agents: func(context.Context) ([]Agent, error) {
			// As their policies say: a runs screenlock, b screenlock, backup and posture.
			return []Agent{{ID: "a", Hostname: "PC-A", Off: []string{"backup", "posture", "media", "fileaccess"}},
				{ID: "b", Hostname: "PC-B", Off: []string{"media", "fileaccess"}}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := svc.Build(ctx, Params{From: from, To: last})
	if err != nil {
		t.Fatal(err)
	}
	row := func(c string) ControlRow {
		for _, cr := range r.Controls {
			if cr.Control == c {
				return cr
			}
		}
		t.Fatalf("no row for %s", c)
		return ControlRow{}
	}
	for _, w := range []struct {
		control                 string
		hosts, failing, unknown int
		rate                    float64
	}{
		{"backup", 1, 0, 1, 0},       // a was off: not counted; b could not tell: not compliant
		{"screenlock", 2, 1, 0, 0.5}, // a failed, b passed
		{"posture", 1, 0, 0, 1},      // b passed once it ran; a never reported
		{"media", 0, 0, 0, 0},        // nobody reported
	} {
		cr := row(w.control)
		m := cr.Months[0]
		if cr.Hosts != w.hosts || m.Hosts != w.hosts || m.Failing != w.failing || m.Unknown != w.unknown || m.Rate != w.rate || cr.Rate != w.rate {
			t.Errorf("%s: host-months %d, month %+v, rate %v; want %d hosts, %d failing, %d unknown, rate %v",
				w.control, cr.Hosts, m, cr.Rate, w.hosts, w.failing, w.unknown, w.rate)
		}
	}

	if len(r.Exceptions) != 1 {
		t.Fatalf("exceptions %+v, want a's screenlock", r.Exceptions)
	}
	ex := r.Exceptions[0]
	if want := int64(made.Sub(failAt) / time.Second); ex.To != nil || ex.Seconds != want {
		t.Errorf("open exception to %v lasting %ds, want open lasting %ds (until the report was made)", ex.To, ex.Seconds, want)
	}
	if !strings.Contains(ex.Duration, "作成時点で継続中") || !strings.HasPrefix(ex.Duration, "10日 3時間 0分") {
		t.Errorf("duration %q, want 10日 3時間 0分 (作成時点で継続中)", ex.Duration)
	}

	// The same report made after the period: the open run lasts to its end.
	svc.cfg.Now = func() time.Time { return last.AddDate(0, 0, 3) }
	r, err = svc.Build(ctx, Params{From: from, To: last})
	if err != nil {
		t.Fatal(err)
	}
	end := last.AddDate(0, 0, 1)
	if ex := r.Exceptions[0]; ex.Seconds != int64(end.Sub(failAt)/time.Second) || !strings.Contains(ex.Duration, "期間末時点で継続中") {
		t.Errorf("after the period: %ds %q, want %ds to the period's end", ex.Seconds, ex.Duration, int64(end.Sub(failAt)/time.Second))
	}

	// What the reader sees: no rate for a control nobody ran, and the
	// unknown PCs named beside the failing ones.
	var html strings.Builder
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	page := html.String()
	// No checkpoint signed yet: nothing verified, so no proof is "not needed".
	for _, want := range []string{"0.0% (0/1, 不明 1)", "50.0% (1/2)", "<tr><th>整合性証明</th><td>-</td></tr>",
		"<td></td><td><span class=\"ng\">見直しの記録なし</span></td>", "<td>2024-10-01</td><td><span class=\"ng\">12か月以上未見直し</span></td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("report page lacks %q", want)
		}
	}
	media := page[strings.Index(page, "<td>電子媒体の持ち運び・持込み制限</td>"):]
	media = media[:strings.Index(media, "</tr>")]
	if !strings.Contains(media, `<td class="n">-</td>`) {
		t.Errorf("a control nobody ran shows a rate: %s", media)
	}
}
