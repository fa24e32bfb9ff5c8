package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

type registerRow struct {
	ID, Status, Summary, UpdatedBy string
	Updated                        time.Time
}

type registerData struct {
	Kind, Q, Status string
	Kinds           []register.Kind
	Rows            []registerRow
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
	d := registerData{Kind: string(k), Kinds: register.Kinds, Q: q.Get("q"), Status: q.Get("status")}
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

type entryData struct {
	Kind, ID, Status, JSON string
	Revision               int64
	History                []register.Change
}

func (u *UI) handleEntry(w http.ResponseWriter, r *http.Request) {
	k, ok := u.kind(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	d := entryData{Kind: string(k)}
	var e register.Entry
	if id == "new" {
		e = register.NewEntry(k)
	} else {
		var err error
		if e, err = u.cfg.Registers.Get(r.Context(), k, id); err != nil {
			u.registerFail(w, r, err)
			return
		}
		m := register.MetaOf(e)
		d.ID, d.Status, d.Revision = m.ID, m.Status, m.Revision
		if d.History, err = u.cfg.Registers.History(r.Context(), k, id); err != nil {
			u.registerFail(w, r, err)
			return
		}
		slices.Reverse(d.History)
	}
	b, _ := json.MarshalIndent(e, "", "  ")
	d.JSON = string(b)
	p := u.newPage(r, "registers", "nav_registers")
	p.Data = d
	u.render(w, r, http.StatusOK, "entry", p)
}

// handleSaveEntry creates ("new") or updates an entry from its JSON; the
// revision the form was read at guards against lost updates.
func (u *UI) handleSaveEntry(w http.ResponseWriter, r *http.Request) {
	k, ok := u.kind(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	e := register.NewEntry(k)
	dec := json.NewDecoder(strings.NewReader(r.PostFormValue("entry")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(e); err != nil {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "JSON: "+err.Error())
		return
	}
	who := sessionFrom(r.Context()).Name
	var c register.Change
	var err error
	if id == "new" {
		register.MetaOf(e).ID = ""
		c, err = u.cfg.Registers.Create(r.Context(), who, e)
	} else {
		rev, perr := strconv.ParseInt(r.PostFormValue("revision"), 10, 64)
		if perr != nil || rev <= 0 {
			u.fail(w, r, http.StatusBadRequest, "err_invalid", "revision")
			return
		}
		register.MetaOf(e).ID = id
		c, err = u.cfg.Registers.Update(r.Context(), who, e, rev)
	}
	if err != nil {
		u.registerFail(w, r, err)
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
	es, err := u.cfg.Registers.List(r.Context(), k, register.Filter{})
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	var buf bytes.Buffer
	if err := register.ExportCSV(&buf, k, es, lang, enc); err != nil {
		u.registerFail(w, r, err)
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
	rows, cellErrs, err := register.ParseCSV(k, b)
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	cs, err := u.cfg.Registers.Import(r.Context(), sessionFrom(r.Context()).Name, k, rows, cellErrs)
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	u.changed(r, cs...)
	back(w, r, "/registers/"+string(k), "saved")
}

// changed records register changes like the API does and wakes policy
// long-polls, since registers feed agents' effective policies.
func (u *UI) changed(r *http.Request, cs ...register.Change) {
	who := sessionFrom(r.Context()).Name
	for _, c := range cs {
		u.record(r, who, event.Event{Control: "register", Type: "register." + c.Action, Time: c.At,
			Object: string(c.Kind) + "/" + c.ID, RegisterID: c.ID,
			Attrs: event.Attrs{"kind": string(c.Kind), "version": c.Version, "revision": c.Revision}})
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

type approvalsData struct {
	Status    string
	Statuses  []string
	Rows      []*register.Approval
	CanDecide bool
}

func (u *UI) handleApprovals(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Registers == nil {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	d := approvalsData{Status: r.URL.Query().Get("status"), CanDecide: deciders.allows(sessionFrom(r.Context()).Role),
		Statuses: []string{register.StatusRequested, register.StatusApproved, register.StatusDenied, register.StatusReturned, register.StatusRetired}}
	es, err := u.cfg.Registers.List(r.Context(), register.KindApprovals, register.Filter{Status: d.Status})
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	for _, e := range es {
		d.Rows = append(d.Rows, e.(*register.Approval))
	}
	// Open requests first, then newest.
	slices.SortStableFunc(d.Rows, func(a, b *register.Approval) int {
		ar, br := a.Status == register.StatusRequested, b.Status == register.StatusRequested
		if ar != br {
			if ar {
				return -1
			}
			return 1
		}
		return b.From.Compare(a.From)
	})
	p := u.newPage(r, "approvals", "nav_approvals")
	p.Data = d
	u.render(w, r, http.StatusOK, "approvals", p)
}

func (u *UI) handleDecide(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Registers == nil {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	var approve bool
	switch r.PathValue("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	rev, err := strconv.ParseInt(r.PostFormValue("revision"), 10, 64)
	if err != nil || rev < 0 {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "revision")
		return
	}
	c, err := u.cfg.Registers.Decide(r.Context(), sessionFrom(r.Context()).Name, r.PathValue("id"), approve, rev)
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	u.changed(r, c)
	msg := "denied_msg"
	if approve {
		msg = "approved_msg"
	}
	back(w, r, "/approvals", msg)
}

type policiesData struct {
	Names       []string
	Departments map[string]string
	Agents      map[string]string
	Shown, YAML string
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
		if p.hosts, _, err = u.hostNames(ctx); err != nil {
			u.internal(w, r, "listing agents", err)
			return
		}
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
	u.sessions.dropUser(name)
	u.record(r, me.Name, event.Event{Type: "user.changed", Object: "user/" + name,
		Attrs: event.Attrs{"role": role, "disabled": disabled, "password_reset": pw != ""}})
	back(w, r, "/users", "user_changed")
}
