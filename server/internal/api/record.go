package api

import (
	"context"
	"net/http"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// record appends an admin or enrollment action to the server's own event
// stream. The action already happened, so a failure is logged loudly rather
// than undoing it; the caller still answers success.
func (s *Server) record(r *http.Request, e event.Event) {
	e.Agent = event.ServerStream
	e.Control = "server"
	if e.Severity == "" {
		e.Severity = event.Info
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.User == "" {
		e.User = tokenFrom(r.Context()).Name
	}
	// Not r.Context(): a client hanging up must not lose the record.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	if _, err := s.cfg.Store.AppendServer(ctx, e); err != nil {
		s.log.Error().Err(err).Str("type", e.Type).Str("object", e.Object).Msg("api: admin action NOT recorded in the server stream")
	}
}
