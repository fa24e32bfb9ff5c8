package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// renewals remembers, per agent, the serial its latest renewal replaced,
// so that the old certificate is revoked as soon as the agent uses the new
// one (and not before: a lost answer must not lock the agent out).
type renewals struct {
	mu   sync.Mutex
	prev map[string]string
}

// handleRenew signs a new certificate for a new key of the calling agent
// (same agent id, authenticated by its current certificate).
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	id := agentFrom(r.Context())
	var req wire.RenewRequest
	if err := decodeStrict(w, r, wire.MaxEnrollBody, &req); err != nil {
		s.fail(w, r, statusOf(err), err.Error())
		return
	}
	certPEM, serial, err := s.cfg.CA.SignAgent([]byte(req.CSR), id)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "csr: "+err.Error())
		return
	}
	a, err := s.cfg.Revocation.RenewAgentCert(r.Context(), id, serial)
	if err != nil {
		s.internal(w, r, "recording the renewed certificate", err)
		return
	}
	if a.PreviousSerial != "" {
		s.renewed.mu.Lock()
		s.renewed.prev[id] = a.PreviousSerial
		s.renewed.mu.Unlock()
	}
	s.record(r, event.Event{Type: "agent.cert_renewed", Object: "agent/" + id, User: id, Attrs: event.Attrs{
		"cert_serial": serial, "previous_serial": a.PreviousSerial}})
	s.writeJSON(w, r, http.StatusOK, wire.EnrollResponse{AgentID: id, Certificate: string(certPEM), CA: string(s.cfg.CA.CertPEM())})
}

// afterRenewal revokes an agent's replaced certificate once a request
// comes with another one (the renewed certificate).
func (s *Server) afterRenewal(r *http.Request, id string) {
	if len(r.TLS.PeerCertificates) == 0 {
		return
	}
	s.renewed.mu.Lock()
	prev, ok := s.renewed.prev[id]
	if ok && pki.Serial(r.TLS.PeerCertificates[0]) != prev {
		delete(s.renewed.prev, id)
	} else {
		ok = false
	}
	s.renewed.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	if err := s.cfg.Revocation.RevokePrevious(ctx, id, prev); err != nil {
		s.log.Error().Err(err).Str("agent", id).Msg("api: revoking the certificate a renewal replaced")
		s.renewed.mu.Lock()
		s.renewed.prev[id] = prev // try again on the next request
		s.renewed.mu.Unlock()
	}
}
