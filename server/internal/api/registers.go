package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// registerPaths maps the admin API's path segment to its register.
var registerPaths = map[string]register.Kind{
	"register":  register.KindPI,
	"media":     register.KindMedia,
	"approvals": register.KindApprovals,
	"disposals": register.KindDisposals,
}

// maxEntryBody bounds one register entry in a request.
const maxEntryBody = 1 << 20

// registerRoutes mounts the registers, each with CSV import/export, and assignments.
// Without Config.Registers the paths answer 404 through the catch-all.
func (s *Server) registerRoutes(mux *http.ServeMux) {
	if s.cfg.Registers == nil {
		return
	}
	for p, k := range registerPaths {
		base := "/api/v1/" + p
		mux.HandleFunc("POST "+base+"/import", s.admin(registerWrite, s.withKind(k, s.handleImportRegister)))
		mux.HandleFunc("GET "+base+"/export", s.admin(readOnly, s.withKind(k, s.handleExportRegister)))
		mux.HandleFunc("GET "+base, s.admin(readOnly, s.withKind(k, s.handleListEntries)))
		mux.HandleFunc("POST "+base, s.admin(registerWrite, s.withKind(k, s.handleCreateEntry)))
		mux.HandleFunc("GET "+base+"/{id}", s.admin(readOnly, s.withKind(k, s.handleGetEntry)))
		mux.HandleFunc("PUT "+base+"/{id}", s.admin(registerWrite, s.withKind(k, s.handleUpdateEntry)))
		mux.HandleFunc("DELETE "+base+"/{id}", s.admin(registerWrite, s.withKind(k, s.handleRetireEntry)))
		mux.HandleFunc("GET "+base+"/{id}/history", s.admin(readOnly, s.withKind(k, s.handleEntryHistory)))
	}
	// Managers (個人情報保護管理者) decide carry-out requests; admins may too.
	mux.HandleFunc("POST /api/v1/approvals/{id}/approve", s.admin(readOnly, s.handleDecide(true)))
	mux.HandleFunc("POST /api/v1/approvals/{id}/deny", s.admin(readOnly, s.handleDecide(false)))
	mux.HandleFunc("GET /api/v1/assignments", s.admin(readOnly, s.handleListAssignments))
	mux.HandleFunc("PUT /api/v1/assignments/agents/{id}", s.admin(write, s.handleAssignAgent))
	mux.HandleFunc("PUT /api/v1/assignments/departments/{dept}", s.admin(write, s.handleAssignDepartment))
	mux.HandleFunc("PUT /api/v1/agents/{id}/department", s.admin(write, s.handleSetDepartment))
	mux.HandleFunc("GET /api/v1/agents/{id}/policy", s.admin(readOnly, s.handleAgentPolicy))
}

type kindKey struct{}

func (s *Server) withKind(k register.Kind, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(w, r.WithContext(context.WithValue(r.Context(), kindKey{}, k)))
	}
}

func kindFrom(r *http.Request) register.Kind {
	k, _ := r.Context().Value(kindKey{}).(register.Kind)
	return k
}

// registerFail maps register errors to statuses; validation errors list
// every field.
func (s *Server) registerFail(w http.ResponseWriter, r *http.Request, what string, err error) {
	var ve register.ValidationError
	switch {
	case errors.As(err, &ve):
		s.writeJSON(w, r, http.StatusBadRequest, map[string]any{"error": ve.Error(), "errors": []register.FieldError(ve)})
	case errors.Is(err, register.ErrNotFound):
		s.fail(w, r, http.StatusNotFound, err.Error())
	case errors.Is(err, register.ErrConflict):
		s.fail(w, r, http.StatusConflict, err.Error())
	case errors.Is(err, register.ErrInvalid):
		s.fail(w, r, http.StatusBadRequest, err.Error())
	default:
		s.internal(w, r, what, err)
	}
}

