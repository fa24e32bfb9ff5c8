package api

import (
	"net/http"

	"github.com/mamori/mamori/shared/wire"
)

// routes is the one route table of the server.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.Handle("GET /metrics", s.metrics.handler())

	// Agent plane: enrollment is open (the token authenticates), the rest
	// needs the client certificate the CA issued at enrollment.
	mux.HandleFunc("POST "+wire.PathEnroll, s.handleEnroll)
	mux.HandleFunc("POST "+wire.PathEvents, s.agent(s.handleIngest))
	mux.HandleFunc("GET "+wire.PathPolicy, s.agent(s.handlePolicy))

	if s.cfg.PeerServer != nil {
		mux.HandleFunc("POST "+PathPeerRecords, s.handlePeerRecord)
	}

	// Admin plane.
	mux.HandleFunc("GET /api/v1/events", s.admin(readOnly, s.handleListEvents))
	mux.HandleFunc("GET /api/v1/agents", s.admin(readOnly, s.handleListAgents))
	mux.HandleFunc("POST /api/v1/tokens", s.admin(write, s.handleCreateToken))
	mux.HandleFunc("GET /api/v1/policies", s.admin(readOnly, s.handleListPolicies))
	mux.HandleFunc("GET /api/v1/policies/{name}", s.admin(readOnly, s.handleGetPolicy))
	mux.HandleFunc("PUT /api/v1/policies/{name}", s.admin(write, s.handlePutPolicy))
	if c := s.cfg.Compliance; c != nil {
		mux.HandleFunc("GET /api/v1/compliance", s.admin(readOnly, c.ServeCompliance))
		mux.HandleFunc("GET /api/v1/alerts", s.admin(readOnly, c.ServeAlerts))
	}
	mux.HandleFunc("GET /api/v1/checkpoint", s.admin(readOnly, s.handleCheckpoint))
	mux.HandleFunc("GET /api/v1/export", s.admin(readOnly, s.handleExport))
	if s.cfg.Revocation != nil {
		mux.HandleFunc("GET /api/v1/tokens", s.admin(readOnly, s.handleListTokens))
		mux.HandleFunc("DELETE /api/v1/tokens/{id}", s.admin(write, s.handleRevokeToken))
		mux.HandleFunc("POST /api/v1/agents/{id}/disable", s.admin(write, s.handleSetAgentDisabled(true)))
		mux.HandleFunc("POST /api/v1/agents/{id}/enable", s.admin(write, s.handleSetAgentDisabled(false)))
		mux.HandleFunc("POST "+wire.PathRenew, s.agent(s.handleRenew))
	}
	s.registerRoutes(mux)
	s.adminRoutes(mux)
	mux.HandleFunc("/api/v1/", s.admin(readOnly, func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "no such resource")
	}))
	return mux
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Health != nil {
		if err := s.cfg.Health(); err != nil {
			s.writeJSON(w, r, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
	}
	s.writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}
