package web_test

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// The access log counts what it finds (exactly up to 1,000, then "1000 件
// 以上"), searches a department's PCs together in both orders and offers
// departments and the users seen as choices.
func TestEventsCountDepartmentUsers(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "kansa", "auditor")
	addHost(t, srv, "pc-soumu-01", "総務部", nil, 150, "sato")
	addHost(t, srv, "pc-soumu-02", "総務部", nil, 70, "suzuki")
	addHost(t, srv, "PC-EIGYO-02", "営業部", nil, 3, "kato")
	addHost(t, srv, "pc-big", "情報システム部", nil, 1005, "admin")
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)

	if pg := b.get("/events?agent=PC-EIGYO-02"); !strings.Contains(pg.body, "該当 3 件<") {
		t.Errorf("count of one PC: want 該当 3 件:\n%.3000s", pg.body)
	}
	if pg := b.get("/events?agent=pc-big"); !strings.Contains(pg.body, "該当 1000 件以上") {
		t.Errorf("count over the cap: want 該当 1000 件以上")
	}
	size, err := srv.Store().TreeSize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pg := b.get("/events"); !strings.Contains(pg.body, fmt.Sprintf("該当 %d 件<", size)) {
		t.Errorf("unfiltered count: want the log's size, 該当 %d 件", size)
	}
	if pg := b.get("/events?agent=pc-big&user=nobody"); !strings.Contains(pg.body, "該当 0 件<") {
		t.Errorf("count of nothing: want 該当 0 件")
	}

	rowRE := regexp.MustCompile(`(?s)<tr class="sev-.*?</tr>`)
	idxRE := regexp.MustCompile(`class="detail" href="/events/(\d+)"`)
	walk := func(start string, desc bool) []int64 {
		t.Helper()
		var got []int64
		pg := b.get(start)
		for i := 0; ; i++ {
			if pg.status != 200 {
				t.Fatalf("%s: %d\n%.2000s", start, pg.status, pg.body)
			}
			for _, row := range rowRE.FindAllString(pg.body, -1) {
				if strings.Contains(row, "kato") || strings.Contains(row, "admin") {
					t.Fatalf("department search shows another department's event: %s", row)
				}
			}
			for _, m := range idxRE.FindAllStringSubmatch(pg.body, -1) {
				n, _ := strconv.ParseInt(m[1], 10, 64)
				if len(got) > 0 && (desc && n >= got[len(got)-1] || !desc && n <= got[len(got)-1]) {
					t.Fatalf("out of order: %d after %d", n, got[len(got)-1])
				}
				got = append(got, n)
			}
			if !strings.Contains(pg.body, `id="next"`) || i > 5 {
				return got
			}
			pg = b.get(linkOf(t, pg.body, "next"))
		}
	}
	dep := "/events?department=" + url.QueryEscape("総務部")
	// The user choices come from counts made in the background.
	first := until(t, b, dep, func(body string) bool { return strings.Contains(body, `<option value="kato">`) })
	if !strings.Contains(first.body, "該当 220 件<") || !strings.Contains(first.body, `<option value="総務部" selected>総務部</option>`) {
		t.Fatalf("department search: want 該当 220 件 and the department chosen:\n%.3000s", first.body)
	}
	if strings.Contains(first.body, `id="export-csv"`) || !strings.Contains(first.body, "部署での検索はエクスポートできません") {
		t.Errorf("a department search offers an export that would ignore the department")
	}
	if got := walk(dep, true); len(got) != 220 {
		t.Errorf("newest first over the department: %d events, want 220", len(got))
	}
	if got := walk(dep+"&order=asc", false); len(got) != 220 {
		t.Errorf("oldest first over the department: %d events, want 220", len(got))
	}
	// Back to newer from the oldest page.
	older := b.get(linkOf(t, first.body, "next"))
	newer := b.get(linkOf(t, older.body, "prev"))
	if a, c := idxRE.FindAllString(first.body, -1), idxRE.FindAllString(newer.body, -1); strings.Join(a, ",") != strings.Join(c, ",") {
		t.Errorf("newer from the second page is not the first page")
	}
	// A department with a PC chosen is that PC.
	if pg := b.get(dep + "&agent=pc-soumu-02"); !strings.Contains(pg.body, "該当 70 件<") {
		t.Errorf("department and PC: want the PC's 70 events")
	}
	if pg := b.get("/events?department=" + url.QueryEscape("経理部")); pg.status != 400 || !strings.Contains(pg.body, "部署「経理部」の PC がありません") {
		t.Errorf("unknown department: %d, want 400 saying so", pg.status)
	}

	// Choices: departments from the PCs' records, users seen, busiest first.
	for _, want := range []string{`<option value="営業部" >営業部</option>`, `<option value="情報システム部" >`} {
		if !strings.Contains(first.body, want) {
			t.Errorf("department choices lack %s", want)
		}
	}
	dl := regexp.MustCompile(`(?s)<datalist id="users">(.*?)</datalist>`).FindStringSubmatch(first.body)
	if dl == nil {
		t.Fatal("no user choices")
	}
	if got := regexp.MustCompile(`value="([^"]+)"`).FindAllStringSubmatch(dl[1], -1); len(got) != 4 || got[0][1] != "admin" || got[1][1] != "sato" || got[3][1] != "kato" {
		t.Errorf("user choices %v, want admin, sato, suzuki, kato", got)
	}
}

