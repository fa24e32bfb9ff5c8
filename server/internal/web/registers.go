package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

type registerRow struct {
	ID, Status, Summary, UpdatedBy string
	Updated                        time.Time
}

type registerData struct {
	Kind, Q, Status, Export string
	Kinds                   []register.Kind
	Statuses                []option
	Rows                    []registerRow
}

func summary(e register.Entry) string {
	switch x := e.(type) {
	case *register.PIEntry:
		return fmt.Sprintf("%s · %s · %s", x.Name, x.Department, x.Owner)
	case *register.MediaEntry:
		return fmt.Sprintf("%s · %s · %s", x.Product, x.Serial, x.Owner)
	case *register.Approval:
		return fmt.Sprintf("%s · %s · %s", x.Requester, x.Serial, x.Host)
	case *register.Disposal:
		return fmt.Sprintf("%s · %s · %s", x.Date, x.Item, x.Method)
	}
	return ""
}

func (u *UI) kind(w http.ResponseWriter, r *http.Request) (register.Kind, bool) {
	k := register.Kind(r.PathValue("kind"))
	if u.cfg.Registers == nil || !slices.Contains(register.Kinds, k) {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return "", false
	}
	return k, true
}

func (u *UI) handleRegister(w http.ResponseWriter, r *http.Request) {
	k, ok := u.kind(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	lang := langOf(r)
	// A status may come as its label (状態=有効), as people type it.
	d := registerData{Kind: string(k), Kinds: register.Kinds, Q: q.Get("q"), Status: labels.Code(labels.Status, q.Get("status"))}
	for _, f := range register.FormFields(k) {
		if f.Name == "status" {
			d.Statuses = codeOptions(labels.Status, lang, f.Choices)
		}
	}
	ex := url.Values{"lang": {lang}}
	if d.Q != "" {
		ex.Set("q", d.Q)
	}
	if d.Status != "" {
		ex.Set("status", d.Status)
	}
	d.Export = "/registers/" + string(k) + "/export?" + ex.Encode()
	es, err := u.cfg.Registers.List(r.Context(), k, register.Filter{Q: d.Q, Status: d.Status})
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	for _, e := range es {
		m := register.MetaOf(e)
		d.Rows = append(d.Rows, registerRow{ID: m.ID, Status: m.Status, Summary: summary(e), Updated: m.Updated, UpdatedBy: m.UpdatedBy})
	}
	p := u.newPage(r, "registers", "nav_registers")
	p.Data = d
	u.render(w, r, http.StatusOK, "registers", p)
}

type formRow struct {
	register.FormField
	Label, Help, Value, Err string
	Options                 []option
}

type histRow struct {
	register.Change
	Fields []register.FieldChange
}

type entryData struct {
	Kind, ID, Status string
	Revision         int64
	Fields           []formRow
	History          []histRow
	Bad              bool
	// NotInMediaRegister: a carry-out approval of a device 媒体管理台帳
	// does not have.
	NotInMediaRegister bool
}

// formRows lays out register k's form with values and per-field errors,
// in the page's language.
func (u *UI) formRows(k register.Kind, lang string, vals map[string]string, errs register.ValidationError) []formRow {
	byField := map[string][]string{}
	for _, e := range errs {
		msg := e.Msg
		if lang == "ja" {
			msg = register.MessageJA(msg)
		}
		f := register.FieldOf(e.Field)
		if !slices.Contains(byField[f], msg) {
			byField[f] = append(byField[f], msg)
		}
	}
	var out []formRow
	for _, f := range register.FormFields(k) {
		r := formRow{FormField: f, Label: f.LabelJA, Help: f.HelpJA, Value: vals[f.Name], Err: strings.Join(byField[f.Name], " ")}
		if lang == "en" {
			r.Label, r.Help = f.LabelEN, f.HelpEN
		}
		switch f.Input {
		case register.InputSelect:
			for _, c := range f.Choices {
				l := labels.Of(labels.Status, lang, c)
				if f.Name == "medium" {
					l = register.MediumLabel(c, lang)
				}
				r.Options = append(r.Options, option{Value: c, Label: l})
			}
		case register.InputYesNo:
			r.Options = []option{{"no", labels.Of(labels.YesNo, lang, "no")}, {"yes", labels.Of(labels.YesNo, lang, "yes")}}
			if r.Value == "" {
				r.Value = "no"
			}
		case register.InputDateTime:
			if t, err := time.Parse(time.RFC3339, r.Value); err == nil {
				r.Value = t.In(u.cfg.Location).Format(uiTime)
			}
		}
		delete(byField, f.Name)
		out = append(out, r)
	}
	// Errors of fields the form has no row for (should not happen) still show.
	for f, msgs := range byField {
		out = append(out, formRow{FormField: register.FormField{Name: f, Input: "none"}, Label: f, Err: strings.Join(msgs, " ")})
	}
	return out
}

// fieldText shows a stored value of register k's field as the form does:
// a status or medium by its label, yes/no in words, a time in local time.
func (u *UI) fieldText(k register.Kind, field, v, lang string) string {
	if v == "" {
		return v
	}
	for _, f := range register.FormFields(k) {
		if f.Name != field {
			continue
		}
		switch f.Input {
		case register.InputSelect:
			if f.Name == "medium" {
				return register.MediumLabel(v, lang)
			}
			return labels.Of(labels.Status, lang, v)
		case register.InputYesNo:
			if b, err := strconv.ParseBool(v); err == nil {
				return yesNo(lang, b)
			}
		}
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.In(u.cfg.Location).Format("2006-01-02 15:04")
	}
	return v
}

func (u *UI) handleEntry(w http.ResponseWriter, r *http.Request) {
	k, ok := u.kind(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	d := entryData{Kind: string(k)}
	p := u.newPage(r, "registers", "nav_registers")
	var e register.Entry
	if id == "new" {
		e = register.NewEntry(k)
		register.MetaOf(e).Status = register.FormFields(k)[1].Choices[0]
	} else {
		var err error
		if e, err = u.cfg.Registers.Get(r.Context(), k, id); err != nil {
			u.registerFail(w, r, err)
			return
		}
		m := register.MetaOf(e)
		d.ID, d.Status, d.Revision = m.ID, m.Status, m.Revision
		if a, ok := e.(*register.Approval); ok {
			serials, err := u.mediaSerials(r.Context())
			if err != nil {
				u.registerFail(w, r, err)
				return
			}
			d.NotInMediaRegister = !inMediaRegister(serials, a.Serial)
		}
		hist, err := u.cfg.Registers.History(r.Context(), k, id)
		if err != nil {
			u.registerFail(w, r, err)
			return
		}
		slices.Reverse(hist)
		for _, c := range hist {
			fs := register.Diff(k, c.Before, c.After)
			for i := range fs {
				fs[i].Before, fs[i].After = u.fieldText(k, fs[i].Field, fs[i].Before, p.Lang), u.fieldText(k, fs[i].Field, fs[i].After, p.Lang)
			}
			d.History = append(d.History, histRow{Change: c, Fields: fs})
		}
	}
	vals := register.FormValues(e)
	if id == "new" { // a new entry's zero values are no one's input
		for _, k := range []string{"from", "to", "decided", "record_count"} {
			if v := vals[k]; v == "0" || strings.HasPrefix(v, "0001-01-01") {
				vals[k] = ""
			}
		}
	}
	d.Fields = u.formRows(k, p.Lang, vals, nil)
	p.Data = d
	u.render(w, r, http.StatusOK, "entry", p)
}

// entryFromRequest reads an entry from the form's fields, or from an
// "entry" JSON field (what scripts and older forms post).
func (u *UI) entryFromRequest(r *http.Request, k register.Kind) (register.Entry, map[string]string, register.ValidationError) {
	if raw := r.PostFormValue("entry"); raw != "" {
		e := register.NewEntry(k)
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(e); err != nil {
			return nil, nil, register.ValidationError{{Field: "entry", Msg: "JSON: " + err.Error()}}
		}
		return e, register.FormValues(e), nil
	}
	vals := map[string]string{}
	for _, f := range register.FormFields(k) {
		if _, ok := r.PostForm[f.Name]; !ok {
			continue
		}
		v := r.PostFormValue(f.Name)
		if f.Input == register.InputDateTime && v != "" {
			// datetime-local is in the UI's zone; the entry keeps RFC 3339.
			if t, err := time.ParseInLocation(uiTime, v, u.cfg.Location); err == nil {
				v = t.Format(time.RFC3339)
			}
		}
		vals[f.Name] = v
	}
	e, errs := register.FromForm(k, vals)
	return e, vals, errs
}

// handleSaveEntry creates ("new") or updates an entry from the form; the
// revision the form was read at guards against lost updates. On any error
// the form comes back with what was typed and the messages by the fields.
func (u *UI) handleSaveEntry(w http.ResponseWriter, r *http.Request) {
	k, ok := u.kind(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	e, vals, errs := u.entryFromRequest(r, k)
	who := sessionFrom(r.Context()).Name
	var c register.Change
	var err error
	var rev int64
	switch {
	case len(errs) > 0:
		err = errs
	case id == "new":
		c, err = u.cfg.Registers.Create(r.Context(), who, e)
	default:
		var perr error
		rev, perr = strconv.ParseInt(r.PostFormValue("revision"), 10, 64)
		if perr != nil || rev <= 0 {
			u.fail(w, r, http.StatusBadRequest, "err_invalid", "revision")
			return
		}
		register.MetaOf(e).ID = id
		c, err = u.cfg.Registers.Update(r.Context(), who, e, rev)
	}
	if err != nil {
		var ve register.ValidationError
		p := u.newPage(r, "registers", "nav_registers")
		d := entryData{Kind: string(k), Revision: rev, Bad: true}
		if id != "new" {
			d.ID = id
		}
		status := http.StatusBadRequest
		switch {
		case errors.As(err, &ve):
			p.Err = p.L["err_form"]
		case errors.Is(err, register.ErrConflict) && id == "new":
			p.Err = p.L["err_exists"]
			ve = register.ValidationError{{Field: "id", Msg: p.L["err_exists"]}}
			status = http.StatusConflict
		case errors.Is(err, register.ErrConflict):
			p.Err = p.L["err_conflict_form"]
			status = http.StatusConflict
		case errors.Is(err, register.ErrNotFound):
			u.registerFail(w, r, err)
			return
		default:
			u.internal(w, r, "register", err)
			return
		}
		d.Fields = u.formRows(k, p.Lang, vals, ve)
		p.Data = d
		u.render(w, r, status, "entry", p)
		return
	}
	if c.Action == register.ActionUnchanged {
		back(w, r, "/registers/"+string(k)+"/"+c.ID, "unchanged")
		return
	}
	u.changed(r, c)
	back(w, r, "/registers/"+string(k)+"/"+c.ID, "saved")
}

func (u *UI) handleRetire(w http.ResponseWriter, r *http.Request) {
	k, ok := u.kind(w, r)
	if !ok {
		return
	}
	rev, err := strconv.ParseInt(r.PostFormValue("revision"), 10, 64)
	if err != nil || rev <= 0 {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "revision")
		return
	}
	c, err := u.cfg.Registers.Retire(r.Context(), sessionFrom(r.Context()).Name, k, r.PathValue("id"), rev)
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	u.changed(r, c)
	back(w, r, "/registers/"+string(k)+"/"+c.ID, "saved")
}

func (u *UI) handleRegisterExport(w http.ResponseWriter, r *http.Request) {
	k, ok := u.kind(w, r)
	if !ok {
		return
	}
	lang := r.URL.Query().Get("lang")
	if lang == "" {
		lang = langOf(r)
	}
	enc := register.EncUTF8
	if r.URL.Query().Get("enc") == register.EncSJIS {
		enc = register.EncSJIS
	}
	// The export holds what the list shows: the same search and status.
	es, err := u.cfg.Registers.List(r.Context(), k, register.Filter{Q: r.URL.Query().Get("q"),
		Status: labels.Code(labels.Status, r.URL.Query().Get("status"))})
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	var buf bytes.Buffer
	if err := u.cfg.Registers.ExportCSV(&buf, k, es, lang, enc); err != nil {
		u.registerRowsFail(w, r, k, err)
		return
	}
	stamp := u.cfg.Now().In(u.cfg.Location).Format("20060102-150405")
	name := "mamori-register-" // the PI register's historic name
	if k != register.KindPI {
		name = "mamori-" + string(k) + "-"
	}
	w.Header().Set("Content-Type", "text/csv")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+stamp+`.csv"`)
	_, _ = w.Write(buf.Bytes())
	u.record(r, sessionFrom(r.Context()).Name, event.Event{Type: "export.made", Object: "register/" + string(k),
		Attrs: event.Attrs{"format": "csv", "entries": len(es), "lang": lang, "encoding": enc}})
}

// handleRegisterImport applies an Excel CSV all-or-nothing.
func (u *UI) handleRegisterImport(w http.ResponseWriter, r *http.Request) {
	k, ok := u.kind(w, r)
	if !ok {
		return
	}
	f, _, err := r.FormFile("file")
	if err != nil {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "file")
		return
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, register.MaxCSVBytes+1))
	if err != nil || len(b) > register.MaxCSVBytes {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", fmt.Sprintf("CSV over %d bytes", register.MaxCSVBytes))
		return
	}
	rows, cellErrs, err := u.cfg.Registers.ParseCSV(k, b)
	if err == nil {
		var cs []register.Change
		if cs, err = u.cfg.Registers.Import(r.Context(), sessionFrom(r.Context()).Name, k, rows, cellErrs); err == nil {
			u.changed(r, cs...)
			back(w, r, "/registers/"+string(k), "saved")
			return
		}
	}
	u.registerRowsFail(w, r, k, err)
}