// recordChange appends one register change to the server stream.
func (s *Server) recordChange(r *http.Request, c register.Change) {
	e := event.Event{Agent: event.ServerStream, Control: "register", Type: "register." + c.Action,
		Severity: event.Info, Time: c.At, User: tokenFrom(r.Context()).Name, Object: string(c.Kind) + "/" + c.ID,
		RegisterID: c.ID, Attrs: register.ChangeAttrs(c)}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	if _, err := s.cfg.Store.AppendServer(ctx, e); err != nil {
		s.log.Error().Err(err).Str("type", e.Type).Str("object", e.Object).Msg("api: register change NOT recorded in the server stream")
	}
}

// changed records each change and wakes this server's policy long-polls
// at once after a write. A save that changed nothing is no event.
func (s *Server) changed(r *http.Request, cs ...register.Change) {
	wrote := false
	for _, c := range register.WithAlso(cs) {
		if c.Action != register.ActionUnchanged {
			s.recordChange(r, c)
			wrote = true
		}
	}
	if wrote {
		s.policyWritten()
	}
}

func (s *Server) handleListEntries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := register.Filter{Status: q.Get("status"), Department: q.Get("department"), Host: q.Get("host"),
		Serial: q.Get("serial"), Owner: q.Get("owner"), Q: q.Get("q")}
	es, err := s.cfg.Registers.List(r.Context(), kindFrom(r), f)
	if err != nil {
		s.registerFail(w, r, "listing register", err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"entries": es})
}

func (s *Server) handleGetEntry(w http.ResponseWriter, r *http.Request) {
	e, err := s.cfg.Registers.Get(r.Context(), kindFrom(r), r.PathValue("id"))
	if err != nil {
		s.registerFail(w, r, "reading register", err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(revisionOf(e), 10)))
	s.writeJSON(w, r, http.StatusOK, e)
}

func revisionOf(e register.Entry) int64 { return register.MetaOf(e).Revision }

// decodeEntry reads a JSON entry of the request's register strictly.
func (s *Server) decodeEntry(w http.ResponseWriter, r *http.Request) (register.Entry, bool) {
	e := register.NewEntry(kindFrom(r))
	d := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEntryBody))
	d.DisallowUnknownFields()
	if err := d.Decode(e); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("entry over %d bytes", maxEntryBody))
			return nil, false
		}
		s.fail(w, r, http.StatusBadRequest, "entry: "+err.Error())
		return nil, false
	}
	return e, true
}

func (s *Server) handleCreateEntry(w http.ResponseWriter, r *http.Request) {
	e, ok := s.decodeEntry(w, r)
	if !ok {
		return
	}
	c, err := s.cfg.Registers.Create(r.Context(), tokenFrom(r.Context()).Name, e)
	if err != nil {
		s.registerFail(w, r, "creating entry", err)
		return
	}
	s.changed(r, c)
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(c.Revision, 10)))
	s.writeJSON(w, r, http.StatusCreated, e)
}

// ifMatch reads the revision from If-Match ("123", W/"123" or 123); 0 if absent.
func ifMatch(r *http.Request) (int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" {
		return 0, nil
	}
	h = strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	n, err := strconv.ParseInt(h, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("If-Match: %q is not a revision", r.Header.Get("If-Match"))
	}
	return n, nil
}

func (s *Server) handleUpdateEntry(w http.ResponseWriter, r *http.Request) {
	hdr, err := ifMatch(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	e, ok := s.decodeEntry(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	body := revisionOf(e)
	rev := hdr
	switch {
	case rev == 0:
		rev = body
	case body != 0 && body != hdr:
		s.fail(w, r, http.StatusBadRequest, "revision: body and If-Match disagree")
		return
	}
	if err := setID(e, id); err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	c, err := s.cfg.Registers.Update(r.Context(), tokenFrom(r.Context()).Name, e, rev)
	if err != nil {
		s.registerFail(w, r, "updating entry", err)
		return
	}
	s.changed(r, c)
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(c.Revision, 10)))
	s.writeJSON(w, r, http.StatusOK, e)
}

