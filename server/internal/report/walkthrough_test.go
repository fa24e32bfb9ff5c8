package report

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/event"
)

// The manager's walkthrough (December 2026): what the report said against
// what 概要 and the log said about the same PCs and the same month.

// status emits one "<control>.status" event of agent at tm.
func (f *fixture) status(agent, control, st string, tm time.Time) {
	f.t.Helper()
	sev := event.Info
	switch st {
	case "fail":
		sev = event.Violation
	case "unknown":
		sev = event.Warning
	}
	f.emit(event.Event{Agent: agent, Time: tm.UTC(), Control: control, Type: control + ".status", Severity: sev,
		Attrs: event.Attrs{"status": st, "reason": control + "." + st, "reason_ja": control + " は " + st}})
}

// approved creates an approval and approves it.
func (f *fixture) approved(a *register.Approval) {
	f.t.Helper()
	ctx := context.Background()
	a.Status, a.Approver = register.StatusRequested, ""
	// Requested and approved the day before its window.
	regs, err := register.New(register.Config{State: f.d.st, Now: func() time.Time { return a.From.Add(-24 * time.Hour) }})
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := regs.Create(ctx, "admin", a)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := regs.Decide(ctx, "部長", a.ID, true, c.Revision); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) enrolled(agent string, tm time.Time) {
	f.t.Helper()
	f.server(event.Event{Time: tm.UTC(), Control: "server", Type: enrolledType, Object: agent})
}

// 概要 counts every enrolled PC: one that never reported a control's status
// (enrolled, then silent) is 不明 for it. The report counts the same PCs,
// so its header's PC count and section 1 agree, for the months the PC was
// enrolled; a control the PC's policy turns off is not counted.
func TestReportCountsEveryEnrolledPCLikeTheDashboard(t *testing.T) {
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, JST)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, JST)
	var agents []Agent
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "late"} {
		agents = append(agents, Agent{ID: id, Hostname: "PC-" + strings.ToUpper(id), Department: "総務部"})
	}
	agents[6].Off = []string{"backup", "posture", "screenlock", "fileaccess"} // g: only media runs
	f := newFixture(t, time.Date(2026, 12, 7, 12, 0, 0, 0, JST), agents)
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		f.enrolled(id, time.Date(2026, 9, 1, 9, 0, 0, 0, JST))
	}
	f.enrolled("f", time.Date(2026, 11, 10, 9, 0, 0, 0, JST)) // enrolled in the second month, silent since
	f.enrolled("g", time.Date(2026, 9, 1, 9, 0, 0, 0, JST))
	f.enrolled("late", time.Date(2026, 12, 2, 9, 0, 0, 0, JST)) // after the period: not in it
	for _, m := range []time.Time{time.Date(2026, 10, 5, 9, 0, 0, 0, JST), time.Date(2026, 11, 5, 9, 0, 0, 0, JST)} {
		f.status("a", "media", "pass", m)
		f.status("a", "fileaccess", "pass", m)
		f.status("b", "media", "unknown", m)
		f.status("b", "fileaccess", "pass", m)
		for _, id := range []string{"a", "b"} {
			f.status(id, "backup", "off", m)
			f.status(id, "screenlock", "pass", m)
			f.status(id, "posture", "pass", m)
		}
	}
	f.checkpoint(time.Date(2026, 12, 1, 0, 5, 0, 0, JST))
	r := f.build(from, last, "")
	if r.Hosts != 7 {
		t.Fatalf("header counts %d PCs, want 7", r.Hosts)
	}
	rows := map[string]ControlRow{}
	for _, c := range r.Controls {
		rows[c.Control] = c
	}
	// October: a, b, c, d, e, g (f enrolled in November).
	// November: every one of the 7.
	want := map[string][2]Month{
		"media":      {{Hosts: 6, Unknown: 5}, {Hosts: 7, Unknown: 6}},
		"fileaccess": {{Hosts: 5, Unknown: 3}, {Hosts: 6, Unknown: 4}},
		"backup":     {{Hosts: 3, Unknown: 3}, {Hosts: 4, Unknown: 4}}, // c, d, e (and f): policy not known, never said off
	}
	for c, w := range want {
		for i, m := range rows[c].Months {
			if m.Hosts != w[i].Hosts || m.Unknown != w[i].Unknown || m.Failing != 0 {
				t.Errorf("%s %s: %+v, want hosts %d unknown %d", c, m.Month, m, w[i].Hosts, w[i].Unknown)
			}
		}
	}
	if m := rows["media"].Months[1]; m.Rate < 0.142 || m.Rate > 0.143 {
		t.Errorf("media November rate %v, want 1/7 as on 概要", m.Rate)
	}
	var html bytes.Buffer
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"全部署 (PC 7 台)", "14.3% (0/7, 不明 6)"} {
		if !strings.Contains(html.String(), s) {
			t.Errorf("HTML lacks %q", s)
		}
	}
}

