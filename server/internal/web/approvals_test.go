package web_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The carry-out workflow: a request form with the PC, device and register
// entries as choices, a confirmation that shows the personal data taken
// out, a comment kept with the decision, the return step, and expired
// requests not offered for approval.
func TestCarryOutWorkflow(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "manabu", "manager")
	addHost(t, srv, "PC-SOUMU-01", "総務部", nil, 1, "sato")
	pi := map[string]any{"id": "PI-007", "status": "active", "name": "従業員名簿", "contents": "氏名、住所、マイナンバー", "purpose": "給与計算",
		"record_count": 85, "sensitive": true, "medium": "paper", "owner": "総務部長", "department": "総務部", "retention": "7y", "disposal_method": "溶解処理"}
	if st := apiDo(t, srv, "POST", "/api/v1/register", pi, nil); st != 201 {
		t.Fatalf("PI entry: %d", st)
	}
	m := map[string]any{"id": "USB-01", "status": "active", "registered": "2026-04-01", "product": "暗号化USBメモリ 32GB", "serial": "AA00123456", "owner": "総務部", "encrypted": true}
	if st := apiDo(t, srv, "POST", "/api/v1/media", m, nil); st != 201 {
		t.Fatalf("media entry: %d", st)
	}
	b := newBrowser(t, srv)
	csrf := b.login("manabu", testPassword)
	form := b.get("/approvals/new")
	for _, want := range []string{`<option value="PC-SOUMU-01"`, `<option value="AA00123456"`, `value="PI-007"`, "要配慮", `value="manabu"`} {
		if !strings.Contains(form.body, want) {
			t.Errorf("request form lacks %q", want)
		}
	}
	now := time.Now().In(time.FixedZone("JST", 9*3600))
	req := url.Values{"csrf": {csrf}, "requester": {"佐藤"}, "host": {"PC-SOUMU-01"}, "serial": {"AA00123456"}, "purpose": {"年末調整の書類を税理士へ"},
		"from": {now.Format("2006-01-02T15:04")}, "to": {now.Add(-time.Hour).Format("2006-01-02T15:04")}, "register_ids": {"PI-007"}}
	if a := b.post("/approvals/new", req); a.status != http.StatusBadRequest || !strings.Contains(a.body, "終了は開始より後の日時にしてください") || !strings.Contains(a.body, "年末調整の書類を税理士へ") {
		t.Fatalf("bad window: %d\n%.3000s", a.status, a.body)
	}
	req.Set("to", now.Add(48*time.Hour).Format("2006-01-02T15:04"))
	if a := b.post("/approvals/new", req); a.status != http.StatusSeeOther {
		t.Fatalf("request: %d\n%.3000s", a.status, a.body)
	}
	list := b.get("/approvals").body
	id := regexp.MustCompile(`id="ap-(CO-[0-9a-f-]+)"`).FindStringSubmatch(list)
	if id == nil || !strings.Contains(list, "従業員名簿") || !strings.Contains(list, "申請中") {
		t.Fatalf("list:\n%.3000s", list)
	}
	conf := b.get("/approvals/" + id[1] + "/confirm?decision=approve")
	if !strings.Contains(conf.body, "マイナンバー") || !strings.Contains(conf.body, "要配慮") || !strings.Contains(conf.body, `id="confirm"`) {
		t.Fatalf("confirmation does not show the data taken out:\n%.3000s", conf.body)
	}
	rev := regexp.MustCompile(`name="revision" value="(\d+)"`).FindStringSubmatch(conf.body)[1]
	if a := b.post("/approvals/"+id[1]+"/approve", url.Values{"csrf": {csrf}, "revision": {rev}, "comment": {"暗号化USBのみ可。返却時に消去を確認"}}); a.status != http.StatusSeeOther {
		t.Fatalf("approve: %d\n%.2000s", a.status, a.body)
	}
	var ap struct{ Status, Approver, Comment string }
	apiDo(t, srv, "GET", "/api/v1/approvals/"+id[1], nil, &ap)
	if ap.Status != "approved" || ap.Approver != "manabu" || ap.Comment != "暗号化USBのみ可。返却時に消去を確認" {
		t.Fatalf("stored approval: %+v", ap)
	}
	list = b.get("/approvals").body
	if !strings.Contains(list, "返却時に消去を確認") || !strings.Contains(list, "confirm?decision=return") {
		t.Errorf("approved row without its comment or the return step")
	}
	conf = b.get("/approvals/" + id[1] + "/confirm?decision=return")
	rev = regexp.MustCompile(`name="revision" value="(\d+)"`).FindStringSubmatch(conf.body)[1]
	if a := b.post("/approvals/"+id[1]+"/return", url.Values{"csrf": {csrf}, "revision": {rev}, "comment": {"消去確認済み"}}); a.status != http.StatusSeeOther {
		t.Fatalf("return: %d\n%.2000s", a.status, a.body)
	}
	apiDo(t, srv, "GET", "/api/v1/approvals/"+id[1], nil, &ap)
	if ap.Status != "returned" {
		t.Fatalf("after return: %+v", ap)
	}
	// An expired request is shown as such and cannot be approved.
	old, oldRev := newApproval(t, srv, "山田", "PC-SOUMU-01")
	var cur map[string]any
	apiDo(t, srv, "GET", "/api/v1/approvals/"+old, nil, &cur)
	cur["from"], cur["to"] = time.Now().Add(-72*time.Hour).Format(time.RFC3339), time.Now().Add(-24*time.Hour).Format(time.RFC3339)
	_ = oldRev
	if st := apiDo(t, srv, "PUT", "/api/v1/approvals/"+old, cur, nil); st != 200 {
		t.Fatalf("backdating: %d", st)
	}
	list = b.get("/approvals").body
	i := strings.Index(list, `id="ap-`+old+`"`)
	row := list[i : i+strings.Index(list[i:], "</tr>")]
	if !strings.Contains(row, "期限切れ") || strings.Contains(row, "decision=approve") {
		t.Errorf("expired request offered for approval:\n%s", row)
	}
	if c := b.get("/approvals/" + old + "/confirm?decision=approve"); !strings.Contains(c.body, `id="blocked"`) || strings.Contains(c.body, `id="confirm"`) {
		t.Errorf("confirmation offers approving an expired request")
	}
}