// setID takes the id from the URL; a different id in the body is an error.
func setID(e register.Entry, id string) error {
	m := register.MetaOf(e)
	if m.ID != "" && m.ID != id {
		return fmt.Errorf("id: body says %q, URL says %q", m.ID, id)
	}
	m.ID = id
	return nil
}

func (s *Server) handleRetireEntry(w http.ResponseWriter, r *http.Request) {
	rev, err := ifMatch(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	c, err := s.cfg.Registers.Retire(r.Context(), tokenFrom(r.Context()).Name, kindFrom(r), r.PathValue("id"), rev)
	if err != nil {
		s.registerFail(w, r, "retiring entry", err)
		return
	}
	s.changed(r, c)
	s.writeJSON(w, r, http.StatusOK, c)
}

func (s *Server) handleEntryHistory(w http.ResponseWriter, r *http.Request) {
	h, err := s.cfg.Registers.History(r.Context(), kindFrom(r), r.PathValue("id"))
	if err != nil {
		s.registerFail(w, r, "reading history", err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"history": h})
}

func (s *Server) handleDecide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := tokenFrom(r.Context())
		if tok.Role != RoleManager && tok.Role != RoleAdmin {
			s.fail(w, r, http.StatusForbidden, "role "+tok.Role+" cannot decide carry-out approvals")
			return
		}
		rev, err := ifMatch(r)
		if err != nil {
			s.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
		c, err := s.cfg.Registers.Decide(r.Context(), tok.Name, r.PathValue("id"), approve, rev)
		if err != nil {
			s.registerFail(w, r, "deciding approval", err)
			return
		}
		s.changed(r, c)
		s.writeJSON(w, r, http.StatusOK, c)
	}
}

func (s *Server) handleImportRegister(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, register.MaxCSVBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("CSV over %d bytes", register.MaxCSVBytes))
			return
		}
		s.fail(w, r, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	k := kindFrom(r)
	rows, cellErrs, err := s.cfg.Registers.ParseCSV(k, b)
	if err != nil {
		s.registerFail(w, r, "reading CSV", err)
		return
	}
	cs, err := s.cfg.Registers.Import(r.Context(), tokenFrom(r.Context()).Name, k, rows, cellErrs)
	if err != nil {
		s.registerFail(w, r, "importing CSV", err)
		return
	}
	if len(cs) > 0 {
		s.changed(r, cs...)
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"rows": len(rows), "changed": len(cs), "changes": cs})
}

// csvFilenames are the export's file names, so an office can tell its
// four registers apart in a downloads folder.
var csvFilenames = map[register.Kind]string{register.KindPI: "pi-register.csv", register.KindMedia: "media-register.csv",
	register.KindApprovals: "carry-out-approvals.csv", register.KindDisposals: "disposals.csv"}

