package api

import (
	"errors"
	"net/http"
)

// maxIDLen bounds ids taken from a path segment (agent ids are much shorter).
const maxIDLen = 128

// validID reports whether id can name an agent or entry: 1 to maxIDLen
// letters, digits and - _ . @, and not "." or "..". Path segments are
// percent-decoded, so "..%2Fx" arrives here as "../x" and must stop here
// rather than reach a store that refuses it as an internal error.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '@'
		if !ok {
			return false
		}
	}
	return true
}

// agentExists answers 404 for an invalid or unknown agent id and 500 for a
// failed lookup; it reports whether the handler may go on.
func (s *Server) agentExists(w http.ResponseWriter, r *http.Request, id string) bool {
	if !validID(id) {
		s.fail(w, r, http.StatusNotFound, "no such agent")
		return false
	}
	if _, err := s.cfg.State.GetAgent(r.Context(), id); err != nil {
		if errors.Is(err, ErrNotFound) {
			s.fail(w, r, http.StatusNotFound, "no agent "+id)
		} else {
			s.internal(w, r, "agent lookup", err)
		}
		return false
	}
	return true
}
