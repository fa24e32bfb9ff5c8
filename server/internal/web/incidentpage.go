package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/width"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/incident"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

// An incident's own page: what the report to the Personal Information
// Protection Commission asks for (規則 様式第1), filled in by a manager as
// it becomes known, and read by everyone. The incident service validates
// and records each change (incident.updated).

// incidentView is the page: the stored incident and the form's values
// (the stored ones, or what was posted when it was refused).
type incidentView struct {
	In      incident.Incident
	Form    map[string]string
	Checks  map[string]bool
	Err     string
	Status  []string
	Details []detailRow // what an auditor reads instead of the form
	History []incidentChange
}

// incidentChange is one event of an incident's history: who changed which
// fields from what to what.
type incidentChange struct {
	Index  int64
	At     time.Time
	By     string
	Type   string
	Fields []detailChange
}

type detailChange struct{ Label, Before, After string }

type detailRow struct{ Label, Value string }

// incidentLabels names the fields in Japanese and English, in the order
// the read-only view shows them.
var incidentLabels = []struct{ key, ja, en string }{
	{"title", "件名", "Title"}, {"discovered_at", "発覚日時", "Discovered"}, {"occurred_at", "発生日時", "Occurred"},
	{"summary", "概要", "Summary"}, {"data_items", "漏えい等した個人データの項目", "Data items"},
	{"sensitive", "要配慮個人情報を含む", "Sensitive personal information"}, {"my_number", "特定個人情報 (マイナンバー) を含む", "My Number"},
	{"property_damage", "財産的被害が生じるおそれ", "Risk of financial damage"}, {"intent", "不正の目的によるおそれ", "Possibly unlawful intent"},
	{"encrypted_key_safe", "高度な暗号化等の措置", "Strongly encrypted, key safe"},
	{"cause", "発生原因", "Cause"}, {"secondary_damage", "二次被害又はそのおそれ", "Secondary damage"},
	{"measures", "講じた措置", "Measures taken"}, {"people_informed", "本人への対応等", "Persons informed"},
	{"publication", "公表の実施状況", "Publication"}, {"recurrence", "再発防止のための措置", "Recurrence prevention"},
	{"notes", "その他参考となる事項", "Other notes"},
	{"preliminary_reported_at", "速報の報告日時", "Preliminary report made"}, {"final_reported_at", "確報の報告日時", "Final report made"},
}

// incidentTexts are the form's free-text fields, in the report's order.
var incidentTexts = []string{"summary", "data_items", "cause", "secondary_damage", "measures", "people_informed",
	"publication", "recurrence", "notes"}

// incidentFlags are its yes/no fields.
var incidentFlags = []string{"sensitive", "my_number", "property_damage", "intent", "encrypted_key_safe"}

const formTime = "2006-01-02T15:04" // datetime-local, in the server's zone

func (u *UI) handleIncident(w http.ResponseWriter, r *http.Request) {
	in, err := u.cfg.Alerting.Incidents.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		u.incidentFail(w, r, err)
		return
	}
	u.incidentPage(w, r, http.StatusOK, in, u.incidentValues(in), "")
}

