package web

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/text/width"

	"github.com/mamori/mamori/server/internal/notify"
	"github.com/mamori/mamori/shared/event"
)

// The 通知 page's forms for the office-wide working hours and days off
// (Settings.Hours) and the departments' recipients and own hours
// (Settings.Departments): the out_of_hours rules read the hours, rules
// with department recipients mail a department's recipients. Like the
// rule and channel forms, each save stores the whole settings at the
// form's revision and is a notify.settings_changed event; bad input is
// said beside its field and changes nothing.

// hoursEdit is the form of the office hours (Office) or of one
// department: what is stored, or what was sent back with its problems.
type hoursEdit struct {
	Office bool // the office-wide hours; otherwise a department
	// Original is the department's name before the edit; "" for a new one.
	Original, Name, Recipients string
	Own                        bool // the department has its own hours (else the office's)
	Start, End                 string
	Days                       [7]bool // 0 Sunday .. 6 Saturday
	WorkOnHolidays             bool
	DaysOff                    string // one per line
	Errs                       map[string]string
	Err                        string
}

// weekdayJA names the days 0 (Sunday) .. 6 as the forms do.
var weekdayJA = [7]string{"日", "月", "火", "水", "木", "金", "土"}

// dayOpt is one weekday checkbox.
type dayOpt struct {
	Value int
	Label string
	On    bool
}

// DayOpts are the weekday checkboxes, 日 to 土.
func (f hoursEdit) DayOpts() []dayOpt {
	out := make([]dayOpt, 7)
	for d := range out {
		out[d] = dayOpt{d, weekdayJA[d], f.Days[d]}
	}
	return out
}

// setHours fills f's hour fields from h.
func (f *hoursEdit) setHours(h notify.Hours) {
	f.Start, f.End, f.WorkOnHolidays = h.Start, h.End, h.WorkOnHolidays
	f.Days = [7]bool{}
	for _, d := range h.Days {
		if d >= 0 && d < 7 {
			f.Days[d] = true
		}
	}
	f.DaysOff = strings.Join(h.DaysOff, "\n")
}

// HoursEdits are the forms: the office hours, each department by name,
// then an empty one to add a department (its hours start as the
// office's, for when its own are ticked). A refused form (HoursSent)
// replaces the one it came from.
func (v *notifyView) HoursEdits() []hoursEdit {
	office := hoursEdit{Office: true}
	office.setHours(v.Settings.Hours)
	out := []hoursEdit{office}
	for _, name := range slices.Sorted(maps.Keys(v.Settings.Departments)) {
		d := v.Settings.Departments[name]
		f := hoursEdit{Original: name, Name: name, Recipients: list(d.Recipients), Own: d.Hours != nil}
		f.setHours(v.Settings.Hours)
		if d.Hours != nil {
			f.setHours(*d.Hours)
		}
		out = append(out, f)
	}
	add := hoursEdit{}
	add.setHours(v.Settings.Hours)
	out = append(out, add)
	if s := v.HoursSent; s != nil {
		at := slices.IndexFunc(out, func(f hoursEdit) bool { return f.Office == s.Office && f.Original == s.Original })
		if at < 0 {
			return append(out, *s)
		}
		out[at] = *s
	}
	return out
}

// hoursRow is one line of the table of current hours.
type hoursRow struct {
	Name, Recipients              string // Name "" for the office
	Same                          bool   // a department on the office's hours
	Unknown                       bool   // no PC and no register entry has the department
	Time, Days, Holidays, DaysOff string
}

// HoursRows describe the stored hours and departments readably.
func (v *notifyView) HoursRows() []hoursRow {
	out := []hoursRow{describeHours(v.Settings.Hours)}
	for _, name := range slices.Sorted(maps.Keys(v.Settings.Departments)) {
		d := v.Settings.Departments[name]
		row := hoursRow{Same: true}
		if d.Hours != nil {
			row = describeHours(*d.Hours)
		}
		row.Name, row.Recipients = name, list(d.Recipients)
		row.Unknown = !slices.Contains(v.Departments, name)
		out = append(out, row)
	}
	return out
}

func describeHours(h notify.Hours) hoursRow {
	r := hoursRow{Time: h.Start + "〜" + h.End, Days: daysJA(h.Days), Holidays: "休み", DaysOff: "なし"}
	if h.WorkOnHolidays {
		r.Holidays = "勤務"
	}
	if len(h.DaysOff) > 0 {
		r.DaysOff = strings.Join(h.DaysOff, ", ")
	}
	return r
}

