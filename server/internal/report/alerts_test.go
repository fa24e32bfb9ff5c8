package report

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// An auditor asks what alerted in the period and how it was handled. The
// report answers per alert kind (alerted, delivered, failed; for the
// compliance alerts and failed deliveries, acknowledged, resolved and open
// at the period's end) and lists the period's alerts with their handling
// (確認/解決, who, when, the comment) and log index, in the department's
// scope, the same in HTML, CSV and JSON.
func TestAlertsAndTheirHandling(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, JST)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, JST)
	f := newFixture(t, time.Date(2026, 12, 7, 12, 0, 0, 0, JST),
		[]Agent{{ID: "a", Hostname: "PC-A", Department: "総務部"}, {ID: "b", Hostname: "PC-B", Department: "営業部"}})
	ctx := context.Background()
	at := func(day, hour int) time.Time { return time.Date(2026, 11, day, hour, 0, 0, 0, JST) }
	next := func() int64 { n, _ := f.d.store.TreeSize(ctx); return n }
	alert := func(tm time.Time, kind, agent, host, dept, reason string) int64 {
		i := next()
		f.server(event.Event{Time: tm.UTC(), Control: "compliance", Type: "compliance.alert", Severity: event.Violation, Object: agent,
			Attrs: event.Attrs{"key": kind + "/" + agent, "kind": kind, "agent": agent, "hostname": host, "department": dept,
				"control": "screenlock", "reason": "disabled", "reason_ja": reason}})
		return i
	}
	act := func(tm time.Time, typ, user string, idx int64, comment string) {
		f.server(event.Event{Time: tm.UTC(), Control: "compliance", Type: typ, Object: "a", User: user,
			Attrs: event.Attrs{"alert_index": idx, "alert_type": "compliance.alert", "comment": comment}})
	}
	item := func(idx int64, tm time.Time, agent, host, dept, typ, reason string) event.Attrs {
		return event.Attrs{"index": idx, "time": tm.UTC().Format(time.RFC3339Nano), "agent": agent, "hostname": host,
			"department": dept, "type": typ, "control": "fileaccess", "reason": reason}
	}
	deliver := func(tm time.Time, typ, kind string, count int, items ...event.Attrs) int64 {
		i := next()
		its := make([]any, len(items))
		for k, it := range items {
			its[k] = it
		}
		sev := event.Info
		if typ == "notify.failed" {
			sev = event.Warning
		}
		f.server(event.Event{Time: tm.UTC(), Control: "notify", Type: typ, Severity: sev, Object: "mail",
			Attrs: event.Attrs{"rule": kind, "kind": kind, "destination": "mail", "count": count, "subject": "件名 " + kind,
				"error": "dial tcp: connection refused", "items": its, "first": tm.UTC().Format(time.RFC3339Nano), "last": tm.UTC().Format(time.RFC3339Nano)}})
		return i
	}

	before := alert(at(1, 0).Add(-time.Hour), "violation", "a", "PC-A", "総務部", "前月の違反") // not in the period
	v := alert(at(3, 10), "violation", "a", "PC-A", "総務部", "画面ロックが無効です")
	s := alert(at(4, 10), "silent", "b", "PC-B", "営業部", "エージェントから応答がありません")
	act(at(3, 11), "alert.acknowledged", "yamada", v, "本人に確認中")
	act(at(5, 9), "alert.resolved", "suzuki", v, "設定を戻した")
	act(at(5, 9), "alert.resolved", "suzuki", before, "前月分")
	deliver(at(3, 10).Add(2*time.Minute), "notify.sent", "violation", 1, item(v, at(3, 10), "a", "PC-A", "総務部", "compliance.alert", "画面ロックが無効です"))

	bulkIdx := next()
	f.emit(event.Event{Agent: "a", Time: at(6, 22), Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning, Object: `D:\名簿`})
	// A bulk-copy message naming one of its two alerts, sent.
	deliver(at(6, 22).Add(5*time.Minute), "notify.sent", "bulk_copy", 2, item(bulkIdx, at(6, 22), "a", "PC-A", "総務部", "fileaccess.bulk", "大量コピー"))
	// An out-of-hours alert on PC-B whose delivery failed: the failure is an
	// alert itself, resolved.
	oohIdx := next()
	f.emit(event.Event{Agent: "b", Time: at(7, 23), Control: "fileaccess", Type: "file.read", Object: `D:\顧客.xlsx`})
	failed := deliver(at(8, 1), "notify.failed", "out_of_hours", 1, item(oohIdx, at(7, 23), "b", "PC-B", "営業部", "file.read", "業務時間外"))
	act(at(9, 9), "alert.resolved", "sato", failed, "電話で連絡済み")

	r := f.build(from, last, "")
	kinds := map[string]AlertKindRow{}
	for _, k := range r.Alerts.Kinds {
		kinds[k.Kind] = k
	}
	if k := kinds["violation"]; k.Name != "管理策違反" || k.Alerted != 1 || k.Delivered != 1 || k.Acknowledged != 1 || k.Resolved != 1 || k.Open != 0 {
		t.Errorf("violation %+v", k)
	}
	if k := kinds["silent"]; k.Alerted != 1 || k.Delivered != 0 || k.NotNotified != 1 || k.Open != 1 {
		t.Errorf("silent %+v", k)
	}
	// Bulk copies are counted from the log (notify's classification): one
	// summary, delivered; the message's second alert is not in this log.
	if k := kinds["bulk_copy"]; k.Alerted != 1 || k.Delivered != 1 || k.Unlisted != 0 {
		t.Errorf("bulk_copy %+v", k)
	}
	if k := kinds["out_of_hours"]; k.Alerted != 1 || k.Failed != 1 {
		t.Errorf("out_of_hours %+v", k)
	}
	if k := kinds[failedDeliveryKind]; k.Alerted != 1 || k.Resolved != 1 || k.Open != 0 {
		t.Errorf("failed deliveries %+v", k)
	}
	if len(r.Alerts.List) != 5 || r.Alerts.More != 0 {
		t.Fatalf("list %+v", r.Alerts.List)
	}
	var got *AlertEntry
	for i := range r.Alerts.List {
		if r.Alerts.List[i].Index == v {
			got = &r.Alerts.List[i]
		}
	}
	if got == nil || got.Host != "PC-A" || len(got.Actions) != 2 || got.Actions[0].By != "yamada" || got.Actions[1].Comment != "設定を戻した" {
		t.Fatalf("violation entry %+v", got)
	}

	var html, csv bytes.Buffer
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if err := r.CSV(&csv); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"アラートと対応", "管理策違反", "エージェント応答なし", "登録フォルダからの大量コピー", "業務時間外のアクセス",
		"確認 yamada 2026-11-03 11:00「本人に確認中」", "解決 suzuki 2026-11-05 09:00「設定を戻した」", "解決 sato 2026-11-09 09:00「電話で連絡済み」",
		"2026-11-03 10:00"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	for _, want := range []string{`"アラート集計","管理策違反","1","1","0","0","0","1","1","0"`,
		`"アラート集計","登録フォルダからの大量コピー","1","1","0","0","0"`,
		`"アラート","` + itoa(v) + `","2026-11-03 10:00:00","PC-A","管理策違反"`} {
		if !strings.Contains(csv.String(), want) {
			t.Errorf("CSV lacks %s:\n%s", want, csv.String())
		}
	}
	j, _ := json.Marshal(r)
	if !strings.Contains(string(j), `"alerts":{"kinds":[`) {
		t.Errorf("JSON %s", j)
	}

	// 営業部: only PC-B's alerts, and the failed delivery about PC-B.
	d := f.build(from, last, "営業部")
	n := 0
	for _, k := range d.Alerts.Kinds {
		n += k.Alerted
		if k.Kind == "silent" && k.Alerted != 1 || k.Kind == "violation" && k.Alerted != 0 || k.Kind == failedDeliveryKind && k.Alerted != 1 {
			t.Errorf("営業部 %+v", k)
		}
	}
	if n != 3 || len(d.Alerts.List) != 3 || d.Alerts.List[0].Index != s || d.Alerts.List[0].Host != "PC-B" {
		t.Errorf("営業部: %d alerted, list %+v", n, d.Alerts.List)
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
