package web_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// The register form: Japanese labels and choices, messages by the field,
// input kept on error, the lost-update guard in Japanese, a history that
// names each field's change, and the list's status filter and export
// taking what is shown.
func TestRegisterForm(t *testing.T) {
	srv := startServer(t, t.TempDir())
	b := newBrowser(t, srv)
	csrf := b.login("admin", srv.AdminPassword())

	form := b.get("/registers/pi/new")
	for _, want := range []string{"個人情報の名称", "保管場所", `<option value="electronic"`, ">電子<", ">有効<", "5年、18か月、無期限"} {
		if !strings.Contains(form.body, want) {
			t.Errorf("new PI form lacks %q", want)
		}
	}
	good := url.Values{"csrf": {csrf}, "id": {"PI-001"}, "status": {"active"}, "name": {"顧客名簿"}, "purpose": {"商品発送"},
		"record_count": {"1200"}, "sensitive": {"no"}, "medium": {"electronic"}, "locations": {`PC-SOUMU-01:D:\顧客`},
		"owner": {"山田 太郎"}, "department": {"総務部"}, "access": {"総務部\n営業部"}, "retention": {"5年"}, "disposal_method": {""}}
	bad := b.post("/registers/pi/new", good)
	if bad.status != http.StatusBadRequest || !strings.Contains(bad.body, `id="err-disposal_method"`) ||
		!strings.Contains(bad.body, "保管期間が有限のときは廃棄方法を入力してください。") || !strings.Contains(bad.body, `value="顧客名簿"`) ||
		!strings.Contains(bad.body, "何も保存されていません") {
		t.Fatalf("bad entry: %d, want 400 with the message by the field and the input kept:\n%.4000s", bad.status, bad.body)
	}
	if a := b.get("/registers/pi/PI-001"); a.status != http.StatusNotFound {
		t.Fatalf("a refused form saved something: %d", a.status)
	}
	good.Set("disposal_method", "シュレッダー")
	if a := b.post("/registers/pi/new", good); a.status != http.StatusSeeOther {
		t.Fatalf("good entry: %d\n%.3000s", a.status, a.body)
	}
	if a := b.post("/registers/pi/new", good); a.status != http.StatusConflict || !strings.Contains(a.body, "すでに登録されています") {
		t.Errorf("same number again: %d", a.status)
	}
	pg := b.get("/registers/pi/PI-001")
	rev := regexp.MustCompile(`name="revision" value="(\d+)"`).FindStringSubmatch(pg.body)[1]
	upd := url.Values{}
	for k, v := range good {
		upd[k] = v
	}
	if !strings.Contains(pg.body, `value="5y"`) { // the form's 5年 stored as the export writes it
		t.Errorf("retention typed as 5年 not stored as 5y")
	}
	upd.Set("revision", rev)
	upd.Set("record_count", "1500")
	if a := b.post("/registers/pi/PI-001", upd); a.status != http.StatusSeeOther {
		t.Fatalf("update: %d\n%.3000s", a.status, a.body)
	}
	upd.Set("record_count", "9999") // from the same, now stale, form
	stale := b.post("/registers/pi/PI-001", upd)
	if stale.status != http.StatusConflict || !strings.Contains(stale.body, "ほかの人が先にこの項目を変更したため保存しませんでした") || !strings.Contains(stale.body, `value="9999"`) {
		t.Fatalf("stale update: %d, want 409 in Japanese with the input kept:\n%.3000s", stale.status, stale.body)
	}
	// The form saved again as it stands changes nothing: no version, no event.
	pg = b.get("/registers/pi/PI-001")
	upd.Set("revision", regexp.MustCompile(`name="revision" value="(\d+)"`).FindStringSubmatch(pg.body)[1])
	upd.Set("record_count", "1500")
	if a := b.post("/registers/pi/PI-001", upd); a.status != http.StatusSeeOther || !strings.HasSuffix(a.header.Get("Location"), "ok=unchanged") {
		t.Fatalf("unchanged save: %d %s", a.status, a.header.Get("Location"))
	}
	if a := b.get("/registers/pi/PI-001?ok=unchanged"); !strings.Contains(a.body, "変更がないため、保存していません") {
		t.Errorf("unchanged save not said")
	}
	if ev := b.get("/events?type=register.unchanged"); strings.Contains(ev.body, `class="detail"`) {
		t.Errorf("an unchanged save was recorded as an event")
	}
	hist := b.get("/registers/pi/PI-001").body
	if n := strings.Count(hist, ">更新<"); n != 1 {
		t.Errorf("history has %d updates, want 1 (the unchanged save made a version)", n)
	}
	if !strings.Contains(hist, "件数") || !strings.Contains(hist, ">1200<") || !strings.Contains(hist, ">1500<") || !strings.Contains(hist, ">更新<") {
		t.Errorf("history does not say which field changed from what to what:\n%.5000s", hist)
	}
	if l := b.get("/registers/pi?status=" + url.QueryEscape("有効")); !strings.Contains(l.body, "PI-001") {
		t.Errorf("状態=有効 does not find the active entry")
	}
	if l := b.get("/registers/pi?status=retired"); strings.Contains(l.body, ">PI-001<") {
		t.Errorf("retired filter shows an active entry")
	}
	if x := b.get("/registers/pi/export?lang=ja&q=" + url.QueryEscape("存在しない")); strings.Contains(x.body, "PI-001") {
		t.Errorf("register export ignores q=")
	}
	if x := b.get("/registers/pi/export?lang=ja&q=" + url.QueryEscape("顧客")); !strings.Contains(x.body, "PI-001") {
		t.Errorf("register export with q= lost the match")
	}
}

// An approval's approver, decision time, comment and return time are set
// by the approve, deny and return actions: the form shows them but offers
// no input that a save would silently ignore, and a new request has none.
func TestApprovalFormRecordedFieldsReadOnly(t *testing.T) {
	srv := startServer(t, t.TempDir())
	b := newBrowser(t, srv)
	csrf := b.login("admin", srv.AdminPassword())
	id, rev := newApproval(t, srv, "山田", "PC-SALES01")
	if a := b.post("/approvals/"+id+"/approve", url.Values{"csrf": {csrf}, "revision": {itoa(rev)}, "comment": {"展示会のみ可"}}); a.status != http.StatusSeeOther {
		t.Fatalf("approve: %d", a.status)
	}
	pg := b.get("/registers/approvals/" + id).body
	for _, f := range []string{"approver", "decided", "comment", "returned"} {
		tag := regexp.MustCompile(`<(input|textarea)[^>]*id="f-` + f + `"[^>]*>`).FindString(pg)
		if tag == "" || !strings.Contains(tag, "readonly") {
			t.Errorf("%s on the approval's form: %q, want a read-only field", f, tag)
		}
	}
	if !strings.Contains(pg, "展示会のみ可") || !strings.Contains(pg, `value="admin"`) {
		t.Errorf("the recorded decision is not shown")
	}
	if tag := regexp.MustCompile(`<textarea[^>]*id="f-purpose"[^>]*>`).FindString(pg); tag == "" || strings.Contains(tag, "readonly") {
		t.Errorf("purpose is not an ordinary field: %q", tag)
	}
	nf := b.get("/registers/approvals/new").body
	for _, f := range []string{"approver", "decided", "comment", "returned"} {
		if strings.Contains(nf, `id="f-`+f+`"`) {
			t.Errorf("the new request form offers %s", f)
		}
	}
}
