package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/labels"
)

// piRef is a personal-information entry an approval touches, shown so the
// approver sees what leaves the office (e.g. 従業員名簿 with マイナンバー).
type piRef struct {
	ID, Name, Contents string
	Sensitive, Missing bool
	Records            int
}

type approvalRow struct {
	*register.Approval
	Expired bool
	Entries []piRef
	// NotInMediaRegister: no medium of this serial is in 媒体管理台帳
	// (a visitor's or new stick): the approver should know.
	NotInMediaRegister bool
}

// mediaSerials returns the serials of 媒体管理台帳 (every status), folded
// for comparison as the agents compare them (case-insensitive).
func (u *UI) mediaSerials(ctx context.Context) (map[string]bool, error) {
	media, err := u.cfg.Registers.List(ctx, register.KindMedia, register.Filter{})
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range media {
		out[strings.ToLower(strings.TrimSpace(e.(*register.MediaEntry).Serial))] = true
	}
	return out, nil
}

func inMediaRegister(serials map[string]bool, serial string) bool {
	return serials[strings.ToLower(strings.TrimSpace(serial))]
}

type approvalsData struct {
	Status    string
	Statuses  []option
	Rows      []approvalRow
	CanDecide bool
}

// approvalRows loads the PI entries each approval names.
func (u *UI) approvalRows(r *http.Request, aps []*register.Approval) ([]approvalRow, error) {
	pis, err := u.cfg.Registers.List(r.Context(), register.KindPI, register.Filter{})
	if err != nil {
		return nil, err
	}
	byID := map[string]*register.PIEntry{}
	for _, e := range pis {
		p := e.(*register.PIEntry)
		byID[p.ID] = p
	}
	serials, err := u.mediaSerials(r.Context())
	if err != nil {
		return nil, err
	}
	now := u.cfg.Now()
	out := make([]approvalRow, 0, len(aps))
	for _, a := range aps {
		row := approvalRow{Approval: a, Expired: a.Status == register.StatusRequested && !a.To.After(now),
			NotInMediaRegister: !inMediaRegister(serials, a.Serial)}
		for _, id := range a.RegisterIDs {
			if p, ok := byID[id]; ok {
				row.Entries = append(row.Entries, piRef{ID: id, Name: p.Name, Contents: p.Contents, Sensitive: p.Sensitive, Records: p.RecordCount})
			} else {
				row.Entries = append(row.Entries, piRef{ID: id, Missing: true})
			}
		}
		out = append(out, row)
	}
	return out, nil
}

