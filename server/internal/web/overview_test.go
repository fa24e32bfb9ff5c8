package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// addHostEvents enrols a PC and stores evs as its chain (times default to
// now, in order).
func addHostEvents(tb testing.TB, srv *app.Server, hostname, dept string, evs []event.Event) string {
	tb.Helper()
	ctx := context.Background()
	id := pki.NewAgentID()
	now := time.Now().UTC()
	if err := srv.State().PutAgent(ctx, state.Agent{ID: id, Hostname: hostname, OS: "windows", Arch: "amd64",
		OSVersion: "11 23H2", Department: dept, Enrolled: now.Add(-time.Hour)}); err != nil {
		tb.Fatal(err)
	}
	prev := ""
	for i := range evs {
		evs[i].Agent, evs[i].Seq = id, uint64(i+1)
		if evs[i].Time.IsZero() {
			evs[i].Time = now.Add(time.Duration(i-len(evs)) * time.Second)
		}
		if evs[i].Severity == "" {
			evs[i].Severity = event.Info
		}
		if err := evs[i].Seal(prev); err != nil {
			tb.Fatal(err)
		}
		prev = evs[i].Hash
	}
	if _, err := srv.Store().Append(ctx, id, evs); err != nil {
		tb.Fatal(err)
	}
	srv.Compliance().Invalidate()
	return id
}

func statusEvent(control, st, reason, ja, en string) event.Event {
	sev := event.Info
	if st == "fail" {
		sev = event.Violation
	}
	return event.Event{Control: control, Type: control + ".status", Severity: sev, Attrs: event.Attrs{"status": st,
		"since": time.Now().Add(-10 * time.Minute).UTC().Format(time.RFC3339), "reason": reason, "reason_ja": ja, "reason_en": en}}
}

// 概要 shows the warnings that matter even while the control passes, says
// what to do and which clause each failing row proves, and its counts agree.
func TestOverviewWarningsActionsCounts(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addHostEvents(t, srv, "PC-SOUMU-01", "総務部", []event.Event{
		statusEvent("media", "pass", "media.ok", "未登録の媒体はありません", "no unregistered media"),
		statusEvent("screenlock", "fail", "screenlock.idle_too_long", "画面ロックまでの時間が長すぎます（端末全体の設定）", "idle too long (machine)"),
		{Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning, User: "sato", Process: `C:\Windows\explorer.exe`,
			Object: `D:\顧客`, Attrs: event.Attrs{"total": 231, "summary": "231 files changed in 40s by explorer.exe"}},
		{Control: "media", Type: "media.file_written", Severity: event.Warning, User: "sato", Object: `E:\名簿.xlsx`,
			Attrs: event.Attrs{"serial": "UNREG0001"}},
	})
	addHostEvents(t, srv, "PC-EIGYO-02", "営業部", []event.Event{statusEvent("posture", "fail", "posture.disk_unencrypted", "ディスクが暗号化されていません", "disk not encrypted")})
	// An overdue breach report is the manager's to see here too.
	if _, err := srv.Store().AppendServer(context.Background(), event.Event{Control: "incident", Type: "incident.overdue", Severity: event.Violation,
		Object: "INC-20261201-a37761", Attrs: event.Attrs{"report": "preliminary", "reason": "速報の期限 2026-12-04 を過ぎています", "title": "USBメモリ紛失"}}); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	pg := b.get("/").body
	for _, want := range []string{"大量コピー・大量操作", "231 件", "媒体への書き込み", `D:\顧客`, "PPC 通則編 §10-5(2)", "漏えい等報告の期限超過", "INC-20261201-a37761",
		"端末の画面ロック時間をポリシー以内にし", "ディスク暗号化・ウイルス対策・OS更新を確認し", `id="violations">2<`, "要対応 (2)"} {
		if !strings.Contains(pg, want) {
			t.Errorf("概要 lacks %q", want)
		}
	}
	if i := strings.Index(pg, `class="rate-media"`); i < 0 || !strings.Contains(pg[i:i+800], `href="/events?control=media">1</a>`) {
		t.Errorf("外部媒体 row does not show its warning next to the pass rate")
	}
	if strings.Contains(pg, "machine") || strings.Contains(pg, "files changed") {
		t.Errorf("English fragments on the Japanese 概要")
	}
}

