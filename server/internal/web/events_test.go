package web_test

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/mamori/mamori/shared/event"
)

var hrefRE = func(id string) *regexp.Regexp { return regexp.MustCompile(`id="` + id + `" href="([^"]+)"`) }

func linkOf(t *testing.T, page, id string) string {
	t.Helper()
	m := hrefRE(id).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no link #%s on the page", id)
	}
	return strings.ReplaceAll(m[1], "&amp;", "&")
}

// The access log takes a PC by name and controls and types by their
// Japanese labels (the filters people type or follow as links), labels every
// code, pages both ways and shows one event in full.
func TestEventsFiltersLabelsPagingDetail(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "kansa", "auditor")
	addHost(t, srv, "pc-soumu-01", "総務部", nil, 250, "sato")
	addHost(t, srv, "PC-EIGYO-02", "営業部", nil, 3, "kato")
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)

	pg := b.get("/events?order=asc&agent=pc-soumu-01&control=" + url.QueryEscape("ファイルアクセス"))
	if pg.status != 200 {
		t.Fatalf("search by PC name and label: %d\n%.2000s", pg.status, pg.body)
	}
	rows := strings.Count(pg.body, `<tr class="sev-`)
	if rows != 100 || strings.Contains(strings.Join(regexp.MustCompile(`(?s)<tr class="sev-.*?</tr>`).FindAllString(pg.body, -1), ""), "kato") || !strings.Contains(pg.body, "ファイル変更") || strings.Contains(pg.body, ">file.modified<") {
		t.Fatalf("search by PC name: %d rows (want 100), labels or other PC wrong:\n%.3000s", rows, pg.body)
	}
	if !strings.Contains(pg.body, `<option value="fileaccess" selected>ファイルアクセス</option>`) {
		t.Errorf("control dropdown does not show the searched control")
	}
	p2 := b.get(linkOf(t, pg.body, "next"))
	p3 := b.get(linkOf(t, p2.body, "next"))
	if n := strings.Count(p3.body, `<tr class="sev-`); n != 50 || strings.Contains(p3.body, `id="next"`) {
		t.Fatalf("third page: %d rows, want the last 50", n)
	}
	back := b.get(linkOf(t, p3.body, "prev"))
	if back.status != 200 || !strings.Contains(back.body, "2 ページ目") || !strings.Contains(back.body, `list-100.xlsx`) || strings.Contains(back.body, `list-099.xlsx`) {
		t.Fatalf("previous from page 3 is not page 2:\n%.3000s", back.body)
	}
	// Newest first by default, paging to older and back to newer.
	nw := b.get("/events?agent=pc-soumu-01")
	rowsOf := func(body string) []string {
		return regexp.MustCompile(`list-(\d{3})\.xlsx`).FindAllString(body, -1)
	}
	if r := rowsOf(nw.body); len(r) != 100 || r[0] != "list-249.xlsx" || r[99] != "list-150.xlsx" || !strings.Contains(nw.body, "新しい順") {
		t.Fatalf("newest first: %d rows %v", len(r), r)
	}
	older := b.get(linkOf(t, nw.body, "next"))
	if r := rowsOf(older.body); len(r) != 100 || r[0] != "list-149.xlsx" {
		t.Fatalf("older page: %v", r)
	}
	oldest := b.get(linkOf(t, older.body, "next"))
	if r := rowsOf(oldest.body); len(r) != 50 || r[49] != "list-000.xlsx" {
		t.Fatalf("oldest page: %d rows", len(r))
	}
	newer := b.get(linkOf(t, oldest.body, "prev"))
	if r := rowsOf(newer.body); len(r) != 100 || r[0] != "list-149.xlsx" || r[99] != "list-050.xlsx" {
		t.Fatalf("newer from the oldest page: %v", r)
	}
	idx := regexp.MustCompile(`class="detail" href="/events/(\d+)"`).FindStringSubmatch(pg.body)[1]
	d := b.get("/events/" + idx)
	for _, want := range []string{"EXCEL.EXE", "pc-soumu-01", "ファイル変更", "記録の位置", `D:\顧客\list-000.xlsx`} {
		if !strings.Contains(d.body, want) {
			t.Errorf("event detail lacks %q:\n%.3000s", want, d.body)
		}
	}
	if nf := b.get("/events/99999999"); nf.status != 404 || !strings.Contains(nf.body, "見つかりません") {
		t.Errorf("missing event: %d", nf.status)
	}
}

