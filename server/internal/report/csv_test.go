package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/incident"
)

// TestCSVReadsWithoutTheCodebook: a manager opens the report's CSV in Excel.
// Each section says what its columns are, controls and states are in
// Japanese, rates are percentages; not 値1..値5, screenlock, 0.8750, true.
func TestCSVReadsWithoutTheCodebook(t *testing.T) {
	r := &Report{From: "2026-11-01", To: "2026-11-30", Department: "全部署",
		EventsByControl: map[string]int64{"screenlock": 12},
		Controls: []ControlRow{{Control: "screenlock", Clauses: []string{"§10-5(2)"}, StatusEvents: 10, FailEvents: 2, Hosts: 8, Rate: 0.875,
			Months: []Month{{Month: "2026-11", Hosts: 8, Failing: 1, Rate: 0.875}}}},
		Reviews:   []Review{{ID: "PI-001", Name: "顧客名簿", Department: "営業部", LastReviewed: "2025-01-10", Overdue: true}},
		Incidents: []incident.Incident{{ID: "INC-1", Title: "USB紛失", DiscoveredAt: time.Date(2026, 11, 2, 9, 0, 0, 0, JST), Persons: 3, Status: "open"}},
		Integrity: Integrity{Verified: true, Problems: map[string]int64{}},
	}
	var b bytes.Buffer
	if err := r.CSV(&b); err != nil {
		t.Fatal(err)
	}
	cr := csv.NewReader(strings.NewReader(strings.TrimPrefix(b.String(), "\ufeff")))
	cr.FieldsPerRecord = -1 // sections differ in width
	rows, err := cr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, bad := range []string{"値1", `"screenlock"`, "0.8750", `"true"`, `"open"`} {
		if strings.Contains(text, bad) {
			t.Errorf("CSV holds %s:\n%s", bad, text)
		}
	}
	for _, want := range [][]string{
		{"準拠率", "管理策", "根拠条項", "準拠率", "状態の記録数", "違反の記録数", "例外の数"},
		{"準拠率", "画面ロック", "§10-5(2)", "87.5%", "10", "2", "0"},
		{"台帳見直し", "台帳番号", "名称", "部署", "最終見直し日", "12か月以上未見直し"},
		{"台帳見直し", "PI-001", "顧客名簿", "営業部", "2025-01-10", "はい"},
		{"事故", "INC-1", "USB紛失", "2026-11-02 09:00:00", "3", "対応中"},
	} {
		found := false
		for _, row := range rows {
			if strings.Join(row, "\x00") == strings.Join(want, "\x00") {
				found = true
			}
		}
		if !found {
			t.Errorf("no row %q in:\n%s", want, text)
		}
	}
	// The JSON's review keys are like every other key.
	j, _ := json.Marshal(r.Reviews[0])
	if !strings.Contains(string(j), `"last_reviewed":"2025-01-10"`) {
		t.Errorf("review JSON %s", j)
	}
}

// The CSV says what the HTML says: the scope with its PC count, the
// server's own controls (事故, 通知) in Japanese, and times with their
// zone, as the pages label them (日本時間).
func TestCSVSaysWhatTheHTMLSays(t *testing.T) {
	r := &Report{From: "2026-11-01", To: "2026-11-30", Hosts: 8, Generated: time.Date(2026, 12, 1, 0, 5, 0, 0, time.UTC),
		EventsByControl: map[string]int64{"incident": 4, "notify": 19, "fileaccess": 3},
		Exceptions:      []Exception{{Hostname: "PC-A", Control: "screenlock", From: time.Date(2026, 11, 2, 9, 0, 0, 0, JST)}},
		Incidents:       []incident.Incident{{ID: "INC-1", Title: "USB紛失", DiscoveredAt: time.Date(2026, 11, 2, 9, 0, 0, 0, JST), Status: "open"}},
		Integrity:       Integrity{Problems: map[string]int64{}},
	}
	var b, h bytes.Buffer
	if err := r.CSV(&b); err != nil {
		t.Fatal(err)
	}
	if err := r.HTML(&h); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"概要","対象範囲","全部署 (PC 8 台)"`, `"イベント数","事故・漏えい等","4"`, `"イベント数","通知","19"`,
		`"イベント数","ファイルアクセス","3"`, `"概要","作成日時（日本時間）","2026-12-01 09:05"`,
		`"例外","端末","管理策","理由","開始（日本時間）","終了（日本時間）","秒数"`, `"事故","番号","件名","発見日時（日本時間）"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("CSV lacks %s:\n%s", want, b.String())
		}
	}
	for _, want := range []string{"全部署 (PC 8 台)", "2026-12-01 09:05（日本時間）", "<th>開始（日本時間）</th>", "<th>発覚日時（日本時間）</th>", "事故・漏えい等 4 件"} {
		if !strings.Contains(h.String(), want) {
			t.Errorf("HTML lacks %s", want)
		}
	}
}
