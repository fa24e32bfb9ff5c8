package web_test

import (
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mamori/mamori/server/internal/app"
)

type hoursJSON struct {
	Start          string   `json:"start"`
	End            string   `json:"end"`
	Days           []int    `json:"days"`
	WorkOnHolidays bool     `json:"work_on_holidays"`
	DaysOff        []string `json:"days_off"`
}

type hoursSettings struct {
	Hours       hoursJSON `json:"hours"`
	Departments map[string]struct {
		Recipients []string   `json:"recipients"`
		Hours      *hoursJSON `json:"hours"`
	} `json:"departments"`
}

func getHours(t *testing.T, srv *app.Server) hoursSettings {
	t.Helper()
	var s hoursSettings
	if st := apiDo(t, srv, "GET", "/api/v1/notifications", nil, &s); st != 200 {
		t.Fatalf("GET /api/v1/notifications: %d", st)
	}
	return s
}

// rawNotify is the whole settings document, to see that nothing changed.
func rawNotify(t *testing.T, srv *app.Server) map[string]any {
	t.Helper()
	var m map[string]any
	if st := apiDo(t, srv, "GET", "/api/v1/notifications", nil, &m); st != 200 {
		t.Fatalf("GET /api/v1/notifications: %d", st)
	}
	return m
}

