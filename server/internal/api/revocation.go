package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// Revocation lists and revokes credentials: enrollment tokens, API tokens
// (including expiring ones made for people) and agents' certificates.
// Errors wrap ErrNotFound for unknown ids and ErrInvalid for bad input.
type Revocation interface {
	ListEnrollTokens(ctx context.Context) ([]EnrollToken, error)
	RevokeEnrollToken(ctx context.Context, id string) error
	CreatePersonToken(ctx context.Context, name, role string, ttl time.Duration, createdBy string) (string, APIToken, error)
	ListAPITokens(ctx context.Context) ([]APIToken, error)
	RevokeAPIToken(ctx context.Context, id string) error
	// SetAgentDisabled disables or enables an agent and puts its
	// certificate on or off the revoked list.
	SetAgentDisabled(ctx context.Context, id string, disabled bool, why string) (Agent, error)
	// RenewAgentCert records a renewed certificate's serial, keeping the
	// old one as PreviousSerial; RevokePrevious revokes that one.
	RenewAgentCert(ctx context.Context, id, serial string) (Agent, error)
	RevokePrevious(ctx context.Context, id, prev string) error
}

// ErrInvalid is what a Revocation wraps for bad input.
var ErrInvalid = errors.New("api: invalid")

// MaxPersonTokenTTL bounds the life of a person's API token.
const MaxPersonTokenTTL = 366 * 24 * time.Hour

// tokenView is one row of GET /api/v1/tokens (never a secret).
type tokenView struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"` // enroll | api
	Name      string     `json:"name,omitempty"`
	Role      string     `json:"role,omitempty"`
	Created   time.Time  `json:"created"`
	CreatedBy string     `json:"created_by,omitempty"`
	Expires   *time.Time `json:"expires"` // null: does not expire
	UsesLeft  *int       `json:"uses_left,omitempty"`
	// Expired is true for every token that no longer works, used up ones
	// too, as before State existed; State says why.
	Expired bool   `json:"expired"`
	State   string `json:"state"` // valid | expired | used_up
}

// Token states in tokenView.State. A used-up enrollment token wants more
// uses, not a longer life, so it is not called expired.
const (
	tokenValid   = "valid"
	tokenExpired = "expired"
	tokenUsedUp  = "used_up"
)

// tokenState is a token's state at now; expires zero: it does not expire,
// uses nil: it has no use count.
func tokenState(now, expires time.Time, uses *int) string {
	switch {
	case !expires.IsZero() && !now.Before(expires):
		return tokenExpired
	case uses != nil && *uses <= 0:
		return tokenUsedUp
	}
	return tokenValid
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	rv := s.cfg.Revocation
	et, err := rv.ListEnrollTokens(r.Context())
	if err != nil {
		s.internal(w, r, "listing tokens", err)
		return
	}
	at, err := rv.ListAPITokens(r.Context())
	if err != nil {
		s.internal(w, r, "listing tokens", err)
		return
	}
	now := time.Now()
	out := make([]tokenView, 0, len(et)+len(at))
	for _, t := range et {
		exp, uses := t.Expires.UTC(), t.UsesLeft
		st := tokenState(now, t.Expires, &uses)
		out = append(out, tokenView{ID: t.ID, Kind: "enroll", Created: t.Created.UTC(), CreatedBy: t.CreatedBy,
			Expires: &exp, UsesLeft: &uses, Expired: st != tokenValid, State: st})
	}
	for _, t := range at {
		st := tokenState(now, t.Expires, nil)
		v := tokenView{ID: t.ID, Kind: "api", Name: t.Name, Role: t.Role, Created: t.Created.UTC(), CreatedBy: t.CreatedBy,
			Expired: st != tokenValid, State: st}
		if !t.Expires.IsZero() {
			exp := t.Expires.UTC()
			v.Expires = &exp
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	s.writeJSON(w, r, http.StatusOK, map[string][]tokenView{"tokens": out})
}

// handleRevokeToken revokes an enrollment or API token by id; the token
// stops working at once on every server (it is looked up in etcd).
func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validID(id) || len(id) != 16 {
		s.fail(w, r, http.StatusNotFound, "no such token")
		return
	}
	kind := "enroll-token"
	err := s.cfg.Revocation.RevokeEnrollToken(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		kind = "api-token"
		err = s.cfg.Revocation.RevokeAPIToken(r.Context(), id)
	}
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid):
		s.fail(w, r, http.StatusNotFound, "no token "+id)
		return
	case err != nil:
		s.internal(w, r, "revoking token", err)
		return
	}
	s.record(r, event.Event{Type: "token.revoked", Severity: event.Warning, Object: kind + "/" + id, Attrs: event.Attrs{"id": id, "kind": kind}})
	s.writeJSON(w, r, http.StatusOK, map[string]string{"id": id, "revoked": kind})
}

