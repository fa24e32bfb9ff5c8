package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
)

// ErrRevoked is the handshake error for a revoked client certificate.
var ErrRevoked = errors.New("pki: client certificate revoked")

// Revocations is the set of revoked agent certificate serials, checked in
// the TLS handshake (VerifyConnection) so that a disabled agent or a
// replaced certificate is refused before any request is read. It is filled
// from etcd (state.WatchRevoked) and safe for concurrent use.
type Revocations struct {
	mu  sync.RWMutex
	set map[string]bool
}

// Replace sets the whole list (lower-case hex serials).
func (r *Revocations) Replace(m map[string]bool) {
	r.mu.Lock()
	r.set = m
	r.mu.Unlock()
}

// Revoked reports whether the serial (hex, any case) is revoked.
func (r *Revocations) Revoked(serial string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.set[strings.ToLower(serial)]
}

// Serial is a certificate's serial as SignAgent reports it.
func Serial(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// VerifyConnection refuses a handshake whose client certificate is revoked;
// set it as tls.Config.VerifyConnection.
func (r *Revocations) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) > 0 && r.Revoked(Serial(cs.PeerCertificates[0])) {
		return ErrRevoked
	}
	return nil
}