// Admins edit the office's working hours and days off and the
// departments' recipients and own hours on 通知: bad input is said beside
// its field in Japanese with the input kept and changes nothing; a save is
// read back through the notification settings and recorded; a stale form
// and a manager are refused; a department is renamed and deleted.
func TestNotificationHoursAndDepartmentForms(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "manabu", "manager")
	admin := newBrowser(t, srv)
	csrf := admin.login("admin", srv.AdminPassword())

	pg := admin.get("/notifications")
	for _, want := range []string{"勤務時間と休日", "部署を追加", `action="/notifications/hours"`, `action="/notifications/departments"`,
		"<td>09:00〜18:00</td><td>月〜金</td><td>休み</td><td>なし</td>"} {
		if !strings.Contains(pg.body, want) {
			t.Fatalf("the page lacks %q:\n%.3000s", want, pg.body[strings.Index(pg.body, `id="hours"`):])
		}
	}
	rev := func() string { return pageRevision(t, admin.get("/notifications").body) }
	hoursForm := func(start, end string, days []string, holidays bool, daysOff string) url.Values {
		f := url.Values{"csrf": {csrf}, "revision": {rev()}, "start": {start}, "end": {end}, "days": days,
			"days_off": {daysOff}, "action": {"save"}}
		if holidays {
			f.Set("work_on_holidays", "1")
		}
		return f
	}
	// refused posts f and wants status, each of wants in the answer, and
	// the settings, their revision and the record unchanged.
	refused := func(t *testing.T, path string, f url.Values, status int, wants ...string) {
		t.Helper()
		before, beforeRev := rawNotify(t, srv), rev()
		nEvents := len(serverEvents(t, srv, "notify.settings_changed"))
		a := admin.post(path, f)
		if a.status != status {
			t.Fatalf("POST %s: %d, want %d\n%.2000s", path, a.status, status, a.body)
		}
		for _, want := range wants {
			if !strings.Contains(a.body, want) {
				t.Errorf("answer lacks %q", want)
			}
		}
		if !strings.Contains(a.body, `class="ferr"`) {
			t.Error("no problem said on the page")
		}
		if after := rawNotify(t, srv); !reflect.DeepEqual(before, after) || rev() != beforeRev {
			t.Errorf("refused input changed the settings:\n%v\n%v", before, after)
		}
		if n := len(serverEvents(t, srv, "notify.settings_changed")); n != nEvents {
			t.Errorf("refused input recorded a change: %d events, was %d", n, nEvents)
		}
	}
	week := []string{"1", "2", "3", "4", "5"}

	t.Run("bad hours are said beside their fields and change nothing", func(t *testing.T) {
		refused(t, "/notifications/hours", hoursForm("18:00", "09:00", week, false, ""), http.StatusBadRequest,
			"終了時刻は開始時刻より後にしてください", `name="start" value="18:00"`, `name="end" value="09:00"`)
		refused(t, "/notifications/hours", hoursForm("09:00", "09:00", week, false, ""), http.StatusBadRequest,
			"終了時刻は開始時刻より後にしてください")
		refused(t, "/notifications/hours", hoursForm("9時", "25:00", week, false, ""), http.StatusBadRequest,
			"開始時刻を「09:00」のように HH:MM", "終了時刻を「18:00」のように HH:MM", `value="9時"`, `value="25:00"`)
		refused(t, "/notifications/hours", hoursForm("09:00", "18:00", nil, true, "12-29"), http.StatusBadRequest,
			"勤務する曜日を 1 つ以上選んでください", `name="work_on_holidays" value="1" checked`)
		refused(t, "/notifications/hours", hoursForm("09:00", "18:00", week, false, "12-29\n13-45, 2027-02-30\n12/31"), http.StatusBadRequest,
			"日付ではありません: 「13-45」「2027-02-30」「12/31」", ">12-29\n13-45, 2027-02-30\n12/31</textarea>",
			`name="days" value="3" checked`)
	})

	t.Run("good hours are stored, shown and recorded", func(t *testing.T) {
		f := hoursForm("８:30", "17:30", []string{"1", "2", "3", "4", "5", "6"}, true, "12-29, 12-30\n01-03、2027-01-04\n12-29")
		if a := admin.post("/notifications/hours", f); a.status != http.StatusSeeOther {
			t.Fatalf("save hours: %d\n%.3000s", a.status, a.body)
		}
		want := hoursJSON{Start: "08:30", End: "17:30", Days: []int{1, 2, 3, 4, 5, 6}, WorkOnHolidays: true,
			DaysOff: []string{"12-29", "12-30", "01-03", "2027-01-04"}}
		if got := getHours(t, srv).Hours; !reflect.DeepEqual(got, want) {
			t.Fatalf("hours read back: %+v, want %+v", got, want)
		}
		if s := getNotify(t, srv); s.AreDefaults {
			t.Error("the settings are still the defaults")
		}
		evs := serverEvents(t, srv, "notify.settings_changed")
		if len(evs) != 1 {
			t.Fatalf("%d settings events, want 1", len(evs))
		}
		e := evs[0]
		if e.Object != "notifications/hours" || e.User != "admin" || e.Attrs["via"] != "web" || e.Attrs["change"] != "hours.saved" ||
			e.Attrs["hours"] != "08:30〜17:30 月〜土 祝日: 勤務" || e.Attrs["days_off"] != "12-29, 12-30, 01-03, 2027-01-04" {
			t.Errorf("settings event: %+v", e)
		}
		pg := admin.get("/notifications")
		for _, w := range []string{"<td>08:30〜17:30</td><td>月〜土</td><td>勤務</td><td>12-29, 12-30, 01-03, 2027-01-04</td>",
			">12-29\n12-30\n01-03\n2027-01-04</textarea>", `name="start" value="08:30"`} {
			if !strings.Contains(pg.body, w) {
				t.Errorf("the page lacks %q", w)
			}
		}
	})

	t.Run("a stale form is refused", func(t *testing.T) {
		f := hoursForm("10:00", "19:00", week, false, "")
		f.Set("revision", "0") // the page before the save above
		refused(t, "/notifications/hours", f, http.StatusConflict, "他の人が通知の設定を変更しました", `value="10:00"`)
		d := url.Values{"csrf": {csrf}, "revision": {"0"}, "name": {"営業部"}, "recipients": {"eigyo@example.jp"}, "action": {"save"}}
		refused(t, "/notifications/departments", d, http.StatusConflict, "他の人が通知の設定を変更しました", `value="営業部"`)
	})

	dept := func(original, name, recipients string, own bool, start, end string, days []string) url.Values {
		f := url.Values{"csrf": {csrf}, "revision": {rev()}, "original": {original}, "name": {name}, "recipients": {recipients},
			"start": {start}, "end": {end}, "days": days, "action": {"save"}}
		if own {
			f.Set("own_hours", "1")
		}
		return f
	}

	t.Run("departments: add, refuse bad input, rename, delete", func(t *testing.T) {
		if a := admin.post("/notifications/departments", dept("", "営業部", "eigyo@example.jp、 eigyo-kanri@example.jp", false, "x", "y", nil)); a.status != http.StatusSeeOther {
			t.Fatalf("add a department: %d\n%.3000s", a.status, a.body)
		}
		d, ok := getHours(t, srv).Departments["営業部"]
		if !ok || d.Hours != nil || !slices.Equal(d.Recipients, []string{"eigyo@example.jp", "eigyo-kanri@example.jp"}) {
			t.Fatalf("department read back: %v %+v", ok, d)
		}
		if pg := admin.get("/notifications"); !strings.Contains(pg.body, "</td><td>eigyo@example.jp, eigyo-kanri@example.jp</td><td colspan=\"4\">全社と同じ</td>") ||
			!strings.Contains(pg.body, "<td>営業部 <span class=\"muted\">(この部署の PC も台帳の項目もありません)</span>") {
			t.Error("the table does not say the department keeps the office hours")
		}
		if a := admin.post("/notifications/departments", dept("", "総務部", "soumu@example.jp", true, "08:00", "17:00", []string{"1", "2", "3", "4", "5"})); a.status != http.StatusSeeOther {
			t.Fatalf("add a second department: %d\n%.3000s", a.status, a.body)
		}

		refused(t, "/notifications/departments", dept("", "開発部", "dev@example.jp, kaihatsu", false, "", "", nil), http.StatusBadRequest,
			"メールアドレスではありません: kaihatsu", `value="dev@example.jp, kaihatsu"`, `value="開発部"`)
		refused(t, "/notifications/departments", dept("", "  ", "dev@example.jp", false, "", "", nil), http.StatusBadRequest,
			"部署名を入力してください")
		refused(t, "/notifications/departments", dept("", "営業部", "other@example.jp", false, "", "", nil), http.StatusBadRequest,
			"同じ名前の部署があります", `value="other@example.jp"`)
		refused(t, "/notifications/departments", dept("営業部", "総務部", "eigyo@example.jp", false, "", "", nil), http.StatusBadRequest,
			"同じ名前の部署があります")
		refused(t, "/notifications/departments", dept("営業部", "営業部", "eigyo@example.jp", true, "10:00", "09:30", week), http.StatusBadRequest,
			"終了時刻は開始時刻より後にしてください", `name="own_hours" value="1" checked`, `value="09:30"`)
		refused(t, "/notifications/departments", dept("営業部", "営業部", "eigyo@example.jp", true, "10:00", "19:00", nil), http.StatusBadRequest,
			"勤務する曜日を 1 つ以上選んでください")
		f := dept("営業部", "営業部", "eigyo@example.jp", true, "10:00", "19:00", week)
		f.Set("days_off", "08-32")
		refused(t, "/notifications/departments", f, http.StatusBadRequest, "日付ではありません: 「08-32」")
		refused(t, "/notifications/departments", dept("もうない部", "もうない部", "x@example.jp", false, "", "", nil), http.StatusConflict,
			"この部署の設定はもうありません")

		// Rename 営業部 to 営業一部 with its own hours: the entry moves.
		f = dept("営業部", "営業一部", "eigyo@example.jp", true, "10:00", "19:00", []string{"1", "2", "3", "4", "5", "6"})
		f.Set("days_off", "2027-08-14")
		if a := admin.post("/notifications/departments", f); a.status != http.StatusSeeOther {
			t.Fatalf("rename: %d\n%.3000s", a.status, a.body)
		}
		s := getHours(t, srv)
		if _, old := s.Departments["営業部"]; old || len(s.Departments) != 2 {
			t.Fatalf("departments after the rename: %+v", s.Departments)
		}
		want := &hoursJSON{Start: "10:00", End: "19:00", Days: []int{1, 2, 3, 4, 5, 6}, DaysOff: []string{"2027-08-14"}}
		if d := s.Departments["営業一部"]; !reflect.DeepEqual(d.Hours, want) || !slices.Equal(d.Recipients, []string{"eigyo@example.jp"}) {
			t.Fatalf("renamed department: %+v %+v", d.Recipients, d.Hours)
		}
		if s.Hours.Start != "08:30" {
			t.Errorf("a department's save changed the office hours: %+v", s.Hours)
		}
		evs := serverEvents(t, srv, "notify.settings_changed")
		last := evs[len(evs)-1]
		if last.Object != "notifications/department/営業一部" || last.Attrs["change"] != "department.saved" ||
			last.Attrs["renamed_from"] != "営業部" || last.Attrs["hours"] != "10:00〜19:00 月〜土 祝日: 休み" {
			t.Errorf("rename event: %+v", last)
		}
		pg := admin.get("/notifications")
		if !strings.Contains(pg.body, "部署: 営業一部") || strings.Contains(pg.body, "部署: 営業部<") ||
			!strings.Contains(pg.body, "<td>10:00〜19:00</td><td>月〜土</td><td>休み</td><td>2027-08-14</td>") {
			t.Error("the page does not show the renamed department")
		}

		// Turning the own hours off goes back to the office's.
		if a := admin.post("/notifications/departments", dept("総務部", "総務部", "soumu@example.jp", false, "08:00", "17:00", week)); a.status != http.StatusSeeOther {
			t.Fatalf("own hours off: %d", a.status)
		}
		if d := getHours(t, srv).Departments["総務部"]; d.Hours != nil {
			t.Errorf("own hours kept: %+v", d.Hours)
		}

		// Delete.
		n := len(serverEvents(t, srv, "notify.settings_changed"))
		del := url.Values{"csrf": {csrf}, "revision": {rev()}, "original": {"総務部"}, "name": {"総務部"}, "action": {"delete"}}
		if a := admin.post("/notifications/departments", del); a.status != http.StatusSeeOther {
			t.Fatalf("delete: %d\n%.2000s", a.status, a.body)
		}
		s = getHours(t, srv)
		if _, ok := s.Departments["総務部"]; ok || len(s.Departments) != 1 {
			t.Fatalf("departments after the delete: %+v", s.Departments)
		}
		evs = serverEvents(t, srv, "notify.settings_changed")
		if len(evs) != n+1 || evs[n].Attrs["change"] != "department.deleted" || evs[n].Object != "notifications/department/総務部" {
			t.Errorf("delete event: %+v", evs[n:])
		}
		if pg := admin.get("/notifications"); strings.Contains(pg.body, "部署: 総務部") {
			t.Error("the deleted department is still on the page")
		}
	})

	t.Run("managers cannot change them", func(t *testing.T) {
		b := newBrowser(t, srv)
		tok := b.login("manabu", testPassword)
		before := rawNotify(t, srv)
		if pg := b.get("/notifications"); strings.Contains(pg.body, `action="/notifications/hours"`) || strings.Contains(pg.body, `action="/notifications/departments"`) {
			t.Error("a manager sees the forms")
		}
		for _, p := range []string{"/notifications/hours", "/notifications/departments"} {
			a := b.post(p, url.Values{"csrf": {tok}, "revision": {rev()}, "name": {"経理部"}, "recipients": {"keiri@example.jp"},
				"start": {"07:00"}, "end": {"16:00"}, "days": {"1"}, "action": {"save"}})
			if a.status != http.StatusForbidden {
				t.Errorf("manager POST %s: %d", p, a.status)
			}
		}
		if after := rawNotify(t, srv); !reflect.DeepEqual(before, after) {
			t.Error("a manager changed the settings")
		}
	})
}