// registerRowsFail is registerFail for a CSV of register k: each bad cell
// on a line of its own, in the page's language.
func (u *UI) registerRowsFail(w http.ResponseWriter, r *http.Request, k register.Kind, err error) {
	if ve, ok := errors.AsType[register.ValidationError](err); ok {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "\n"+strings.Join(ve.Lines(k, langOf(r)), "\n"))
		return
	}
	u.registerFail(w, r, err)
}

// changed records register changes like the API does and wakes policy
// long-polls, since registers feed agents' effective policies.
func (u *UI) changed(r *http.Request, cs ...register.Change) {
	who := sessionFrom(r.Context()).Name
	for _, c := range register.WithAlso(cs) {
		u.record(r, who, event.Event{Control: "register", Type: "register." + c.Action, Time: c.At,
			Object: string(c.Kind) + "/" + c.ID, RegisterID: c.ID,
			Attrs: register.ChangeAttrs(c)})
	}
	if u.cfg.PolicyChanged != nil {
		u.cfg.PolicyChanged()
	}
}

func (u *UI) registerFail(w http.ResponseWriter, r *http.Request, err error) {
	var ve register.ValidationError
	switch {
	case errors.As(err, &ve):
		u.fail(w, r, http.StatusBadRequest, "err_invalid", ve.Error())
	case errors.Is(err, register.ErrNotFound):
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
	case errors.Is(err, register.ErrConflict):
		u.fail(w, r, http.StatusConflict, "err_conflict", "")
	case errors.Is(err, register.ErrInvalid):
		u.fail(w, r, http.StatusBadRequest, "err_invalid", err.Error())
	default:
		u.internal(w, r, "register", err)
	}
}

