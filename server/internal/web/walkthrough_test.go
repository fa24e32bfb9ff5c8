package web_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// Defects a manager's walkthrough found: English, Go durations and codes
// where a manager reads Japanese, media outside the register unmarked,
// the checkpoint field on every role's access log.

// eventAttrs opens the first event the access-log query lists and returns
// its attribute table.
func eventAttrs(t *testing.T, b *browser, query string) string {
	t.Helper()
	pg := b.get("/events?" + query)
	m := regexp.MustCompile(`class="detail" href="/events/(\d+)"`).FindStringSubmatch(pg.body)
	if m == nil {
		t.Fatalf("no event for %s:\n%.2000s", query, pg.body)
	}
	return regexp.MustCompile(`(?s)<table id="ev-attrs">.*?</table>`).FindString(b.get("/events/" + m[1]).body)
}

// A fileaccess.bulk summary reads in Japanese: the sentence, the counts by
// operation, the window; a Go duration elsewhere (max_idle) too.
func TestBulkSummaryInJapanese(t *testing.T) {
	srv := startServer(t, t.TempDir())
	from := time.Now().Add(-time.Minute).UTC()
	addHostEvents(t, srv, "PC-KEIRI-01", "経理部", []event.Event{
		{Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning, User: "sato", Process: "/usr/bin/cat", Object: "/srv/顧客",
			Attrs: event.Attrs{"summary": "73 file events in 5s by cat: 72 read, 1 modified", "counts": event.Attrs{"read": 23},
				"totals": event.Attrs{"modified": 1, "read": 72}, "window": "10s", "total": 73, "individually": 50, "suppressed": 23,
				"threshold": 50, "processes": event.Attrs{"/usr/bin/cat": 73},
				"from": from.Format(time.RFC3339Nano), "to": from.Add(5 * time.Second).Format(time.RFC3339Nano)}},
		{Control: "screenlock", Type: "screenlock.enforced", Attrs: event.Attrs{"max_idle": "5m0s", "targets": 1}},
	})
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	attrs := eventAttrs(t, b, "type=fileaccess.bulk")
	for _, want := range []string{"cat が 5秒間に 73 件のファイル操作（読み取り 72、変更 1）", "読み取り 23", "読み取り 72、変更 1", ">10秒<"} {
		if !strings.Contains(attrs, want) {
			t.Errorf("bulk attributes lack %q:\n%s", want, attrs)
		}
	}
	for _, bad := range []string{"file events", "read:", "modified:", ">10s<"} {
		if strings.Contains(attrs, bad) {
			t.Errorf("bulk attributes show %q:\n%s", bad, attrs)
		}
	}
	if attrs := eventAttrs(t, b, "type=screenlock.enforced"); !strings.Contains(attrs, ">5分<") || strings.Contains(attrs, "5m0s") {
		t.Errorf("max_idle not in Japanese:\n%s", attrs)
	}
}

// 通知's rules table: Japanese durations, a default rule by its Japanese
// name with the ID the API uses beside it.
func TestNotifyRulesInJapanese(t *testing.T) {
	srv := startServer(t, t.TempDir())
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	pg := b.get("/notifications").body
	row := regexp.MustCompile(`(?s)<tr id="rule-default-silent">.*?</tr>`).FindString(pg)
	if !strings.Contains(row, "エージェント応答なし") || !strings.Contains(row, `<span class="muted mono">default-silent</span>`) ||
		!strings.Contains(row, ">10分<") || strings.Contains(row, ">10m<") {
		t.Errorf("default-silent row:\n%s", row)
	}
	row = regexp.MustCompile(`(?s)<tr id="rule-default-violation">.*?</tr>`).FindString(pg)
	if !strings.Contains(row, "管理策違反") || strings.Contains(row, ">1h<") || strings.Contains(row, ">5m<") || strings.Contains(row, ">1m<") {
		t.Errorf("default-violation row:\n%s", row)
	}
}

// 概要's department charts: PCs without a department under 部署未設定, and
// a department whose PC came after today's sample is on the trend.
func TestOverviewDepartmentCharts(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addHostEvents(t, srv, "PC-EIGYO-01", "営業部", []event.Event{statusEvent("posture", "pass", "", "", "")})
	addHostEvents(t, srv, "PC-NODEPT", "", []event.Event{statusEvent("posture", "fail", "posture.x", "x", "x")})
	if err := srv.Compliance().RecordDay(context.Background()); err != nil {
		t.Fatal(err)
	}
	addHostEvents(t, srv, "PC-KEIRI-01", "経理部", []event.Event{statusEvent("posture", "pass", "", "", "")})
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	pg := b.get("/").body
	dept := regexp.MustCompile(`(?s)<svg class="chart" id="svg-dept".*?</svg>`).FindString(pg)
	if !strings.Contains(dept, "部署未設定") || strings.Contains(dept, ">—<") {
		t.Errorf("department chart:\n%s", dept)
	}
	trend := regexp.MustCompile(`(?s)<svg class="chart" id="svg-trend-dept".*?</svg>`).FindString(pg)
	for _, want := range []string{"営業部", "経理部", "部署未設定"} {
		if !strings.Contains(trend, want) {
			t.Errorf("department trend lacks %s:\n%s", want, trend)
		}
	}
}