func (u *UI) handleApprovals(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Registers == nil {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	lang := langOf(r)
	d := approvalsData{Status: labels.Code(labels.Status, r.URL.Query().Get("status")), CanDecide: deciders.allows(sessionFrom(r.Context()).Role),
		Statuses: codeOptions(labels.Status, lang, []string{register.StatusRequested, register.StatusApproved, register.StatusDenied, register.StatusReturned, register.StatusRetired})}
	es, err := u.cfg.Registers.List(r.Context(), register.KindApprovals, register.Filter{Status: d.Status})
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	aps := make([]*register.Approval, 0, len(es))
	for _, e := range es {
		aps = append(aps, e.(*register.Approval))
	}
	// Open requests first, then newest.
	slices.SortStableFunc(aps, func(a, b *register.Approval) int {
		ar, br := a.Status == register.StatusRequested, b.Status == register.StatusRequested
		if ar != br {
			if ar {
				return -1
			}
			return 1
		}
		return b.From.Compare(a.From)
	})
	if d.Rows, err = u.approvalRows(r, aps); err != nil {
		u.registerFail(w, r, err)
		return
	}
	p := u.newPage(r, "approvals", "nav_approvals")
	p.Data = d
	u.render(w, r, http.StatusOK, "approvals", p)
}

type confirmData struct {
	Row               approvalRow
	Decision, Comment string
	Revision          int64
	Blocked           string
}

// handleConfirm is the confirmation step of approve, deny and return: the
// request in full with the register entries it takes out, a comment, and
// the button that does it.
func (u *UI) handleConfirm(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Registers == nil {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	dec := r.URL.Query().Get("decision")
	if dec != "approve" && dec != "deny" && dec != "return" {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "decision")
		return
	}
	e, err := u.cfg.Registers.Get(r.Context(), register.KindApprovals, r.PathValue("id"))
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	a := e.(*register.Approval)
	rows, err := u.approvalRows(r, []*register.Approval{a})
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	p := u.newPage(r, "approvals", "nav_approvals")
	d := confirmData{Row: rows[0], Decision: dec, Revision: a.Revision}
	switch {
	case dec == "return" && a.Status != register.StatusApproved,
		dec != "return" && a.Status != register.StatusRequested:
		d.Blocked = p.L["err_not_open"]
	case dec == "approve" && rows[0].Expired:
		d.Blocked = p.L["err_expired"]
	}
	p.Title = p.L["confirm_"+dec]
	p.Data = d
	u.render(w, r, http.StatusOK, "confirm", p)
}

func (u *UI) handleDecide(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Registers == nil {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	dec := r.PathValue("decision")
	if dec != "approve" && dec != "deny" && dec != "return" {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	rev, err := strconv.ParseInt(r.PostFormValue("revision"), 10, 64)
	if err != nil || rev < 0 {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "revision")
		return
	}
	who, id, comment := sessionFrom(r.Context()).Name, r.PathValue("id"), strings.TrimSpace(r.PostFormValue("comment"))
	var c register.Change
	if dec == "return" {
		c, err = u.cfg.Registers.Return(r.Context(), who, id, rev, comment)
	} else {
		c, err = u.cfg.Registers.DecideWithComment(r.Context(), who, id, dec == "approve", rev, comment)
	}
	var ve register.ValidationError
	switch {
	case errors.As(err, &ve) && len(ve) > 0 && ve[0].Field == "to":
		u.fail(w, r, http.StatusConflict, "err_expired", "")
		return
	case errors.Is(err, register.ErrConflict):
		u.fail(w, r, http.StatusConflict, "err_not_open", "")
		return
	case err != nil:
		u.registerFail(w, r, err)
		return
	}
	u.changed(r, c)
	back(w, r, "/approvals", map[string]string{"approve": "approved_msg", "deny": "denied_msg", "return": "returned_msg"}[dec])
}

type requestData struct {
	Fields                []formRow
	Hosts, Media, Entries []option
	Vals                  map[string]string
	Picked                map[string]bool
}

// handleRequestForm is the carry-out request form: PC and device as
// choices, the register entries taken out as checkboxes.
func (u *UI) handleRequestForm(w http.ResponseWriter, r *http.Request) {
	u.requestForm(w, r, http.StatusOK, map[string]string{"requester": sessionFrom(r.Context()).Name}, nil, nil)
}

func (u *UI) requestForm(w http.ResponseWriter, r *http.Request, status int, vals map[string]string, picked []string, errs register.ValidationError) {
	if u.cfg.Registers == nil {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	ctx := r.Context()
	p := u.newPage(r, "approvals", "nav_approvals")
	d := requestData{Vals: vals, Picked: map[string]bool{}}
	for _, id := range picked {
		d.Picked[id] = true
	}
	_, agents, err := u.hostNames(ctx)
	if err != nil {
		u.internal(w, r, "listing agents", err)
		return
	}
	seen := map[string]bool{}
	for _, a := range agents {
		if a.Hostname != "" && !seen[a.Hostname] {
			seen[a.Hostname] = true
			d.Hosts = append(d.Hosts, option{Value: a.Hostname, Label: a.Hostname + " (" + a.Department + ")"})
		}
	}
	slices.SortFunc(d.Hosts, func(a, b option) int { return strings.Compare(a.Value, b.Value) })
	media, err := u.cfg.Registers.List(ctx, register.KindMedia, register.Filter{Status: register.StatusActive})
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	for _, e := range media {
		m := e.(*register.MediaEntry)
		d.Media = append(d.Media, option{Value: m.Serial, Label: m.ID + " · " + m.Product + " · " + m.Serial})
	}
	pis, err := u.cfg.Registers.List(ctx, register.KindPI, register.Filter{Status: register.StatusActive})
	if err != nil {
		u.registerFail(w, r, err)
		return
	}
	for _, e := range pis {
		pe := e.(*register.PIEntry)
		l := pe.ID + " · " + pe.Name
		if pe.Sensitive {
			l += " ⚠ " + p.L["sensitive"]
		}
		d.Entries = append(d.Entries, option{Value: pe.ID, Label: l})
	}
	d.Fields = u.formRows(register.KindApprovals, p.Lang, vals, errs)
	if len(errs) > 0 {
		p.Err = p.L["err_form"]
	}
	p.Title = p.L["new_request"]
	p.Data = d
	u.render(w, r, status, "request", p)
}

// handleRequest files a carry-out request (status requested) from the form.
func (u *UI) handleRequest(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Registers == nil {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	_ = r.ParseForm()
	vals := map[string]string{"status": register.StatusRequested}
	for _, k := range []string{"requester", "serial", "host", "purpose", "from", "to"} {
		vals[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	picked := r.PostForm["register_ids"]
	for _, k := range []string{"from", "to"} {
		if t, err := time.ParseInLocation(uiTime, vals[k], u.cfg.Location); err == nil {
			vals[k] = t.Format(time.RFC3339)
		}
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	vals["id"] = "CO-" + u.cfg.Now().In(u.cfg.Location).Format("20060102") + "-" + hex.EncodeToString(rnd[:])
	vals["register_ids"] = strings.Join(picked, "\n")
	e, errs := register.FromForm(register.KindApprovals, vals)
	if len(errs) == 0 {
		a := e.(*register.Approval)
		switch {
		case a.To.After(a.From) && !a.To.After(u.cfg.Now()):
			errs = register.ValidationError{{Field: "to", Msg: "the window has ended already"}}
		default:
			c, err := u.cfg.Registers.Create(r.Context(), sessionFrom(r.Context()).Name, e)
			var ve register.ValidationError
			switch {
			case errors.As(err, &ve):
				errs = ve
			case err != nil:
				u.registerFail(w, r, err)
				return
			default:
				u.changed(r, c)
				back(w, r, "/approvals", "requested_msg")
				return
			}
		}
	}
	u.requestForm(w, r, http.StatusBadRequest, vals, picked, errs)
}
