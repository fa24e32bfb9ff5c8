package web_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Managers open incidents on the pages: from an alert on 通知 (the alert's
// PC and events come with it) or by hand on 事故. Bad input is answered on
// the page with the input kept and opens nothing; auditors only read.
func TestIncidentOpenedFromAlertAndByHand(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "manabu", "manager")
	addUser(t, srv, "kansa", "auditor")
	idx := appendAlert(t, srv, "ag-1", "pc-soumu-01")
	count := func() int {
		var l struct {
			Incidents []struct{ Title, Source struct{ Kind string } }
		}
		if st := apiDo(t, srv, "GET", "/api/v1/incidents", nil, &l); st != 200 {
			t.Fatalf("list: %d", st)
		}
		return len(l.Incidents)
	}

	m := newBrowser(t, srv)
	csrf := m.login("manabu", testPassword)
	if pg := m.get("/notifications"); !strings.Contains(pg.body, `action="/incidents"`) || !strings.Contains(pg.body, `name="alert" value="`+strconv.FormatInt(idx, 10)+`"`) {
		t.Fatalf("通知 offers no 事故として記録 for the alert:\n%.3000s", pg.body)
	}
	for name, f := range map[string]url.Values{
		"no title by hand":  {"csrf": {csrf}, "title": {" "}, "summary": {"紙の名簿を紛失"}},
		"a bad time":        {"csrf": {csrf}, "title": {"紛失"}, "discovered_at": {"きのう"}},
		"in the future":     {"csrf": {csrf}, "title": {"紛失"}, "discovered_at": {"2099-01-01T09:00"}},
		"no such alert":     {"csrf": {csrf}, "alert": {"999999"}},
		"alert not numeric": {"csrf": {csrf}, "alert": {"x"}},
	} {
		a := m.post("/incidents", f)
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, `class="ferr"`) {
			t.Errorf("%s: %d\n%.2000s", name, a.status, a.body)
		}
		if name == "no title by hand" && !strings.Contains(a.body, "紙の名簿を紛失") {
			t.Errorf("%s: the input is not kept", name)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("bad input opened %d incidents", n)
	}
	if a := m.post("/incidents", url.Values{"csrf": {csrf}, "alert": {strconv.FormatInt(idx, 10)}, "discovered_at": {"2020-01-01T09:00"}}); a.status != http.StatusBadRequest || !strings.Contains(a.body, "アラートの発生より前") {
		t.Errorf("discovered before the alert: %d", a.status)
	}
	jst := time.FixedZone("JST", 9*3600)
	disc := time.Now().In(jst).Add(30 * time.Minute) // later than the alert, not in the future by an hour
	if a := m.post("/incidents", url.Values{"csrf": {csrf}, "alert": {strconv.FormatInt(idx, 10)}, "discovered_at": {disc.Format("2006-01-02T15:04")}}); a.status != http.StatusSeeOther {
		t.Fatalf("open from the alert: %d\n%.2000s", a.status, a.body)
	}
	if a := m.post("/incidents", url.Values{"csrf": {csrf}, "title": {"書類の誤送付"}, "summary": {"FAX の誤送信"}}); a.status != http.StatusSeeOther {
		t.Fatalf("open by hand: %d\n%.2000s", a.status, a.body)
	}
	pg := m.get("/incidents")
	from := time.Date(disc.Year(), disc.Month(), disc.Day()+3, 0, 0, 0, 0, jst).Format(time.DateOnly)
	if !strings.Contains(pg.body, "pc-soumu-01") || !strings.Contains(pg.body, "書類の誤送付") || !strings.Contains(pg.body, from) {
		t.Errorf("事故 does not list both (the alert's with 速報 from %s):\n%.3000s", from, pg.body)
	}
	if n := count(); n != 2 {
		t.Errorf("%d incidents, want 2", n)
	}

	a := newBrowser(t, srv)
	acsrf := a.login("kansa", testPassword)
	if pg := a.get("/incidents"); strings.Contains(pg.body, `action="/incidents"`) {
		t.Error("the auditor is offered the form")
	}
	if r := a.post("/incidents", url.Values{"csrf": {acsrf}, "title": {"監査人"}}); r.status != http.StatusForbidden {
		t.Errorf("auditor opened an incident: %d", r.status)
	}
}

