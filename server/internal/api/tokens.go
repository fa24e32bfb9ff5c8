package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// Bounds of POST /api/v1/tokens.
const (
	MaxTokenTTL  = 90 * 24 * time.Hour
	MaxTokenUses = 100000
)

type tokenRequest = personTokenRequest

type tokenResponse struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
	Uses    int       `json:"uses"`
}

// handleCreateToken mints an enrollment token, or with "kind": "api" an
// expiring API token for a person (createPersonToken). The plaintext is shown once,
// here; the server stream records the token's id, never its secret.
func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if err := decodeStrict(w, r, 4<<10, &req); err != nil {
		s.fail(w, r, statusOf(err), err.Error())
		return
	}
	switch req.Kind {
	case "", "enroll":
	case "api":
		s.createPersonToken(w, r, req)
		return
	default:
		s.fail(w, r, http.StatusBadRequest, "kind: want enroll (the default) or api")
		return
	}
	if req.Name != "" || req.Role != "" {
		s.fail(w, r, http.StatusBadRequest, "name and role are for kind api")
		return
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil || ttl <= 0 || ttl > MaxTokenTTL {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("ttl: want a Go duration from 1s to %s, such as 24h", MaxTokenTTL))
		return
	}
	if req.Uses < 1 || req.Uses > MaxTokenUses {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("uses: want 1 to %d", MaxTokenUses))
		return
	}
	who := tokenFrom(r.Context()).Name
	plain, tok, err := s.cfg.State.CreateEnrollToken(r.Context(), ttl, req.Uses, who)
	if err != nil {
		s.internal(w, r, "creating token", err)
		return
	}
	s.record(r, event.Event{Type: "token.created", Object: "enroll-token/" + tok.ID, Attrs: event.Attrs{
		"id": tok.ID, "expires": tok.Expires.UTC().Format(time.RFC3339), "uses": req.Uses,
	}})
	s.writeJSON(w, r, http.StatusCreated, tokenResponse{Token: plain, ID: tok.ID, Expires: tok.Expires.UTC(), Uses: tok.UsesLeft})
}