// daysJA writes weekdays as people read them, Monday first: 月〜金,
// 月・水・金, 月〜土・日 is 毎日.
func daysJA(days []int) string {
	var on [7]bool
	for _, d := range days {
		if d >= 0 && d < 7 {
			on[d] = true
		}
	}
	order := []int{1, 2, 3, 4, 5, 6, 0}
	var parts []string
	for i := 0; i < len(order); {
		if !on[order[i]] {
			i++
			continue
		}
		j := i
		for j+1 < len(order) && on[order[j+1]] {
			j++
		}
		switch {
		case j-i >= 2:
			parts = append(parts, weekdayJA[order[i]]+"〜"+weekdayJA[order[j]])
		default:
			for k := i; k <= j; k++ {
				parts = append(parts, weekdayJA[order[k]])
			}
		}
		i = j + 1
	}
	switch {
	case len(parts) == 0:
		return "なし"
	case len(parts) == 1 && parts[0] == "月〜日":
		return "毎日"
	}
	return strings.Join(parts, "・")
}

// hoursFromForm reads the hour fields of a posted form into f.
func hoursFromForm(r *http.Request, f *hoursEdit) (bad []string) {
	f.Start = strings.TrimSpace(width.Fold.String(r.PostFormValue("start")))
	f.End = strings.TrimSpace(width.Fold.String(r.PostFormValue("end")))
	f.WorkOnHolidays = r.PostFormValue("work_on_holidays") != ""
	f.DaysOff = r.PostFormValue("days_off")
	for _, s := range r.PostForm["days"] {
		d, err := strconv.Atoi(s)
		if err != nil || d < 0 || d > 6 {
			bad = append(bad, s)
			continue
		}
		f.Days[d] = true
	}
	return bad
}

// validHours says whether notify's own validation takes h as the
// office hours (Settings.Validate after Defaults).
func validHours(h notify.Hours) bool {
	s := notify.Settings{Hours: h}
	s.Defaults()
	return s.Validate() == nil
}

// parseHours checks the hour fields of f, each through notify's
// validation with the other fields fine, so that each problem is said
// beside its own field in Japanese; it returns the hours to store.
func parseHours(f *hoursEdit, badDays []string) notify.Hours {
	h := notify.Hours{Start: f.Start, End: f.End, WorkOnHolidays: f.WorkOnHolidays}
	for d, on := range f.Days {
		if on {
			h.Days = append(h.Days, d)
		}
	}
	oneDay := []int{1}
	if !validHours(notify.Hours{Start: h.Start, End: "24:00", Days: oneDay}) {
		f.Errs["start"] = "開始時刻を「09:00」のように HH:MM (00:00〜23:59) で入力してください。"
	}
	if !validHours(notify.Hours{Start: "00:00", End: h.End, Days: oneDay}) {
		f.Errs["end"] = "終了時刻を「18:00」のように HH:MM (00:01〜24:00) で入力してください。"
	}
	if f.Errs["start"] == "" && f.Errs["end"] == "" && !validHours(notify.Hours{Start: h.Start, End: h.End, Days: oneDay}) {
		f.Errs["end"] = "終了時刻は開始時刻より後にしてください (日をまたぐ勤務時間は設定できません。例: 09:00〜18:00)。"
	}
	switch {
	case len(badDays) > 0:
		f.Errs["days"] = "曜日を一覧から選んでください。"
	case len(h.Days) == 0:
		f.Errs["days"] = "勤務する曜日を 1 つ以上選んでください。"
	}
	var wrong []string
	for _, d := range split(width.Fold.String(f.DaysOff)) {
		if slices.Contains(h.DaysOff, d) {
			continue
		}
		if !validHours(notify.Hours{Start: "00:00", End: "24:00", Days: oneDay, DaysOff: []string{d}}) {
			wrong = append(wrong, "「"+d+"」")
			continue
		}
		h.DaysOff = append(h.DaysOff, d)
	}
	switch {
	case len(wrong) > 0:
		f.Errs["days_off"] = "日付ではありません: " + strings.Join(wrong, "") + "。毎年なら「12-29」、その年だけなら「2027-05-06」のように入力してください。"
	case !validHours(notify.Hours{Start: "00:00", End: "24:00", Days: oneDay, DaysOff: h.DaysOff}):
		f.Errs["days_off"] = "休日は 366 日までです。"
	}
	if len(f.Errs) == 0 {
		h.Start, h.End = padClock(h.Start), padClock(h.End)
		if !validHours(h) { // not expected: every field passed on its own
			f.Err = "勤務時間の設定が正しくありません。"
		}
	}
	return h
}

// padClock writes a valid "9:00" as "09:00".
func padClock(s string) string {
	var hh, mm int
	if n, err := fmt.Sscanf(s, "%d:%d", &hh, &mm); err != nil || n != 2 {
		return s
	}
	return fmt.Sprintf("%02d:%02d", hh, mm)
}

// hoursJA is the hours in one line for the record.
func hoursJA(h notify.Hours) string {
	r := describeHours(h)
	return r.Time + " " + r.Days + " 祝日: " + r.Holidays
}