// The overview's charts come from stored data and link to the lists
// behind them.
func TestOverviewCharts(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addHostEvents(t, srv, "PC-SOUMU-01", "総務部", []event.Event{
		statusEvent("screenlock", "fail", "screenlock.idle_too_long", "長すぎます", "too long"),
		{Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning, User: "sato", Object: `D:\顧客`, Attrs: event.Attrs{"total": 231}},
		{Control: "media", Type: "media.inserted", Severity: event.Info, Object: "E:", Attrs: event.Attrs{"serial": "AA00123456", "product": "USB DISK"}},
	})
	addHostEvents(t, srv, "PC-EIGYO-02", "営業部", []event.Event{statusEvent("screenlock", "pass", "screenlock.ok", "OK", "ok")})
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	// Before the day is recorded, today's point comes from the live report:
	// a new install's trend charts were empty beside its overall trend.
	for _, id := range []string{"svg-trend-control", "svg-trend-dept"} {
		pg := b.get("/").body
		i := strings.Index(pg, `id="`+id+`"`)
		if i < 0 || !strings.Contains(pg[i:i+strings.Index(pg[i:], "</svg>")], "<circle") {
			t.Errorf("%s has no point for today before the day is recorded", id)
		}
	}
	if err := srv.Compliance().RecordDay(context.Background()); err != nil {
		t.Fatal(err)
	}
	pg := b.get("/").body
	for _, want := range []string{`id="svg-trend-control"`, `id="svg-trend-dept"`, `id="svg-dept"`, `id="svg-warnings"`, `id="svg-media"`,
		`href="/hosts?status=fail&amp;control=screenlock"`, `href="/hosts?department=%E7%B7%8F%E5%8B%99%E9%83%A8&amp;sort=fails"`,
		`href="/events?from=`, "USB DISK AA00123456", "大量コピー・大量操作"} {
		if !strings.Contains(pg, want) {
			t.Errorf("overview charts lack %q", want)
		}
	}
	if strings.Contains(pg, "<script") {
		t.Error("charts need script")
	}
}

// Integrity findings of the server stream (an accepted event loss, a
// scrubber mismatch, rebuilt stream heads) are warnings on 概要 like a gap
// or an unclean stop.
func TestOverviewWarnsOfIntegrityEvents(t *testing.T) {
	srv := startServer(t, t.TempDir())
	for _, e := range []event.Event{
		{Control: "server", Type: "server.event_loss_accepted", Severity: event.Violation,
			Attrs: event.Attrs{"store_events": 90, "checkpoint_events": 102, "lost_events": 12}},
		{Control: "server", Type: "server.scrub_failed", Severity: event.Violation,
			Attrs: event.Attrs{"problem": "event 7: content changed after it was stored", "size": 100}},
		{Control: "agent", Type: "server.heads_rebuilt", Severity: event.Violation,
			Attrs: event.Attrs{"streams": 1, "agents": []any{"PC-SOUMU-01"}}},
		// Signs of tampering with an agent (its key used to forge, its
		// spool reset, its events backdated, killed).
		{Control: "server", Type: "agent.tamper_suspected", Severity: event.Violation, Object: "agt-1",
			Attrs: event.Attrs{"agent": "agt-1", "reason": "chain_conflict"}},
		{Control: "agent", Type: "server.clock_rewound", Severity: event.Warning,
			Attrs: event.Attrs{"agent": "agt-1", "seq": 9, "rewind": "720h0m0s"}},
		{Control: "server", Type: "agent.outage", Severity: event.Warning, Object: "agt-1",
			Attrs: event.Attrs{"agent": "agt-1", "clean_stop": false}},
	} {
		if _, err := srv.Store().AppendServer(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	pg := b.get("/").body
	i := strings.Index(pg, `id="warnings"`)
	if i < 0 {
		t.Fatalf("概要 has no warnings table:\n%.3000s", pg)
	}
	table := pg[i:]
	if j := strings.Index(table, "</table>"); j >= 0 {
		table = table[:j]
	}
	for _, want := range []string{"欠落の承認", "ログの再検証で不一致", "記録の先頭情報の再構築", "改ざん・偽装の疑い", "エージェントの停止期間", "端末の時計の巻き戻り"} {
		if !strings.Contains(table, want) {
			t.Errorf("概要's warnings lack %q", want)
		}
	}
	for _, raw := range []string{"server.event_loss_accepted", "server.scrub_failed", "server.heads_rebuilt"} {
		if strings.Contains(table, raw) {
			t.Errorf("概要 shows the raw type %s, not its label", raw)
		}
	}
}
