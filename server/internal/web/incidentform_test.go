package web_test

import (
	"net/http"
	"net/url"
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