func (s *Server) handleExportRegister(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lang, enc := q.Get("lang"), q.Get("encoding")
	if lang == "" {
		lang = register.LangJA
	}
	if enc == "" {
		enc = register.EncUTF8
	}
	k := kindFrom(r)
	es, err := s.cfg.Registers.List(r.Context(), k, register.Filter{Status: q.Get("status")})
	if err != nil {
		s.registerFail(w, r, "listing register", err)
		return
	}
	var buf bytes.Buffer
	if err := s.cfg.Registers.ExportCSV(&buf, k, es, lang, enc); err != nil {
		s.registerFail(w, r, "exporting CSV", err)
		return
	}
	cs := "utf-8"
	if enc == register.EncSJIS {
		cs = "shift_jis"
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset="+cs)
	h.Set("Content-Disposition", `attachment; filename="`+csvFilenames[k]+`"`)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	// The registers name folders of personal data and who keeps them: who
	// took a copy is evidence, as for the web's export.
	s.record(r, event.Event{Type: "export.made", Object: "register/" + string(k),
		Attrs: event.Attrs{"format": "csv", "entries": len(es), "lang": lang, "encoding": enc}})
}

type assignBody struct {
	Policy string `json:"policy"` // empty removes the assignment
}

func (s *Server) decodeSmall(w http.ResponseWriter, r *http.Request, v any) bool {
	d := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		s.fail(w, r, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

func (s *Server) handleAssignAgent(w http.ResponseWriter, r *http.Request) {
	var b assignBody
	if !s.decodeSmall(w, r, &b) {
		return
	}
	id := r.PathValue("id")
	if b.Policy != "" && !policy.ValidName(b.Policy) {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("policy: %q is not a policy name", b.Policy))
		return
	}
	if !s.agentExists(w, r, id) {
		return
	}
	if err := s.cfg.Registers.AssignAgent(r.Context(), id, b.Policy); err != nil {
		s.registerFail(w, r, "assigning policy", err)
		return
	}
	s.policyWritten()
	s.record(r, event.Event{Type: "policy.assigned", Object: "agent/" + id, Attrs: event.Attrs{"policy": b.Policy}})
	s.writeJSON(w, r, http.StatusOK, map[string]string{"agent": id, "policy": b.Policy})
}

func (s *Server) handleAssignDepartment(w http.ResponseWriter, r *http.Request) {
	var b assignBody
	if !s.decodeSmall(w, r, &b) {
		return
	}
	dept := r.PathValue("dept")
	if err := s.cfg.Registers.AssignDepartment(r.Context(), dept, b.Policy); err != nil {
		s.registerFail(w, r, "assigning policy", err)
		return
	}
	s.policyWritten()
	s.record(r, event.Event{Type: "policy.assigned", Object: "department/" + dept, Attrs: event.Attrs{"policy": b.Policy}})
	s.writeJSON(w, r, http.StatusOK, map[string]string{"department": dept, "policy": b.Policy})
}

func (s *Server) handleListAssignments(w http.ResponseWriter, r *http.Request) {
	deps, err := s.cfg.Registers.DepartmentAssignments(r.Context())
	if err != nil {
		s.registerFail(w, r, "listing assignments", err)
		return
	}
	agents, err := s.cfg.Registers.AgentAssignments(r.Context())
	if err != nil {
		s.registerFail(w, r, "listing assignments", err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"agents": agents, "departments": deps})
}

func (s *Server) handleSetDepartment(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Department string `json:"department"`
	}
	if !s.decodeSmall(w, r, &b) {
		return
	}
	id := r.PathValue("id")
	if !validID(id) {
		s.fail(w, r, http.StatusNotFound, "no such agent")
		return
	}
	if err := s.cfg.Registers.SetAgentDepartment(r.Context(), id, b.Department); err != nil {
		s.registerFail(w, r, "setting department", err)
		return
	}
	s.policyWritten()
	s.record(r, event.Event{Type: "agent.department", Object: "agent/" + id, Attrs: event.Attrs{"department": b.Department}})
	s.writeJSON(w, r, http.StatusOK, map[string]string{"agent": id, "department": b.Department})
}

// handleAgentPolicy shows an agent's effective policy as its agent gets it,
// with the pack it came from, so admins and auditors can check what a PC watches.
func (s *Server) handleAgentPolicy(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.agentExists(w, r, id) {
		return
	}
	c, err := s.cfg.Registers.Effective(r.Context(), id)
	if err != nil {
		s.registerFail(w, r, "compiling policy", err)
		return
	}
	ans := map[string]any{"agent": id, "source": c.Source, "version": c.Policy.Version(), "policy": c.Policy}
	if !c.Until.IsZero() {
		ans["until"] = c.Until.UTC()
	}
	s.writeJSON(w, r, http.StatusOK, ans)
}