// A stick not in 媒体管理台帳, allowed by an audit-mode policy, and written
// to: the report lists it (PC, serial, product, first and last use, files
// written, whether an approved carry-out covered it), in HTML, CSV and
// JSON; a carry-out of a serial the register does not have is marked.
func TestReportListsMediaNotInTheRegister(t *testing.T) {
	ctx := context.Background()
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, JST)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, JST)
	f := newFixture(t, time.Date(2026, 12, 7, 12, 0, 0, 0, JST),
		[]Agent{{ID: "k", Hostname: "PC-KEIRI-01", Department: "経理部"}, {ID: "s", Hostname: "PC-SOMU-01", Department: "総務部"}})
	if _, err := f.d.regs.Create(ctx, "admin", &register.MediaEntry{Meta: register.Meta{ID: "MD-0001", Status: register.StatusActive},
		Registered: "2026-01-10", Product: "BUFFALO RUF3", Serial: "REG0001", Owner: "総務"}); err != nil {
		t.Fatal(err)
	}
	f.approved(&register.Approval{Meta: register.Meta{ID: "CO-0001"},
		Requester: "佐藤", Serial: "NOTREG999", Host: "PC-SOMU-01", Purpose: "研修資料の持出し",
		From: time.Date(2026, 11, 12, 9, 0, 0, 0, JST), To: time.Date(2026, 11, 12, 18, 0, 0, 0, JST)})
	dev := func(serial string) event.Attrs {
		return event.Attrs{"vendor": "SanDisk", "product": "Cruzer Blade", "vendor_id": "0781", "product_id": "5567", "serial": serial}
	}
	at := func(day, h, m int) time.Time { return time.Date(2026, 11, day, h, m, 0, 0, JST).UTC() }
	const stick = "4C530001230512345678"
	f.emit(event.Event{Agent: "k", Time: at(10, 10, 0), Control: "media", Type: "media.inserted", Object: "/dev/sdb", Attrs: dev(stick)})
	a := dev(stick)
	a["action"], a["reason"] = "allow", "default"
	f.emit(event.Event{Agent: "k", Time: at(10, 10, 0), Control: "media", Type: "media.allowed", Object: "/dev/sdb", Attrs: a})
	for i, file := range []string{`E:\顧客名簿.csv`, `E:\顧客名簿 (2).csv`} {
		f.emit(event.Event{Agent: "k", Time: at(10, 10, 5+i), Control: "media", Type: "media.file_written", Severity: event.Warning,
			Object: file, Attrs: event.Attrs{"file": file, "size": 1024, "serial": stick, "vendor_id": "0781", "product_id": "5567"}})
	}
	// The registered stick (the agent names its register id) is not listed.
	reg := dev("REG0001")
	f.emit(event.Event{Agent: "s", Time: at(11, 9, 0), Control: "media", Type: "media.inserted", Object: "/dev/sdc", RegisterID: "MD-0001", Attrs: reg})
	f.emit(event.Event{Agent: "s", Time: at(11, 9, 1), Control: "media", Type: "media.file_written", Object: `F:\a.txt`, RegisterID: "MD-0001",
		Attrs: event.Attrs{"file": `F:\a.txt`, "serial": "REG0001", "register_id": "MD-0001"}})
	// The approved stick not in the register, used in its window.
	ap := dev("notreg999")
	ap["approval_id"] = "CO-0001"
	f.emit(event.Event{Agent: "s", Time: at(12, 10, 0), Control: "media", Type: "media.inserted", Object: "/dev/sdc", Attrs: ap})
	f.checkpoint(time.Date(2026, 12, 1, 0, 5, 0, 0, JST))

	r := f.build(from, last, "")
	if len(r.UnregisteredMedia) != 2 {
		t.Fatalf("unregistered media %+v", r.UnregisteredMedia)
	}
	m := r.UnregisteredMedia[0]
	if m.Host != "PC-KEIRI-01" || m.Serial != stick || m.Product != "Cruzer Blade" || m.Vendor != "SanDisk" || m.FilesWritten != 2 ||
		!m.First.Equal(at(10, 10, 0)) || !m.Last.Equal(at(10, 10, 6)) || m.Approval != "" {
		t.Errorf("stick %+v", m)
	}
	if o := r.UnregisteredMedia[1]; o.Host != "PC-SOMU-01" || o.Approval != "CO-0001" {
		t.Errorf("approved stick %+v", o)
	}
	if len(r.CarryOuts) != 1 || !r.CarryOuts[0].NotInRegister {
		t.Errorf("carry-outs %+v", r.CarryOuts)
	}
	var html, csv bytes.Buffer
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if err := r.CSV(&csv); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"媒体管理台帳にない媒体", stick, "SanDisk Cruzer Blade", "2026-11-10 10:00", "2026-11-10 10:06", "承認なし", "CO-0001"} {
		if !strings.Contains(html.String(), s) {
			t.Errorf("HTML lacks %q", s)
		}
	}
	if !strings.Contains(csv.String(), `"台帳にない媒体","PC-KEIRI-01","`+stick+`","SanDisk Cruzer Blade","2026-11-10 10:00:00","2026-11-10 10:06:00","2","承認なし"`) {
		t.Errorf("CSV lacks the stick:\n%s", csv.String())
	}
	j, _ := json.Marshal(r)
	if !strings.Contains(string(j), `"unregistered_media":[{`) || !strings.Contains(string(j), `"not_in_register":true`) {
		t.Errorf("JSON %s", j)
	}

	// None used: a sentence says so.
	e := f.build(time.Date(2026, 10, 1, 0, 0, 0, 0, JST), time.Date(2026, 10, 31, 0, 0, 0, 0, JST), "")
	html.Reset()
	if err := e.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.String(), "媒体管理台帳にない媒体は使われていません") {
		t.Errorf("HTML of an empty list lacks the sentence")
	}
}