// An event's attributes read as values, not as Go's printing of them: the
// operations a coalesced file change merged show as "create: 1, ...", not
// map[create:1 ...], and every attribute the agent sends has a label.
func TestEventDetailAttrsReadable(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "kansa", "auditor")
	addHostEvents(t, srv, "PC-SOUMU-01", "総務部", []event.Event{{Control: "fileaccess", Type: "file.deleted",
		Object: `D:\顧客\一時.xlsx`, Attrs: event.Attrs{"ops": event.Attrs{"create": 1, "write": 2, "remove": 1},
			"names": []any{`D:\顧客\一時.tmp`, `D:\顧客\一時.xlsx`}, "deleted_as": `D:\顧客\一時.xlsx`,
			"modified": true, "transient": true, "size": json.Number("2048")}}})
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)
	attrsOf := func(query string) string {
		t.Helper()
		pg := b.get("/events?" + query)
		idx := regexp.MustCompile(`class="detail" href="/events/(\d+)"`).FindStringSubmatch(pg.body)[1]
		return regexp.MustCompile(`(?s)<table id="ev-attrs">.*?</table>`).FindString(b.get("/events/" + idx).body)
	}
	// The server's record of the login: who, from where, in what role.
	if login := attrsOf("type=ui.login"); strings.Contains(login, ">ip<") || strings.Contains(login, ">role<") {
		t.Errorf("login attributes unlabelled:\n%s", login)
	}
	attrs := attrsOf("agent=PC-SOUMU-01")
	for _, want := range []string{"create: 1, remove: 1, write: 2", `D:\顧客\一時.tmp, D:\顧客\一時.xlsx`, "<td class=\"mono\">2048</td>",
		"操作の内訳", "名前の変遷", "削除時の名前", "書き込みあり</th><td class=\"mono\">有</td>", "一時ファイル"} {
		if !strings.Contains(attrs, want) {
			t.Errorf("attributes lack %s:\n%s", want, attrs)
		}
	}
	if strings.Contains(attrs, "map[") || strings.Contains(attrs, ">ops<") || strings.Contains(attrs, ">modified<") {
		t.Errorf("attributes in Go's printing or unlabelled:\n%s", attrs)
	}
}

// A register change's event page says what changed in the register's own
// words: 管理責任者, 紛失, not owner and lost.
func TestRegisterChangeEventInRegisterWords(t *testing.T) {
	srv := startServer(t, t.TempDir())
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	if st := apiDo(t, srv, "POST", "/api/v1/media", map[string]any{"id": "MD-0001", "registered": "2026-01-10",
		"product": "USB", "serial": "AA00123456", "owner": "総務部 山田"}, nil); st != 201 {
		t.Fatalf("create: %d", st)
	}
	var cur map[string]any
	apiDo(t, srv, "GET", "/api/v1/media/MD-0001", nil, &cur)
	cur["status"], cur["owner"] = "lost", "経理部 佐藤"
	if st := apiDo(t, srv, "PUT", "/api/v1/media/MD-0001", cur, nil); st != 200 {
		t.Fatalf("update: %d", st)
	}
	pg := b.get("/events?type=register.updated")
	idx := regexp.MustCompile(`class="detail" href="/events/(\d+)"`).FindStringSubmatch(pg.body)
	if idx == nil {
		t.Fatalf("no register.updated listed:\n%.2000s", pg.body)
	}
	attrs := regexp.MustCompile(`(?s)<table id="ev-attrs">.*?</table>`).FindString(b.get("/events/" + idx[1]).body)
	for _, want := range []string{"管理責任者: 総務部 山田", "管理責任者: 経理部 佐藤", "状態: 紛失", "状態: 有効"} {
		if !strings.Contains(attrs, want) {
			t.Errorf("event attrs lack %q:\n%s", want, attrs)
		}
	}
}

// A change found later by comparing the disk with the agent's snapshot
// (made while the agent was stopped) says so in the list, and its detail
// names how it was attributed and its window in the office's time.
func TestChangeFoundLaterIsMarked(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "kansa", "auditor")
	addHostEvents(t, srv, "PC-SOUMU-01", "総務部", []event.Event{{Control: "fileaccess", Type: "file.created",
		Object: `D:\顧客\停止中.xlsx`, Attrs: event.Attrs{"attribution_source": "while_agent_stopped",
			"window_from": "2026-12-07T13:32:38.385Z", "window_to": "2026-12-07T13:35:01Z"}}})
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)
	pg := b.get("/events?agent=PC-SOUMU-01")
	row := regexp.MustCompile(`(?s)<tr class="sev-[a-z]+">.*?停止中\.xlsx.*?</tr>`).FindString(pg.body)
	if !strings.Contains(row, "後から検出") || !strings.Contains(row, "エージェント停止中の変更") {
		t.Errorf("the list does not mark a change found later:\n%s", row)
	}
	idx := regexp.MustCompile(`class="detail" href="/events/(\d+)"`).FindStringSubmatch(pg.body)[1]
	attrs := regexp.MustCompile(`(?s)<table id="ev-attrs">.*?</table>`).FindString(b.get("/events/" + idx).body)
	for _, want := range []string{"エージェント停止中の変更 (ユーザー・プロセス不明)", "2026-12-07 22:32:38.385", "2026-12-07 22:35:01.000"} {
		if !strings.Contains(attrs, want) {
			t.Errorf("event detail lacks %q:\n%s", want, attrs)
		}
	}
	if strings.Contains(attrs, "while_agent_stopped") || strings.Contains(attrs, "13:32:38") {
		t.Errorf("event detail shows a code or UTC:\n%s", attrs)
	}
}

// A time filter takes seconds and a space as well as what the browser's
// picker writes; a bad one is refused in the page's language.
func TestEventTimeFilterForms(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "kansa", "auditor")
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)
	for _, v := range []string{"2026-12-07T09:00", "2026-12-07T09:00:30", "2026-12-07 09:00:30", "2026/12/7 9:00", "2026-12-07"} {
		if pg := b.get("/events?from=" + url.QueryEscape(v)); pg.status != 200 {
			t.Errorf("from=%s: %d", v, pg.status)
		}
	}
	pg := b.get("/events?from=" + url.QueryEscape("昨日の朝"))
	if pg.status != 400 || !strings.Contains(pg.body, "開始日時は 2026-11-01 09:00") || strings.Contains(pg.body, "give a date") {
		t.Errorf("a bad time: %d\n%.2000s", pg.status, pg.body)
	}
}