// personTokenRequest is POST /api/v1/tokens with kind "api".
type personTokenRequest struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	Role string `json:"role"`
	TTL  string `json:"ttl"`
	Uses int    `json:"uses"`
}

// createPersonToken makes an expiring API token for a person; auditors get
// read-only ones (every role but admin is read-only).
func (s *Server) createPersonToken(w http.ResponseWriter, r *http.Request, req personTokenRequest) {
	if s.cfg.Revocation == nil {
		s.fail(w, r, http.StatusNotImplemented, "API tokens for people are not enabled on this server")
		return
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil || ttl <= 0 || ttl > MaxPersonTokenTTL {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("ttl: want a Go duration from 1s to %s, such as 720h", MaxPersonTokenTTL))
		return
	}
	if req.Role != RoleAdmin && req.Role != RoleAuditor && req.Role != RoleManager {
		s.fail(w, r, http.StatusBadRequest, "role: want auditor, manager or admin")
		return
	}
	if !state.ValidTokenName(req.Name) {
		s.fail(w, r, http.StatusBadRequest, "name: "+state.TokenNameRule+" (the person or script the token is for)")
		return
	}
	who := tokenFrom(r.Context()).Name
	plain, tok, err := s.cfg.Revocation.CreatePersonToken(r.Context(), req.Name, req.Role, ttl, who)
	if err != nil {
		s.internal(w, r, "creating token", err)
		return
	}
	s.record(r, event.Event{Type: "token.created", Object: "api-token/" + tok.ID, Attrs: event.Attrs{
		"id": tok.ID, "kind": "api", "name": tok.Name, "role": tok.Role, "expires": tok.Expires.UTC().Format(time.RFC3339)}})
	s.writeJSON(w, r, http.StatusCreated, map[string]any{"token": plain, "id": tok.ID, "kind": "api", "name": tok.Name,
		"role": tok.Role, "expires": tok.Expires.UTC()})
}

// handleSetAgentDisabled disables or re-enables an agent. A disabled agent
// keeps its record and evidence; its certificate is refused in the TLS
// handshake by every server, and by the agent plane on connections
// already open.
func (s *Server) handleSetAgentDisabled(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !validID(id) {
			s.fail(w, r, http.StatusNotFound, "no such agent")
			return
		}
		why := "disabled by " + tokenFrom(r.Context()).Name
		a, err := s.cfg.Revocation.SetAgentDisabled(r.Context(), id, disabled, why)
		switch {
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid):
			s.fail(w, r, http.StatusNotFound, "no agent "+id)
			return
		case err != nil:
			s.internal(w, r, "disabling agent", err)
			return
		}
		s.agentsMu.Lock()
		delete(s.known, id)
		s.agentsMu.Unlock()
		typ := "agent.enabled"
		if disabled {
			typ = "agent.disabled"
		}
		s.record(r, event.Event{Type: typ, Severity: event.Warning, Object: "agent/" + id, Attrs: event.Attrs{
			"hostname": a.Hostname, "cert_serial": a.CertSerial}})
		s.writeJSON(w, r, http.StatusOK, map[string]any{"agent": id, "disabled": disabled, "cert_serial": a.CertSerial})
	}
}

// recordTokenUse records one use of a person's API token: who, what and
// from where, so an auditor sees every pull.
func (s *Server) recordTokenUse(r *http.Request, t APIToken) {
	q := r.URL.RawQuery
	if len(q) > 1024 {
		q = q[:1024]
	}
	s.record(r, event.Event{Type: "api.token_used", Object: "api-token/" + t.ID, User: t.Name, Attrs: event.Attrs{
		"method": r.Method, "path": truncate(r.URL.Path, 512), "query": q,
		"ip": sourceIP(r), "role": t.Role}})
}
