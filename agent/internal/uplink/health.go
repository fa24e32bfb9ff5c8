package uplink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"syscall"

	"github.com/rs/zerolog"
)

// Failure kinds, one log line each when they start and one on recovery.
const (
	KindWrongCA     = "tls_wrong_ca"       // server certificate not from the pinned CA
	KindTLS         = "tls_handshake"      // other TLS failures
	KindRefused     = "connection_refused" // nothing listening
	KindNetwork     = "network"            // timeouts, resets, DNS
	KindServerError = "http_5xx"
	KindBusy        = "server_busy" // 503 or 429 with Retry-After: the server is up and says when to come back
	KindRefusedReq  = "http_4xx"    // the server refused the request: bad batch, chain conflict
	KindGarbage     = "garbage_answer"
)

// classify names the kind of a transport error.
func classify(err error) string {
	var unk x509.UnknownAuthorityError
	var inv x509.CertificateInvalidError
	var hn x509.HostnameError
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unk), errors.As(err, &inv), errors.As(err, &cve):
		return KindWrongCA
	case errors.As(err, &hn):
		return KindWrongCA
	case errors.Is(err, syscall.ECONNREFUSED) || isRefusedWindows(err):
		return KindRefused
	}
	var rh tls.RecordHeaderError
	var alert tls.AlertError
	if errors.As(err, &rh) || errors.As(err, &alert) {
		return KindTLS
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return KindNetwork
	}
	return KindNetwork
}

// isRefusedWindows matches WSAECONNREFUSED (10061), which syscall does not
// map to ECONNREFUSED on Windows.
func isRefusedWindows(err error) bool {
	var en syscall.Errno
	return errors.As(err, &en) && uintptr(en) == 10061
}

// health logs transitions only: the first failure of a kind, a change of
// kind, and the recovery; retries of the same kind stay quiet.
type health struct {
	mu   sync.Mutex
	log  zerolog.Logger
	what string // "shipping", "policy sync"
	kind string // current failure kind, "" when healthy
	n    int    // failures since the kind started
}

func (h *health) fail(kind string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if kind == h.kind {
		return
	}
	h.kind, h.n = kind, 1
	h.log.Warn().Str("kind", kind).Err(err).Msgf("uplink: %s failing (%s); events are kept and retried", h.what, kind)
}

func (h *health) ok() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.kind == "" {
		return
	}
	h.log.Info().Str("kind", h.kind).Int("failures", h.n).Msgf("uplink: %s recovered", h.what)
	h.kind, h.n = "", 0
}

// Failing returns the current failure kind, "" when healthy.
func (h *health) current() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.kind
}