// incidentHistory reads an incident's events from the server stream, newest
// first, with each update's changed fields in the page's words.
func (u *UI) incidentHistory(ctx context.Context, id, lang string) ([]incidentChange, error) {
	f := api.Filter{Agent: event.ServerStream, Control: incident.Control, ObjectPrefix: id, Limit: 1000}
	var out []incidentChange
	for {
		pg, err := u.cfg.Events.Query(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, e := range pg.Events {
			if e.Object != id {
				continue
			}
			c := incidentChange{Index: e.Index, At: e.Time, By: e.User, Type: e.Type}
			before, _ := e.Attrs["before"].(map[string]any)
			after, _ := e.Attrs["after"].(map[string]any)
			names, _ := e.Attrs["changed"].([]any)
			for _, n := range names {
				k := fmt.Sprint(n)
				c.Fields = append(c.Fields, detailChange{Label: incidentFieldLabel(k, lang),
					Before: incidentHistoryValue(k, before[k], lang, u.cfg.Location), After: incidentHistoryValue(k, after[k], lang, u.cfg.Location)})
			}
			out = append(out, c)
		}
		if pg.Next == "" {
			break
		}
		f.Cursor = pg.Next
	}
	slices.Reverse(out)
	return out, nil
}

// incidentFieldLabel names an incident's field in lang; the key where the
// form has no label for it.
func incidentFieldLabel(k, lang string) string {
	extra := map[string][2]string{"status": {"状態", "Status"}, "persons": {"本人の数", "Persons"},
		"persons_edited": {"本人の数 (手入力)", "Persons set by hand"}, "affected": {"関係する台帳", "Register entries"},
		"events": {"関係するイベント", "Events"}, "hosts": {"関係する PC", "PCs"}}
	for _, l := range incidentLabels {
		if l.key == k {
			if lang == "en" {
				return l.en
			}
			return l.ja
		}
	}
	if l, ok := extra[k]; ok {
		if lang == "en" {
			return l[1]
		}
		return l[0]
	}
	return k
}

// incidentHistoryValue shows a value of an incident's history: a status by
// its label, yes/no in words, a time in the office's zone, a list joined.
func incidentHistoryValue(k string, v any, lang string, loc *time.Location) string {
	switch x := v.(type) {
	case nil:
		if slices.Contains(incidentFlags, k) || k == "persons_edited" {
			return yesNo(lang, false)
		}
		return ""
	case bool:
		return yesNo(lang, x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ", ")
	case string:
		if k == "status" {
			return labels.Of(labels.Status, lang, x)
		}
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return t.In(loc).Format("2006-01-02 15:04")
		}
		return x
	}
	return fmt.Sprint(v)
}

func (u *UI) incidentFail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, incident.ErrNotFound) {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	u.internal(w, r, "incident", err)
}

func (u *UI) incidentPage(w http.ResponseWriter, r *http.Request, status int, in incident.Incident, form map[string]string, msg string) {
	p := u.titled(r, "incidents", "事故・漏えい等 "+in.ID, "Incident "+in.ID)
	checks := map[string]bool{}
	for _, f := range incidentFlags {
		checks[f] = form[f] == "1"
	}
	v := incidentView{In: in, Form: form, Checks: checks, Err: msg,
		Status: []string{incident.StatusOpen, incident.StatusPreliminary, incident.StatusFinal, incident.StatusClosed}}
	for _, l := range incidentLabels {
		d := detailRow{Label: l.ja, Value: form[l.key]}
		if p.Lang == "en" {
			d.Label = l.en
		}
		switch {
		case slices.Contains(incidentFlags, l.key):
			d.Value = yesNo(p.Lang, checks[l.key])
		case strings.HasSuffix(l.key, "_at"):
			d.Value = strings.Replace(d.Value, "T", " ", 1)
		}
		v.Details = append(v.Details, d)
	}
	hist, err := u.incidentHistory(r.Context(), in.ID, p.Lang)
	if err != nil {
		u.internal(w, r, "incident history", err)
		return
	}
	v.History = hist
	p.Data = v
	u.render(w, r, status, "incident", p)
}

// incidentValues is a stored incident as form values.
func (u *UI) incidentValues(in incident.Incident) map[string]string {
	t := func(p *time.Time) string {
		if p == nil || p.IsZero() {
			return ""
		}
		return p.In(u.cfg.Location).Format(formTime)
	}
	v := map[string]string{"revision": strconv.FormatInt(in.Revision, 10), "status": in.Status, "title": in.Title,
		"discovered_at": t(&in.DiscoveredAt), "occurred_at": t(in.OccurredAt),
		"summary": in.Summary, "data_items": in.DataItems, "cause": in.Cause, "secondary_damage": in.SecondaryDamage,
		"measures": in.Measures, "people_informed": in.PeopleInformed, "publication": in.Publication,
		"recurrence": in.Recurrence, "notes": in.Notes,
		"preliminary_reported_at": t(in.PreliminaryReportedAt), "final_reported_at": t(in.FinalReportedAt)}
	if in.PersonsEdited {
		v["persons"] = strconv.Itoa(in.Persons)
	}
	for f, b := range map[string]bool{"sensitive": in.Sensitive, "my_number": in.MyNumber, "property_damage": in.PropertyDamage,
		"intent": in.Intent, "encrypted_key_safe": in.EncryptedKeySafe} {
		if b {
			v[f] = "1"
		}
	}
	return v
}

