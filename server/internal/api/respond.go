package api

import (
	"net/http"

	"github.com/mamori/mamori/shared/wire"
)

// writeJSON is the one response helper: it sets the headers, encodes v and
// logs what it answered.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	err := wire.WriteJSON(w, status, v)
	ev := s.log.Debug()
	if r.Context().Err() != nil {
		// The client went away (its timeout, a dropped long-poll): what it
		// was answered is not the server's failure.
		ev.Str("method", r.Method).Str("path", r.URL.Path).Int("status", status).Msg("api: client gone")
		return
	}
	if status >= 500 {
		ev = s.log.Error()
	} else if status >= 400 {
		ev = s.log.Info()
	}
	if err != nil {
		ev = s.log.Warn().Err(err)
	}
	ev.Str("method", r.Method).Str("path", r.URL.Path).Int("status", status).Msg("api: answered")
}

// fail answers a 4xx/5xx with wire.Error. For 5xx the message must not
// carry internal details; log those before calling fail.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.writeJSON(w, r, status, wire.Error{Error: msg})
}

// internal logs err and answers 500 without details.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.Error().Err(err).Str("path", r.URL.Path).Msg("api: " + what)
	s.fail(w, r, http.StatusInternalServerError, "internal error: "+what)
}
