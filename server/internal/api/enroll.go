package api

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// handleEnroll turns a valid enrollment token and a CSR into an agent
// identity. The CSR is checked before the token is consumed, so a broken
// request does not use up the token.
func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	var req wire.EnrollRequest
	if err := decodeStrict(w, r, wire.MaxEnrollBody, &req); err != nil {
		s.fail(w, r, statusOf(err), err.Error())
		return
	}
	if err := validateEnroll(&req); err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	tok, err := s.cfg.State.ConsumeEnrollToken(r.Context(), req.Token)
	if err != nil {
		if errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrNotFound) {
			s.fail(w, r, http.StatusUnauthorized, "enrollment token invalid, expired or used up")
			return
		}
		s.internal(w, r, "enrollment token", err)
		return
	}
	id := s.cfg.NewAgentID()
	certPEM, serial, err := s.cfg.CA.SignAgent([]byte(req.CSR), id)
	if err != nil {
		// The CSR passed our checks, so this is the CA's failure.
		s.internal(w, r, "signing certificate", err)
		return
	}
	dept := req.Department
	if dept == "" {
		dept = tok.Department
	}
	// A host name already enrolled: the PC enrolled again under a new
	// identity (a clean chain for whatever it did before; or a PC
	// reinstalled, or one name reused). Said as a warning naming them.
	var same []string
	if as, err := s.cfg.State.ListAgents(r.Context()); err != nil {
		s.log.Warn().Err(err).Msg("api: enroll: listing agents for the host name")
	} else {
		for _, o := range as {
			if strings.EqualFold(o.Hostname, req.Hostname) {
				same = append(same, o.ID)
			}
		}
	}
	a := Agent{ID: id, Hostname: req.Hostname, OS: req.OS, Arch: req.Arch, OSVersion: req.OSVersion,
		Department: dept, CertSerial: serial, Enrolled: time.Now().UTC()}
	if err := s.cfg.State.PutAgent(r.Context(), a); err != nil {
		s.internal(w, r, "storing agent", err)
		return
	}
	s.rememberAgent(id)
	s.metrics.enrollments.Inc()
	ev := event.Event{Type: "agent.enrolled", Object: id, User: tok.CreatedBy, Attrs: event.Attrs{
		"agent": id, "hostname": a.Hostname, "os": a.OS, "arch": a.Arch, "department": a.Department,
		"cert_serial": serial, "enroll_token_id": tok.ID,
	}}
	if len(same) > 0 {
		ev.Severity = event.Warning
		ev.Attrs["same_hostname_as"] = strings.Join(same, ", ")
	}
	s.record(r, ev)
	s.log.Info().Str("agent", id).Str("hostname", a.Hostname).Str("token_id", tok.ID).Msg("api: agent enrolled")
	s.writeJSON(w, r, http.StatusOK, wire.EnrollResponse{AgentID: id, Certificate: string(certPEM), CA: string(s.cfg.CA.CertPEM())})
}

func validateEnroll(req *wire.EnrollRequest) error {
	if req.Token == "" {
		return errors.New("token missing")
	}
	for _, f := range []struct {
		name, v string
		max     int
		req     bool
	}{
		{"hostname", req.Hostname, wire.MaxHostnameLen, true},
		{"os", req.OS, 32, true},
		{"arch", req.Arch, 32, true},
		{"os_version", req.OSVersion, wire.MaxOSVersion, false},
		{"department", req.Department, event.MaxIDLen, false},
	} {
		if f.req && strings.TrimSpace(f.v) == "" {
			return fmt.Errorf("%s missing", f.name)
		}
		if len(f.v) > f.max {
			return fmt.Errorf("%s is %d bytes, limit %d", f.name, len(f.v), f.max)
		}
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%s: invalid UTF-8", f.name)
		}
	}
	blk, rest := pem.Decode([]byte(req.CSR))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" || strings.TrimSpace(string(rest)) != "" {
		return errors.New("csr: want one PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return fmt.Errorf("csr: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("csr: signature: %v", err)
	}
	return nil
}

// errTooLargeBody marks a JSON request body over its limit (413).
var errTooLargeBody = errors.New("request body too large")

type statusErr struct {
	status int
	err    error
}

func (e *statusErr) Error() string { return e.err.Error() }
func (e *statusErr) Unwrap() error { return e.err }

func statusOf(err error) int {
	var se *statusErr
	if errors.As(err, &se) {
		return se.status
	}
	return http.StatusBadRequest
}

// decodeStrict reads one JSON object of at most max bytes into v: valid
// UTF-8, no unknown fields, nothing after it.
func decodeStrict(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &statusErr{http.StatusRequestEntityTooLarge, fmt.Errorf("%w: limit %d bytes", errTooLargeBody, max)}
		}
		return fmt.Errorf("reading body: %v", err)
	}
	if !utf8.Valid(b) {
		return errors.New("body is not valid UTF-8")
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("malformed JSON: data after the object")
	}
	return nil
}