// Media not in 媒体管理台帳 (no register id on their events) are marked on
// 概要's chart and on the access log's list and detail.
func TestUnregisteredMediaMarked(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "hogo", "manager")
	dev := func(serial string) event.Attrs {
		return event.Attrs{"serial": serial, "product": "USB DISK", "vendor_id": "0930", "product_id": "6545"}
	}
	addHostEvents(t, srv, "PC-SOUMU-01", "総務部", []event.Event{
		{Control: "media", Type: "media.inserted", Severity: event.Warning, Object: `\\.\PHYSICALDRIVE1 E:\`, Attrs: dev("530001230512345678")},
		{Control: "media", Type: "media.file_written", Severity: event.Warning, Object: `E:\名簿.xlsx`, Attrs: dev("530001230512345678")},
		{Control: "media", Type: "media.inserted", Object: `\\.\PHYSICALDRIVE2 F:\`, RegisterID: "USB-01", Attrs: dev("AA00123456")},
	})
	b := newBrowser(t, srv)
	b.login("hogo", testPassword)
	chart := regexp.MustCompile(`(?s)<svg class="chart" id="svg-media".*?</svg>`).FindString(b.get("/").body)
	bars := regexp.MustCompile(`(?s)<a href.*?</a>`).FindAllString(chart, -1)
	if len(bars) != 2 {
		t.Fatalf("media chart:\n%s", chart)
	}
	for _, br := range bars {
		if strings.Contains(br, "530001230512345678") != strings.Contains(br, "未登録") {
			t.Errorf("media bar marked wrong:\n%s", br)
		}
	}
	list := b.get("/events?control=media").body
	rows := regexp.MustCompile(`(?s)<tr class="sev-.*?</tr>`).FindAllString(list, -1)
	if len(rows) != 3 {
		t.Fatalf("media events:\n%.3000s", list)
	}
	for _, r := range rows {
		unreg := strings.Contains(r, `E:\`)
		if strings.Contains(r, "未登録の媒体") != unreg {
			t.Errorf("media row marked wrong (unregistered %v):\n%s", unreg, r)
		}
	}
	detail := func(q string) string {
		m := regexp.MustCompile(`class="detail" href="/events/(\d+)"`).FindStringSubmatch(b.get("/events?" + q).body)
		return regexp.MustCompile(`(?s)<table id="event-detail">.*?</table>`).FindString(b.get("/events/" + m[1]).body)
	}
	if d := detail("type=media.file_written"); !strings.Contains(d, "未登録の媒体") {
		t.Errorf("unregistered medium's event detail unmarked:\n%s", d)
	}
	if d := detail("register_id=USB-01"); strings.Contains(d, "未登録の媒体") {
		t.Errorf("registered medium's event detail marked:\n%s", d)
	}
}

// A carry-out of a device not in 媒体管理台帳 is marked in the list, on its
// confirm page and on its register page.
func TestApprovalOfUnregisteredMedia(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addHost(t, srv, "PC-SOUMU-01", "総務部", nil, 1, "sato")
	m := map[string]any{"id": "USB-01", "status": "active", "registered": "2026-04-01", "product": "暗号化USBメモリ 32GB", "serial": "AA00123456", "owner": "総務部", "encrypted": true}
	if st := apiDo(t, srv, "POST", "/api/v1/media", m, nil); st != 201 {
		t.Fatalf("media entry: %d", st)
	}
	known, _ := newApproval(t, srv, "佐藤", "PC-SOUMU-01") // AA00123456
	var ap struct{ ID string }
	now := time.Now()
	req := map[string]any{"requester": "山田", "serial": "ZZ00000001", "host": "PC-SOUMU-01", "purpose": "展示会デモ",
		"from": now.Format(time.RFC3339), "to": now.Add(48 * time.Hour).Format(time.RFC3339)}
	if st := apiDo(t, srv, "POST", "/api/v1/approvals", req, &ap); st != 201 {
		t.Fatalf("create approval: %d", st)
	}
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	list := b.get("/approvals").body
	rowOf := func(id string) string {
		return regexp.MustCompile(`(?s)<tr id="ap-` + regexp.QuoteMeta(id) + `">.*?</tr>`).FindString(list)
	}
	if r := rowOf(ap.ID); !strings.Contains(r, "台帳にない媒体") {
		t.Errorf("unregistered device's approval unmarked:\n%s", r)
	}
	if r := rowOf(known); r == "" || strings.Contains(r, "台帳にない媒体") {
		t.Errorf("registered device's approval marked:\n%s", r)
	}
	if c := b.get("/approvals/" + ap.ID + "/confirm?decision=approve").body; !strings.Contains(c, "台帳にない媒体") {
		t.Errorf("confirm page unmarked")
	}
	if c := b.get("/approvals/" + known + "/confirm?decision=approve").body; strings.Contains(c, "台帳にない媒体") {
		t.Errorf("registered device's confirm page marked")
	}
	if e := b.get("/registers/approvals/" + ap.ID).body; !strings.Contains(e, "台帳にない媒体") {
		t.Errorf("approval's page unmarked")
	}
}

// The access log's checkpoint field (tree size for verify --checkpoint)
// is for auditors and admins; a manager does not see it.
func TestCheckpointFieldOnlyForAuditors(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "hogo", "manager")
	addUser(t, srv, "kansa", "auditor")
	for _, c := range []struct {
		user, pw string
		want     bool
	}{{"hogo", testPassword, false}, {"kansa", testPassword, true}, {"admin", srv.AdminPassword(), true}} {
		b := newBrowser(t, srv)
		b.login(c.user, c.pw)
		pg := b.get("/events").body
		if got := strings.Contains(pg, `id="f-since"`) && strings.Contains(pg, "前回のチェックポイント"); got != c.want {
			t.Errorf("%s: checkpoint field shown %v, want %v", c.user, got, c.want)
		}
		if c.want && !strings.Contains(pg, `id="bundle-form"`) {
			t.Errorf("%s: no bundle export form", c.user)
		}
	}
}