// Bulk copies and blocked media alert by notify's classification whether a
// rule delivered them or not (the default rules have no recipients): the
// report counts every one, 「通知の記録なし」 for those no delivery names.
func TestReportCountsAlertsNobodyWasNotified(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, JST)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, JST)
	f := newFixture(t, time.Date(2026, 12, 7, 12, 0, 0, 0, JST), []Agent{{ID: "k", Hostname: "PC-KEIRI-01", Department: "経理部"}})
	at := func(day int) time.Time { return time.Date(2026, 11, day, 15, 0, 0, 0, JST).UTC() }
	for i, reg := range []string{"PI-001", "", ""} {
		f.emit(event.Event{Agent: "k", Time: at(3 + i), Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning,
			Object: `D:\経理`, RegisterID: reg, Attrs: event.Attrs{"suppressed": 300, "individually": 20}})
	}
	f.emit(event.Event{Agent: "k", Time: at(8), Control: "media", Type: "media.blocked", Severity: event.Violation, Object: "/dev/sdb",
		Attrs: event.Attrs{"serial": "X1"}})
	f.emit(event.Event{Agent: "k", Time: at(9), Control: "media", Type: "media.file_written", Severity: event.Warning, Object: `E:\a`}) // not an alert
	f.checkpoint(time.Date(2026, 12, 1, 0, 5, 0, 0, JST))
	r := f.build(from, last, "")
	kinds := map[string]AlertKindRow{}
	for _, k := range r.Alerts.Kinds {
		kinds[k.Kind] = k
	}
	if k := kinds["bulk_copy"]; k.Alerted != 3 || k.NotNotified != 3 {
		t.Errorf("bulk_copy %+v", k)
	}
	if k := kinds["unregistered_media"]; k.Alerted != 1 || k.NotNotified != 1 {
		t.Errorf("unregistered_media %+v", k)
	}
	if len(r.Alerts.List) != 4 || r.Alerts.List[0].Notified() != "通知の記録なし" || r.Alerts.List[0].Host != "PC-KEIRI-01" {
		t.Errorf("list %+v", r.Alerts.List)
	}
}