type policiesData struct {
	Names       []string
	Departments map[string]string
	Agents      map[string]string
	Shown, YAML string
	PCs         []option
	DeptNames   []string
}

func (u *UI) handlePolicies(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	names, err := u.cfg.State.ListPolicies(ctx)
	if err != nil {
		u.internal(w, r, "listing policies", err)
		return
	}
	d := policiesData{Names: names}
	if n := r.PathValue("name"); n != "" {
		b, _, err := u.cfg.State.GetPolicy(ctx, n)
		if errors.Is(err, state.ErrNotFound) || errors.Is(err, state.ErrInvalid) {
			u.fail(w, r, http.StatusNotFound, "err_not_found", "")
			return
		}
		if err != nil {
			u.internal(w, r, "reading policy", err)
			return
		}
		d.Shown, d.YAML = n, string(b)
	}
	p := u.newPage(r, "policies", "nav_policies")
	if u.cfg.Registers != nil {
		if d.Departments, err = u.cfg.Registers.DepartmentAssignments(ctx); err != nil {
			u.internal(w, r, "assignments", err)
			return
		}
		if d.Agents, err = u.cfg.Registers.AgentAssignments(ctx); err != nil {
			u.internal(w, r, "assignments", err)
			return
		}
		var agents []state.Agent
		if p.hosts, agents, err = u.hostNames(ctx); err != nil {
			u.internal(w, r, "listing agents", err)
			return
		}
		d.PCs = hostOptions(p.hosts)
		seen := map[string]bool{}
		for _, a := range agents {
			if a.Department != "" && !seen[a.Department] {
				seen[a.Department] = true
				d.DeptNames = append(d.DeptNames, a.Department)
			}
		}
		for dep := range d.Departments {
			if !seen[dep] {
				seen[dep] = true
				d.DeptNames = append(d.DeptNames, dep)
			}
		}
		slices.Sort(d.DeptNames)
	}
	p.Data = d
	u.render(w, r, http.StatusOK, "policies", p)
}

