package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// The agent folds a burst of file events in a registered folder into one
// fileaccess.bulk summary (the first "individually" sent one by one, the
// rest "suppressed", per type in "counts"). The report's access figures
// count the files behind the summary, under their types; a summary that
// does not say the types (an older agent) shows as a line of its own, so
// the auditor's numbers add up.
func TestAccessCountsEventsFoldedIntoBulkSummaries(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, JST)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, JST)
	f := newFixture(t, time.Date(2026, 12, 7, 12, 0, 0, 0, JST), []Agent{{ID: "a", Hostname: "PC-A", Department: "総務部"}})
	f.entry("PI-0001", "総務部")
	at := from.AddDate(0, 0, 4).Add(10 * time.Hour)
	file := func(typ string, i int) event.Event {
		return event.Event{Agent: "a", Time: at.Add(time.Duration(i) * time.Second), Control: "fileaccess", Type: typ,
			User: `OFFICE\sato`, Object: `D:\名簿\a.xlsx`, RegisterID: "PI-0001"}
	}
	for i := range 100 {
		f.emit(file("file.created", i))
	}
	f.emit(file("file.read", 100), file("file.read", 101))
	bulk := func(reg string, attrs event.Attrs) event.Event {
		return event.Event{Agent: "a", Time: at.Add(5 * time.Minute), Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning,
			User: `OFFICE\sato`, Object: `D:\名簿`, RegisterID: reg, Attrs: attrs}
	}
	f.emit(
		bulk("PI-0001", event.Attrs{"suppressed": 114, "counts": event.Attrs{"created": 109, "modified": 5}, "individually": 100, "total": 214}),
		bulk("PI-0001", event.Attrs{"suppressed": 7, "individually": 100, "total": 107}), // no counts: types unknown
		bulk("", event.Attrs{"suppressed": 3, "counts": event.Attrs{"created": 3}, "individually": 100, "total": 103}),
	)
	r := f.build(from, last, "")
	if len(r.Access) != 1 {
		t.Fatalf("access %+v", r.Access)
	}
	a := r.Access[0]
	if a.ByType["file.created"] != 209 || a.ByType["file.modified"] != 5 || a.ByType["file.read"] != 2 || a.ByType["fileaccess.bulk"] != 0 ||
		a.Untyped != 7 || a.Events != 209+5+2+7 || a.Summarised != 121 || a.Summaries != 2 || a.Users != 1 {
		t.Errorf("access %+v", a)
	}
	if r.Summarised != 124 || r.Summaries != 3 {
		t.Errorf("report: %d events in %d summaries, want 124 in 3", r.Summarised, r.Summaries)
	}
	var html, csv bytes.Buffer
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if err := r.CSV(&csv); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ファイル作成 209 件", "ファイル変更 5 件", "一括操作として要約された件数 7 件（内訳は要約イベントを参照）",
		"要約イベント 2 件", "124 件"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("HTML lacks %q:\n%s", want, html.String()[strings.Index(html.String(), "<h1>"):])
		}
	}
	for _, want := range []string{`"アクセス記録","PI-0001","名簿 PI-0001","223","1","ファイル作成 209 件、ファイル変更 5 件、ファイル閲覧 2 件、一括操作として要約された件数 7 件（内訳は要約イベントを参照）"`,
		`"概要","一括操作として要約されたファイル操作","124 件 (要約イベント 3 件、イベント数には含みません)"`} {
		if !strings.Contains(csv.String(), want) {
			t.Errorf("CSV lacks %s:\n%s", want, csv.String())
		}
	}
	j, _ := json.Marshal(r)
	if !strings.Contains(string(j), `"summarised":124`) {
		t.Errorf("JSON %s", j)
	}
}
