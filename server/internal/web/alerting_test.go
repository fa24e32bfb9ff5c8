package web_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The notification, incident and report pages render for a logged-in
// auditor; a report download is recorded as an export.
func TestAlertingPages(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "kansa", "auditor")
	addHost(t, srv, "pc-01", "総務部", []status{{"screenlock", "fail", "screenlock.timeout_too_long", "画面ロックまでの時間が長すぎます", "too long"}}, 3, `OFFICE\sato`)
	var in struct{ ID string }
	if st := apiDo(t, srv, "POST", "/api/v1/incidents", map[string]any{"title": "書類の誤送付", "discovered_at": time.Now().Add(-time.Hour)}, &in); st != 201 {
		t.Fatalf("open incident: %d", st)
	}
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)
	for path, want := range map[string]string{
		"/notifications":                         "配信ログ",
		"/incidents":                             "書類の誤送付",
		"/incidents/" + in.ID + "/worksheet":     "漏えい等の報告 作成用ワークシート",
		"/reports":                               "監査報告書",
		"/reports?from=2026-01-01&to=2027-12-31": "社外秘",
	} {
		a := b.get(path)
		if a.status != 200 || !strings.Contains(a.body, want) {
			t.Errorf("%s: %d, lacks %q", path, a.status, want)
		}
	}
	// An alert's reason in the page's language (the agent sends both).
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(b.get("/notifications").body, `<tr id="alert-`) {
		if time.Now().After(deadline) {
			t.Fatal("no alert on 通知 for the failing screen lock within 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ja := b.get("/notifications").body; !strings.Contains(ja, "画面ロックまでの時間が長すぎます") {
		t.Errorf("通知 lacks the Japanese reason")
	}
	b.get("/lang/en")
	if en := b.get("/notifications").body; !strings.Contains(en, "<td>too long</td>") || strings.Contains(en, "画面ロックまでの時間が長すぎます") {
		t.Errorf("Notifications in English shows the reason in Japanese, or none:\n%s", regexp.MustCompile(`(?s)<tr id="alert-.*?</tr>`).FindString(en))
	}
	b.get("/lang/ja")
	// Refusals in the page's words, on the form with what was typed.
	for q, want := range map[string]string{
		"from=2026-13-01&to=2026-12-31":                              "開始日と終了日を YYYY-MM-DD で",
		"from=2026-12-31&to=2026-12-01":                              "開始日が終了日より後にならないように",
		"from=2026-12-01&to=2026-12-31&department=総務":                "部署「総務」の端末も台帳もありません",
		"from=2026-12-01&to=2026-12-31&department=総務部&format=bundle": "部署は空欄にしてください",
		"from=2099-12-01&to=2099-12-31":                              "期間の開始日が未来です",
	} {
		a := b.get("/reports?" + q)
		if a.status != 400 || !strings.Contains(a.body, want) || !strings.Contains(a.body, `name="from" value="20`) {
			t.Errorf("%s: %d, lacks %q or the form:\n%.3000s", q, a.status, want, a.body)
		}
		if strings.Contains(a.body, "report: invalid") || strings.Contains(a.body, "the bundle holds") {
			t.Errorf("%s: English detail as the message", q)
		}
	}
	if pg := b.get("/reports"); !strings.Contains(pg.body, `<option value="総務部">`) {
		t.Error("監査報告 does not offer the departments")
	}
	if a := b.get("/reports?from=2026-12-01&to=2026-12-31&department=総務部"); a.status != 200 {
		t.Errorf("a known department's report: %d", a.status)
	}
	// The evidence behind the report's figures, from the page: every event
	// of the period, verifiable offline.
	if pg := b.get("/reports"); !strings.Contains(pg.body, `<option value="bundle">`) || strings.Contains(pg.body, "/api/v1/reports") {
		t.Errorf("監査報告 offers no evidence bundle, or sends users to the API:\n%.2000s", pg.body)
	}
	today := time.Now().In(time.FixedZone("JST", 9*3600)).Format(time.DateOnly)
	bundle := b.get("/reports?format=bundle&from=" + today + "&to=" + today)
	if bundle.status != 200 || !strings.Contains(bundle.header.Get("Content-Disposition"), ".jsonl") || !strings.Contains(bundle.body, `"report":"audit"`) ||
		!strings.Contains(bundle.body, `"manifest"`) {
		t.Errorf("report bundle: %d %q\n%.500s", bundle.status, bundle.header.Get("Content-Disposition"), bundle.body)
	}
	if a := b.get("/reports?format=bundle&department=総務部&from=" + today + "&to=" + today); a.status != 400 {
		t.Errorf("a department's bundle: %d, want 400 saying the bundle holds the whole period", a.status)
	}
	if a := b.get("/"); !strings.Contains(a.body, `href="/incidents"`) {
		t.Error("no nav entry for incidents")
	}
	found := false
	for _, e := range serverEvents(t, srv, "export.made") {
		if e.Object == "report/audit" && e.User == "kansa" {
			found = true
		}
	}
	if !found {
		t.Error("report download not recorded")
	}
}

// A rule for a department no PC and no register entry has never fires, so
// a mistyped department must not be saved without a word: the rules table
// names the departments and warns of the unknown one; the form offers the
// known ones.
func TestRuleWithUnknownDepartmentWarns(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addHost(t, srv, "pc-01", "総務部", nil, 1, `OFFICE\sato`)
	admin := newBrowser(t, srv)
	csrf := admin.login("admin", srv.AdminPassword())
	save := func(name, depts string) {
		t.Helper()
		f := url.Values{"csrf": {csrf}, "revision": {pageRevision(t, admin.get("/notifications").body)}, "name": {name},
			"kind": {"violation"}, "default": {"1"}, "departments": {depts}, "action": {"save"}}
		if a := admin.post("/notifications/rules", f); a.status != http.StatusSeeOther {
			t.Fatalf("save %s: %d\n%.2000s", name, a.status, a.body)
		}
	}
	save("総務の違反", "総務部")
	save("経理の違反", "総務部, 経理, 人時")
	pg := admin.get("/notifications").body
	if !strings.Contains(pg, `<datalist id="notify-depts"><option value="総務部">`) || !strings.Contains(pg, `list="notify-depts"`) {
		t.Error("the rule form does not offer the known departments")
	}
	rows := regexp.MustCompile(`(?s)<tr id="rule-[^"]*">.*?</tr>`).FindAllString(pg, -1)
	seen := 0
	for _, row := range rows {
		if strings.Contains(row, "総務の違反") || strings.Contains(row, "経理の違反") {
			seen++
		}
		unknown := strings.Contains(row, "部署「経理」「人時」の PC も台帳の項目もありません")
		switch {
		case strings.Contains(row, "総務の違反") && (unknown || !strings.Contains(row, "総務部")):
			t.Errorf("the rule for a known department: %s", row)
		case strings.Contains(row, "経理の違反") && !unknown:
			t.Errorf("the rule for an unknown department is not warned of: %s", row)
		}
	}
	if seen != 2 {
		t.Fatalf("rules table: %d rows for the two rules, want 2\n%.4000s", seen, pg)
	}
}