// The report is read by a manager: Japanese words, no codes.
func TestReportSpeaksPlainJapanese(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, JST)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, JST)
	f := newFixture(t, time.Date(2026, 12, 7, 12, 0, 0, 0, JST), []Agent{{ID: "a", Hostname: "PC-A", Department: "総務部"}})
	f.status("a", "screenlock", "pass", time.Date(2026, 11, 2, 9, 0, 0, 0, JST))
	f.checkpoint(time.Date(2026, 12, 1, 0, 5, 0, 0, JST))
	r := f.build(from, last, "")
	var html, csv bytes.Buffer
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if err := r.CSV(&csv); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{html.String(), csv.String()} {
		for _, bad := range []string{"METI GL", "(screenlock)", "(compliance.alert)", "notify.sent", "現地審査 バックアップ",
			"どのログもその拡張", "遵守率"} {
			if strings.Contains(out, bad) {
				t.Errorf("report says %q", bad)
			}
		}
	}
	h := html.String()
	if !strings.Contains(h, "準拠率") {
		t.Error("HTML lacks 準拠率")
	}
	// The how-to for IT comes after the plain statement, in its own note.
	intro := h[:strings.Index(h, "<h2>1.")]
	if i, j := strings.Index(intro, "format=bundle"), strings.Index(intro, "本報告書の数値"); i >= 0 && (j < 0 || i < j) {
		t.Errorf("intro leads with the technical how-to:\n%s", intro)
	}
	if !strings.Contains(intro, "システム担当者向け") {
		t.Errorf("intro lacks the IT note:\n%s", intro)
	}
}

// The CSV says what the HTML says: a carry-out's purpose and period, an
// exception's duration in words, and no row wider than its header.
func TestCSVCarriesPurposePeriodAndReadableDuration(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, JST)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, JST)
	f := newFixture(t, time.Date(2026, 12, 7, 12, 0, 0, 0, JST), []Agent{{ID: "a", Hostname: "PC-A", Department: "総務部"}})
	f.approved(&register.Approval{Meta: register.Meta{ID: "CO-0002"},
		Requester: "佐藤", Serial: "SERIAL01", Host: "PC-A", Purpose: "顧客訪問",
		From: time.Date(2026, 11, 12, 9, 0, 0, 0, JST), To: time.Date(2026, 11, 12, 18, 0, 0, 0, JST)})
	f.status("a", "screenlock", "fail", time.Date(2026, 11, 2, 9, 0, 0, 0, JST))
	f.status("a", "screenlock", "pass", time.Date(2026, 11, 2, 11, 30, 0, 0, JST))
	f.checkpoint(time.Date(2026, 12, 1, 0, 5, 0, 0, JST))
	r := f.build(from, last, "")
	var csv bytes.Buffer
	if err := r.CSV(&csv); err != nil {
		t.Fatal(err)
	}
	s := csv.String()
	for _, want := range []string{`"顧客訪問","2026-11-12 09:00 〜 2026-11-12 18:00"`, `"9000","0日 2時間 30分"`} {
		if !strings.Contains(s, want) {
			t.Errorf("CSV lacks %s:\n%s", want, s)
		}
	}
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, `"概要","一括操作`) && strings.Count(line, `","`) != 2 {
			t.Errorf("overview row wider than its header: %s", line)
		}
	}
}
