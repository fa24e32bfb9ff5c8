package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// handlePutPolicy stores a YAML policy after shared/policy accepts it.
func (s *Server) handlePutPolicy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !policy.ValidName(name) {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("policy name %q is not valid", name))
		return
	}
	doc, err := io.ReadAll(http.MaxBytesReader(w, r.Body, policy.MaxDocumentSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("policy document over %d bytes", policy.MaxDocumentSize))
			return
		}
		s.fail(w, r, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	p, err := policy.Parse(doc)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if p.Name != name {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("name: document says %q, URL says %q", p.Name, name))
		return
	}
	// A save that changes nothing makes no version and no event, as an
	// unchanged register entry: the same text as stored is "unchanged".
	switch old, _, err := s.cfg.State.GetPolicy(r.Context(), name); {
	case err == nil && bytes.Equal(old, doc):
		s.writeJSON(w, r, http.StatusOK, map[string]any{"name": name, "version": p.Version(), "unchanged": true})
		return
	case err != nil && !errors.Is(err, ErrNotFound):
		s.internal(w, r, "reading policy", err)
		return
	}
	if err := s.cfg.State.PutPolicy(r.Context(), name, doc); err != nil {
		s.internal(w, r, "storing policy", err)
		return
	}
	s.policyWritten()
	s.record(r, event.Event{Type: "policy.changed", Object: "policy/" + name, Attrs: event.Attrs{
		"name": name, "version": p.Version(),
	}})
	s.writeJSON(w, r, http.StatusOK, map[string]string{"name": name, "version": p.Version()})
}

// policyView is GET /api/v1/policies/{name}.
type policyView struct {
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Revision int64           `json:"revision"`
	YAML     string          `json:"yaml"`
	Policy   json.RawMessage `json:"policy"`
}

func (s *Server) handleGetPolicy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !policy.ValidName(name) {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("policy name %q is not valid", name))
		return
	}
	doc, rev, err := s.cfg.State.GetPolicy(r.Context(), name)
	if errors.Is(err, ErrNotFound) {
		s.fail(w, r, http.StatusNotFound, "no policy named "+name)
		return
	}
	if err != nil {
		s.internal(w, r, "reading policy", err)
		return
	}
	resp, _, err := s.namedPolicy(r.Context(), name)
	if err != nil {
		s.internal(w, r, "compiling policy", err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, policyView{Name: name, Version: resp.Version, Revision: rev, YAML: string(doc), Policy: resp.Policy})
}

func (s *Server) handleListPolicies(w http.ResponseWriter, r *http.Request) {
	names, err := s.cfg.State.ListPolicies(r.Context())
	if err != nil {
		s.internal(w, r, "listing policies", err)
		return
	}
	if names == nil {
		names = []string{}
	}
	sort.Strings(names)
	s.writeJSON(w, r, http.StatusOK, map[string][]string{"policies": names})
}