// handleHoursForm saves the office-wide working hours and days off.
func (u *UI) handleHoursForm(w http.ResponseWriter, r *http.Request) {
	set, _, err := u.cfg.Alerting.Notifier.Settings(r.Context())
	if err != nil {
		u.internal(w, r, "notification settings", err)
		return
	}
	rev, ok := revisionOf(r)
	f := hoursEdit{Office: true, Errs: map[string]string{}}
	badDays := hoursFromForm(r, &f)
	put := func(status int) { u.refuse(w, r, status, func(v *notifyView) { v.HoursSent = &f }) }
	if !ok {
		f.Err = "フォームが古くなっています。ページを再読み込みしてください。"
		put(http.StatusBadRequest)
		return
	}
	h := parseHours(&f, badDays)
	if len(f.Errs) > 0 || f.Err != "" {
		put(http.StatusBadRequest)
		return
	}
	set.Hours = h
	attrs := event.Attrs{"change": "hours.saved", "hours": hoursJA(h), "days_off": strings.Join(h.DaysOff, ", ")}
	if msg, status := u.store(r, set, rev, "notifications/hours", attrs); msg != "" {
		f.Err = msg
		put(status)
		return
	}
	back(w, r, "/notifications", "saved")
}

// handleDepartmentForm saves (or, with action=delete, removes) one
// department's recipients and hours; a rename moves its entry.
func (u *UI) handleDepartmentForm(w http.ResponseWriter, r *http.Request) {
	set, _, err := u.cfg.Alerting.Notifier.Settings(r.Context())
	if err != nil {
		u.internal(w, r, "notification settings", err)
		return
	}
	rev, ok := revisionOf(r)
	f := hoursEdit{Original: r.PostFormValue("original"), Name: strings.TrimSpace(r.PostFormValue("name")),
		Recipients: r.PostFormValue("recipients"), Own: r.PostFormValue("own_hours") != "", Errs: map[string]string{}}
	badDays := hoursFromForm(r, &f)
	put := func(status int) { u.refuse(w, r, status, func(v *notifyView) { v.HoursSent = &f }) }
	if !ok {
		f.Err = "フォームが古くなっています。ページを再読み込みしてください。"
		put(http.StatusBadRequest)
		return
	}
	_, exists := set.Departments[f.Original]
	if f.Original != "" && !exists {
		f.Err = "この部署の設定はもうありません。ページを再読み込みしてください。"
		put(http.StatusConflict)
		return
	}
	deps := maps.Clone(set.Departments)
	if deps == nil {
		deps = map[string]notify.Department{}
	}
	attrs := event.Attrs{"department": f.Original}
	if r.PostFormValue("action") == "delete" {
		if f.Original == "" {
			f.Err = "削除する部署がありません。"
			put(http.StatusBadRequest)
			return
		}
		delete(deps, f.Original)
		attrs["change"] = "department.deleted"
	} else {
		dep, bad := parseDepartment(&f, deps, badDays)
		if bad {
			put(http.StatusBadRequest)
			return
		}
		delete(deps, f.Original)
		deps[f.Name] = dep
		attrs["change"], attrs["department"], attrs["recipients"] = "department.saved", f.Name, len(dep.Recipients)
		attrs["hours"] = "全社と同じ"
		if dep.Hours != nil {
			attrs["hours"], attrs["days_off"] = hoursJA(*dep.Hours), strings.Join(dep.Hours.DaysOff, ", ")
		}
		if f.Original != "" && f.Original != f.Name {
			attrs["renamed_from"] = f.Original
		}
	}
	set.Departments = deps
	if msg, status := u.store(r, set, rev, "notifications/department/"+fmt.Sprint(attrs["department"]), attrs); msg != "" {
		f.Err = msg
		put(status)
		return
	}
	back(w, r, "/notifications", "saved")
}

// validDepartment says whether notify's validation takes d under name.
func validDepartment(name string, d notify.Department) bool {
	s := notify.Settings{Departments: map[string]notify.Department{name: d}}
	s.Defaults()
	return s.Validate() == nil
}

// parseDepartment checks the department form field by field (messages
// in Japanese beside each field); bad says f.Errs holds problems.
func parseDepartment(f *hoursEdit, deps map[string]notify.Department, badDays []string) (notify.Department, bool) {
	dep := notify.Department{Recipients: split(f.Recipients)}
	_, taken := deps[f.Name]
	switch {
	case f.Name == "" || !validDepartment(f.Name, notify.Department{}):
		f.Errs["name"] = "部署名を入力してください (128 バイト以内)。"
	case taken && f.Name != f.Original:
		f.Errs["name"] = "同じ名前の部署があります。"
	}
	for _, a := range dep.Recipients {
		if !validDepartment("x", notify.Department{Recipients: []string{a}}) {
			f.Errs["recipients"] = "メールアドレスではありません: " + a
			break
		}
	}
	if _, ok := f.Errs["recipients"]; !ok {
		switch {
		case !validDepartment("x", notify.Department{Recipients: dep.Recipients}):
			f.Errs["recipients"] = "宛先は 100 件までです。"
		case len(dep.Recipients) == 0 && !f.Own:
			f.Errs["recipients"] = "宛先を入力するか、部署独自の勤務時間を設定してください。"
		}
	}
	if f.Own {
		h := parseHours(f, badDays)
		dep.Hours = &h
	}
	return dep, len(f.Errs) > 0 || f.Err != ""
}