func (u *UI) handleAssign(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Registers == nil {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	target, id, pol := r.PostFormValue("target"), strings.TrimSpace(r.PostFormValue("id")), r.PostFormValue("policy")
	// The form sends a PC as its agent id (a choice) or a department name;
	// a PC typed by name resolves too.
	if target == "agent" {
		if hosts, _, err := u.hostNames(r.Context()); err == nil {
			id = agentByName(hosts, id)
		}
	}
	if target == "pc" {
		target, id = "agent", r.PostFormValue("pc")
	}
	if target == "dept" {
		target, id = "department", r.PostFormValue("dept")
	}
	var err error
	switch target {
	case "department":
		err = u.cfg.Registers.AssignDepartment(r.Context(), id, pol)
	case "agent":
		err = u.cfg.Registers.AssignAgent(r.Context(), id, pol)
	default:
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "target")
		return
	}
	if err != nil {
		if errors.Is(err, state.ErrNotFound) || errors.Is(err, state.ErrInvalid) || errors.Is(err, register.ErrInvalid) || errors.Is(err, register.ErrNotFound) {
			u.fail(w, r, http.StatusBadRequest, "err_invalid", err.Error())
			return
		}
		u.internal(w, r, "assigning policy", err)
		return
	}
	u.record(r, sessionFrom(r.Context()).Name, event.Event{Type: "policy.assigned", Object: target + "/" + id, Attrs: event.Attrs{"policy": pol}})
	if u.cfg.PolicyChanged != nil {
		u.cfg.PolicyChanged()
	}
	back(w, r, "/policies", "assigned_msg")
}