// handleIncidentSave applies the incident form; what is refused is said on
// the page with the input kept, and nothing changes.
func (u *UI) handleIncidentSave(w http.ResponseWriter, r *http.Request) {
	svc := u.cfg.Alerting.Incidents
	in, err := svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		u.incidentFail(w, r, err)
		return
	}
	form := map[string]string{}
	for _, k := range append(append([]string{"revision", "status", "title", "discovered_at", "occurred_at", "persons",
		"preliminary_reported_at", "final_reported_at", "add_entries"}, incidentTexts...), incidentFlags...) {
		form[k] = r.PostFormValue(k)
	}
	en := langOf(r) == "en"
	refuse := func(status int, ja, enMsg string) {
		if en {
			ja = enMsg
		}
		u.incidentPage(w, r, status, in, form, ja)
	}
	up := incident.Update{Status: form["status"], Title: form["title"], Summary: form["summary"], DataItems: form["data_items"],
		Cause: form["cause"], SecondaryDamage: form["secondary_damage"], Measures: form["measures"],
		PeopleInformed: form["people_informed"], Publication: form["publication"], Recurrence: form["recurrence"], Notes: form["notes"],
		Sensitive: form["sensitive"] == "1", MyNumber: form["my_number"] == "1", PropertyDamage: form["property_damage"] == "1",
		Intent: form["intent"] == "1", EncryptedKeySafe: form["encrypted_key_safe"] == "1"}
	if up.Revision, err = strconv.ParseInt(form["revision"], 10, 64); err != nil {
		refuse(http.StatusBadRequest, "フォームが古いか壊れています。開き直してください。", "The form is stale or damaged: open it again.")
		return
	}
	times := map[string]**time.Time{"occurred_at": &up.OccurredAt, "preliminary_reported_at": &up.PreliminaryReportedAt,
		"final_reported_at": &up.FinalReportedAt}
	for _, k := range []string{"discovered_at", "occurred_at", "preliminary_reported_at", "final_reported_at"} {
		v := strings.TrimSpace(form[k])
		if v == "" {
			if k == "discovered_at" {
				refuse(http.StatusBadRequest, "発覚日時を入力してください。", "Give the discovery time.")
				return
			}
			continue
		}
		t, err := time.ParseInLocation(formTime, v, u.cfg.Location)
		if err != nil {
			refuse(http.StatusBadRequest, incidentFieldJA[k]+"は 2026-12-03T09:30 の形で入力してください。", "Give "+k+" as 2026-12-03T09:30.")
			return
		}
		if k == "discovered_at" {
			up.DiscoveredAt = t
		} else {
			*times[k] = &t
		}
	}
	if v := strings.TrimSpace(width.Fold.String(form["persons"])); v != "" {
		n, err := strconv.Atoi(strings.ReplaceAll(v, ",", ""))
		if err != nil {
			refuse(http.StatusBadRequest, "本人の数は整数で入力してください（空欄なら台帳の件数から数えます）。", "Persons is a whole number (empty: counted from the register entries).")
			return
		}
		up.Persons = &n
	}
	for l := range strings.Lines(form["add_entries"]) {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(up.AddEntries, l) {
			up.AddEntries = append(up.AddEntries, l)
		}
	}
	_, err = svc.Update(r.Context(), sessionFrom(r.Context()).Name, in.ID, up)
	switch {
	case errors.Is(err, incident.ErrConflict):
		refuse(http.StatusConflict, "ほかの人が先にこの事故の記録を変更したため保存しませんでした。開き直して、入力をやり直してください。",
			"Someone saved this incident first, so nothing was saved: open it again and redo the changes.")
		return
	case errors.Is(err, incident.ErrInvalid):
		refuse(http.StatusBadRequest, incidentProblem(err), incidentProblemEN(err))
		return
	case err != nil:
		u.internal(w, r, "update incident", err)
		return
	}
	back(w, r, "/incidents/"+in.ID, "saved")
}

// incidentFieldJA names the form's fields in Japanese, for its messages.
var incidentFieldJA = map[string]string{"discovered_at": "発覚日時", "occurred_at": "発生日時",
	"preliminary_reported_at": "速報の報告日時", "final_reported_at": "確報の報告日時"}
