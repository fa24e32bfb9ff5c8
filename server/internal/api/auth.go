package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/server/internal/state"
)

type ctxKey int

const (
	agentKey ctxKey = iota
	tokenKey
)

// agent authenticates the agent plane: the agent id comes only from the
// verified client certificate, and the agent must still exist in state.
func (s *Server) agent(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			s.fail(w, r, http.StatusUnauthorized, "client certificate required")
			return
		}
		id, ok := s.cfg.AgentID(r.TLS)
		if !ok {
			s.fail(w, r, http.StatusUnauthorized, "client certificate carries no agent id")
			return
		}
		if s.cfg.Revoked != nil && len(r.TLS.PeerCertificates) > 0 && s.cfg.Revoked(pki.Serial(r.TLS.PeerCertificates[0])) {
			s.fail(w, r, http.StatusForbidden, "client certificate revoked")
			return
		}
		known, err := s.knownAgent(r.Context(), id)
		if err != nil && r.Context().Err() != nil {
			return // the agent went away while waiting: nothing failed
		}
		if err != nil {
			s.internal(w, r, "agent lookup", err)
			return
		}
		if !known {
			s.fail(w, r, http.StatusForbidden, "agent "+id+" is not enrolled or is disabled")
			return
		}
		if s.cfg.Revocation != nil {
			s.afterRenewal(r, id)
		}
		h(w, r.WithContext(context.WithValue(r.Context(), agentKey, id)))
	}
}

func agentFrom(ctx context.Context) string { s, _ := ctx.Value(agentKey).(string); return s }

// knownAgent answers from memory and asks state only on a miss, so that the
// ingest path costs no etcd round trip.
func (s *Server) knownAgent(ctx context.Context, id string) (bool, error) {
	s.agentsMu.RLock()
	_, ok := s.known[id]
	s.agentsMu.RUnlock()
	if ok {
		return true, nil
	}
	// Bounded like policy compilation: 10,000 agents connecting at once
	// must not send 10,000 reads to etcd at once.
	select {
	case s.stateSlots <- struct{}{}:
		defer func() { <-s.stateSlots }()
	case <-ctx.Done():
		return false, ctx.Err()
	}
	a, err := s.cfg.State.GetAgent(ctx, id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	if a.Disabled {
		return false, nil
	}
	if a.PreviousSerial != "" { // a renewal before this server (re)started
		s.renewed.mu.Lock()
		s.renewed.prev[id] = a.PreviousSerial
		s.renewed.mu.Unlock()
	}
	s.rememberAgent(id)
	return true, nil
}

func (s *Server) rememberAgent(id string) {
	s.agentsMu.Lock()
	s.known[id] = struct{}{}
	s.agentsMu.Unlock()
}

// access is what a route needs of an API token's role.
type access int

const (
	readOnly      access = iota // any role
	registerWrite               // managers and admins: registers, incidents, alerts, as in the web UI
	write                       // admins: policies, assignments, tokens, agents
)

// admin authenticates the admin plane with a bearer API token and checks
// the role: auditors and managers only read.
func (s *Server) admin(need access, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		tok = strings.TrimSpace(tok)
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mamori"`)
			s.fail(w, r, http.StatusUnauthorized, "bearer token required")
			return
		}
		t, err := s.cfg.State.LookupAPIToken(r.Context(), tok)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mamori", error="invalid_token"`)
				// Only a token that exists can be expired: one that does
				// not stays "invalid token", revealing nothing.
				if exp, ok := errors.AsType[*state.TokenExpiredError](err); ok {
					s.fail(w, r, http.StatusUnauthorized, expiredTokenMessage(exp.Expires))
					return
				}
				s.fail(w, r, http.StatusUnauthorized, "invalid token")
				return
			}
			s.internal(w, r, "token lookup", err)
			return
		}
		if !t.Expires.IsZero() { // a person's token: every use is recorded, refused ones too
			s.recordTokenUse(r, t)
		}
		switch t.Role {
		case RoleAdmin:
		case RoleManager:
			if need == write {
				s.fail(w, r, http.StatusForbidden, "role manager may keep the registers and decide carry-outs; this needs an admin token")
				return
			}
		case RoleAuditor:
			if need != readOnly {
				s.fail(w, r, http.StatusForbidden, "role auditor is read-only")
				return
			}
		default:
			s.fail(w, r, http.StatusForbidden, "unknown role")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), tokenKey, t)))
	}
}

// expiredTokenMessage tells the holder of an expired API token when it
// expired, in Japan's time and in UTC (with the date when it differs), and
// what to do.
func expiredTokenMessage(at time.Time) string {
	jst, utc := at.In(time.FixedZone("JST", 9*3600)), at.UTC()
	u := utc.Format("15:04:05 UTC")
	if utc.Format(time.DateOnly) != jst.Format(time.DateOnly) {
		u = utc.Format("2006-01-02 15:04:05 UTC")
	}
	return "token expired at " + jst.Format("2006-01-02 15:04:05 JST") + " (" + u + "); create a new one with mamori-server tokens create"
}

func tokenFrom(ctx context.Context) APIToken { t, _ := ctx.Value(tokenKey).(APIToken); return t }