// An incident's details (the items of the report to the PPC) are kept on
// its own page, not through the API: a manager fills them in as they become
// known; bad input is answered on the page with the input kept and changes
// nothing; a stale form is refused; an auditor reads the same page.
func TestIncidentEditedOnItsPage(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "manabu", "manager")
	addUser(t, srv, "kansa", "auditor")
	m := newBrowser(t, srv)
	csrf := m.login("manabu", testPassword)
	jst := time.FixedZone("JST", 9*3600)
	disc := time.Now().In(jst).Add(-2 * time.Hour).Truncate(time.Minute)
	if a := m.post("/incidents", url.Values{"csrf": {csrf}, "title": {"顧客名簿の誤送信"}, "discovered_at": {disc.Format("2006-01-02T15:04")}}); a.status != http.StatusSeeOther {
		t.Fatalf("open: %d\n%.2000s", a.status, a.body)
	}
	var l struct{ Incidents []struct{ ID string } }
	apiDo(t, srv, "GET", "/api/v1/incidents", nil, &l)
	if len(l.Incidents) != 1 {
		t.Fatalf("%d incidents", len(l.Incidents))
	}
	id := l.Incidents[0].ID
	if list := m.get("/incidents"); !strings.Contains(list.body, `href="/incidents/`+id+`"`) {
		t.Fatalf("the list does not link the incident's page:\n%.3000s", list.body)
	}
	pg := m.get("/incidents/" + id)
	if pg.status != 200 || !strings.Contains(pg.body, `name="measures"`) || !strings.Contains(pg.body, "再発防止のための措置") {
		t.Fatalf("incident page: %d\n%.3000s", pg.status, pg.body)
	}
	rev := regexp.MustCompile(`name="revision" value="(\d+)"`).FindStringSubmatch(pg.body)
	if rev == nil {
		t.Fatal("no revision on the form")
	}
	form := func() url.Values {
		return url.Values{"csrf": {csrf}, "revision": {rev[1]}, "status": {"preliminary_reported"}, "title": {"顧客名簿の誤送信"},
			"discovered_at": {disc.Format("2006-01-02T15:04")}, "occurred_at": {disc.Add(-time.Hour).Format("2006-01-02T15:04")},
			"summary": {"顧客名簿を取引先に誤って送信"}, "data_items": {"氏名、住所、電話番号"}, "persons": {"120"},
			"sensitive": {"1"}, "cause": {"宛先の確認漏れ"}, "measures": {"送信先に削除を依頼し、削除を確認"},
			"recurrence": {"送信前の二重確認"}, "preliminary_reported_at": {disc.Add(time.Hour).Format("2006-01-02T15:04")}}
	}
	for name, c := range map[string]struct {
		set  map[string]string
		want string
	}{
		"occurred after discovered": {map[string]string{"occurred_at": disc.Add(time.Hour).Format("2006-01-02T15:04")}, "発生日時が発覚日時より後"},
		"a bad time":                {map[string]string{"final_reported_at": "来週"}, "2026-12-03T09:30 の形"},
		"persons not a number":      {map[string]string{"persons": "百人"}, "本人の数"},
		"no title":                  {map[string]string{"title": " "}, "件名を入力してください"},
		"no such register entry":    {map[string]string{"add_entries": "PI-999"}, "PI-999"},
		"closed before its 確報":      {map[string]string{"status": "closed"}, "速報と確報の報告日時を記録するまで「完了」にできません"},
	} {
		f := form()
		for k, v := range c.set {
			f.Set(k, v)
		}
		a := m.post("/incidents/"+id, f)
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, c.want) || !strings.Contains(a.body, "送信前の二重確認") {
			t.Errorf("%s: %d, want 400 naming %q with the input kept:\n%.2000s", name, a.status, c.want, a.body)
		}
	}
	var got struct {
		Status, Cause string
		Persons       int
	}
	apiDo(t, srv, "GET", "/api/v1/incidents/"+id, nil, &got)
	if got.Status != "open" || got.Cause != "" {
		t.Fatalf("a refused form changed the incident: %+v", got)
	}
	if a := m.post("/incidents/"+id, form()); a.status != http.StatusSeeOther {
		t.Fatalf("save: %d\n%.3000s", a.status, a.body)
	}
	apiDo(t, srv, "GET", "/api/v1/incidents/"+id, nil, &got)
	if got.Status != "preliminary_reported" || got.Cause != "宛先の確認漏れ" || got.Persons != 120 {
		t.Fatalf("saved: %+v", got)
	}
	// The page's history says who changed what from what to what.
	hist := regexp.MustCompile(`(?s)<table id="incident-history">.*?</table>\s*</div>`).FindString(m.get("/incidents/" + id).body)
	for _, want := range []string{"事故の更新", "事故の記録", "manabu", "発生原因", "宛先の確認漏れ", "本人の数", ">120<", "要配慮個人情報を含む", ">有<", ">無<"} {
		if !strings.Contains(hist, want) {
			t.Errorf("incident history lacks %q:\n%s", want, hist)
		}
	}
	if a := m.post("/incidents/"+id, form()); a.status != http.StatusConflict || !strings.Contains(a.body, "送信前の二重確認") {
		t.Errorf("a stale form: %d, want 409 with the input kept", a.status)
	}
	if n := len(serverEvents(t, srv, "incident.updated")); n != 1 {
		t.Errorf("%d incident.updated events, want 1", n)
	}
	m.get("/lang/en") // in English, the refusal is English
	f := form()
	f.Set("final_reported_at", "next week")
	if a := m.post("/incidents/"+id, f); a.status != http.StatusBadRequest || !strings.Contains(a.body, "as 2026-12-03T09:30") {
		t.Errorf("English refusal: %d\n%.2000s", a.status, a.body)
	}
	k := newBrowser(t, srv)
	kcsrf := k.login("kansa", testPassword)
	if pg := k.get("/incidents/" + id); pg.status != 200 || !strings.Contains(pg.body, "宛先の確認漏れ") || strings.Contains(pg.body, `name="measures"`) {
		t.Errorf("auditor's view: %d\n%.2000s", pg.status, pg.body)
	}
	f = form()
	f.Set("csrf", kcsrf)
	if a := k.post("/incidents/"+id, f); a.status != http.StatusForbidden {
		t.Errorf("auditor's edit: %d", a.status)
	}
}
