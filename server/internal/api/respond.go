package api

import (
	"errors"
	"net/http"

	"github.com/mamori/mamori/server/internal/state"
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

// internal logs err and answers 500 without details; or 503 when etcd is
// unavailable (lost quorum, cut off): the one place that distinction is
// made for the admin API and the agent plane.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, state.ErrUnavailable) {
		s.log.Warn().Err(err).Str("path", r.URL.Path).Msg("api: " + what)
		w.Header().Set("Retry-After", "5")
		s.fail(w, r, http.StatusServiceUnavailable, EtcdUnavailableMessage(what))
		return
	}
	s.log.Error().Err(err).Str("path", r.URL.Path).Msg("api: " + what)
	s.fail(w, r, http.StatusInternalServerError, "internal error: "+what)
}

// EtcdUnavailableMessage is the error answered while etcd cannot be
// written or read (see state.ErrUnavailable).
func EtcdUnavailableMessage(what string) string {
	return "etcd is unavailable: " + what + " needs the control plane, which has no quorum or cannot be reached; " +
		"reads are served from this server's cache, try again when the cluster has quorum"
}