type usersData struct {
	Users []state.User
	Roles []string
}

func (u *UI) handleUsers(w http.ResponseWriter, r *http.Request) {
	us, err := u.cfg.State.ListUsers(r.Context())
	if err != nil {
		u.internal(w, r, "listing users", err)
		return
	}
	p := u.newPage(r, "users", "nav_users")
	p.Data = usersData{Users: us, Roles: []string{state.RoleAdmin, state.RoleManager, state.RoleAuditor}}
	u.render(w, r, http.StatusOK, "users", p)
}

func (u *UI) userFail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, state.ErrInvalid):
		u.fail(w, r, http.StatusBadRequest, "err_invalid", err.Error())
	case errors.Is(err, state.ErrConflict):
		u.fail(w, r, http.StatusConflict, "err_conflict", "")
	case errors.Is(err, state.ErrNotFound):
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
	default:
		u.internal(w, r, "users", err)
	}
}

func (u *UI) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	name, role := strings.TrimSpace(r.PostFormValue("username")), r.PostFormValue("role")
	if err := u.cfg.State.CreateUser(r.Context(), name, role, r.PostFormValue("password")); err != nil {
		u.userFail(w, r, err)
		return
	}
	u.record(r, sessionFrom(r.Context()).Name, event.Event{Type: "user.created", Object: "user/" + name, Attrs: event.Attrs{"role": role}})
	back(w, r, "/users", "user_created")
}

// handleUpdateUser changes role and disabled flag, and resets the password
// if one is given; the user's sessions end so the change bites at once.
func (u *UI) handleUpdateUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	me := sessionFrom(r.Context())
	role := r.PostFormValue("role")
	disabled := r.PostFormValue("disabled") == "1"
	if name == me.Name && (disabled || role != state.RoleAdmin) {
		// An admin cannot lock themselves out (and so everyone, if alone).
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "cannot demote or disable yourself")
		return
	}
	c := state.UserChange{Role: &role, Disabled: &disabled}
	pw := r.PostFormValue("password")
	if pw != "" {
		c.Password = &pw
	}
	if _, err := u.cfg.State.UpdateUser(r.Context(), name, c); err != nil {
		u.userFail(w, r, err)
		return
	}
	if err := u.sessions.dropUser(r.Context(), name); err != nil {
		u.log.Error().Err(err).Str("user", name).Msg("web: sessions of a changed user not ended in etcd (they end within 30 minutes idle)")
	}
	u.record(r, me.Name, event.Event{Type: "user.changed", Object: "user/" + name,
		Attrs: event.Attrs{"role": role, "disabled": disabled, "password_reset": pw != ""}})
	back(w, r, "/users", "user_changed")
}