// 概要 charts the users and folders with the most file access over the
// last 7 or 30 days; each bar opens the access log of its user or folder,
// whose count matches the bar.
func TestOverviewAccessVolume(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addHost(t, srv, "pc-soumu-01", "総務部", nil, 40, "sato")
	addHost(t, srv, "pc-soumu-02", "総務部", nil, 12, "suzuki")
	addHostEvents(t, srv, "pc-old", "営業部", []event.Event{{Control: "fileaccess", Type: "file.read", User: "tanaka",
		Object: `E:\古い\a.txt`, Time: time.Now().AddDate(0, 0, -10)}})
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	pg := until(t, b, "/", func(body string) bool { return !strings.Contains(body, `id="volume-partial"`) }).body
	users := regexp.MustCompile(`(?s)<svg class="chart" id="svg-top-users".*?</svg>`).FindString(pg)
	folders := regexp.MustCompile(`(?s)<svg class="chart" id="svg-top-folders".*?</svg>`).FindString(pg)
	if !strings.Contains(pg, "アクセスの多いユーザー（7日間") || users == "" || folders == "" {
		t.Fatalf("no access volume charts:\n%.4000s", pg)
	}
	if !regexp.MustCompile(`(?s)>sato<.*>40<.*>suzuki<.*>12<`).MatchString(users) || strings.Contains(users, "tanaka") {
		t.Errorf("top users (7 days) want sato 40, suzuki 12, not tanaka:\n%s", users)
	}
	if !strings.Contains(folders, `>D:\顧客\<`) || !strings.Contains(folders, ">52<") {
		t.Errorf(`top folders want D:\顧客\ with 52:\n%s`, folders)
	}
	link := strings.ReplaceAll(regexp.MustCompile(`<a href="([^"]+)"><text[^>]*>sato<`).FindStringSubmatch(users)[1], "&amp;", "&")
	if ev := b.get(link); ev.status != 200 || !strings.Contains(ev.body, "該当 40 件<") {
		t.Errorf("sato's bar opens %s: %d, want 該当 40 件", link, ev.status)
	}
	flink := strings.ReplaceAll(regexp.MustCompile(`<a href="([^"]+)"><text[^>]*>D:\\顧客\\<`).FindStringSubmatch(folders)[1], "&amp;", "&")
	if ev := b.get(flink); ev.status != 200 || !strings.Contains(ev.body, "該当 52 件<") {
		t.Errorf("the folder's bar opens %s: %d, want 該当 52 件", flink, ev.status)
	}
	month := until(t, b, linkOf(t, pg, "volume-span"), func(body string) bool { return !strings.Contains(body, `id="volume-partial"`) }).body
	if !strings.Contains(month, "アクセスの多いユーザー（30日間") || !strings.Contains(month, ">tanaka<") || !strings.Contains(month, `>E:\古い\<`) {
		t.Errorf("30 days lacks the event of 10 days ago")
	}
}

// until gets path until ok holds for the page (the access counts are made
// in the background; a page waits for them only briefly), for at most 20 s.
func until(t *testing.T, b *browser, path string, ok func(string) bool) answer {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := b.get(path)
		if a.status == 200 && ok(a.body) || time.Now().After(deadline) {
			return a
		}
		time.Sleep(50 * time.Millisecond)
	}
}
