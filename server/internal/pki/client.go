package pki

// The agent links this package for enrollment: keep it to the standard library.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// fingerprintPrefix starts every CA fingerprint, as in kubeadm's
// --discovery-token-ca-cert-hash.
const fingerprintPrefix = "sha256:"

// NewKeyAndCSR returns a fresh ECDSA P-256 private key (PKCS #8 PEM) and a
// certificate signing request for it (PEM). The CSR's subject is informative
// only: the CA names the certificate after the agent id it assigns.
func NewKeyAndCSR(hostname string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: encode key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: hostname},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), nil
}

// fingerprint returns "sha256:<hex>" over a certificate's DER bytes.
func fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return fingerprintPrefix + hex.EncodeToString(h[:])
}

// CheckFingerprint verifies that caPEM holds exactly one certificate whose
// fingerprint is want ("sha256:<64 hex digits>", case-insensitive). The
// comparison runs in constant time.
func CheckFingerprint(caPEM []byte, want string) error {
	want = strings.ToLower(strings.TrimSpace(want))
	hexPart, ok := strings.CutPrefix(want, fingerprintPrefix)
	if !ok || len(hexPart) != 2*sha256.Size {
		return fmt.Errorf("pki: CA hash %q is not of the form sha256:<64 hex digits>", want)
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return fmt.Errorf("pki: CA hash %q is not of the form sha256:<64 hex digits>", want)
	}
	block, rest := pem.Decode(caPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return errors.New("pki: CA is not a PEM certificate")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return errors.New("pki: CA PEM holds more than one block")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	got := fingerprint(block.Bytes)
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return fmt.Errorf("pki: CA fingerprint mismatch: server sent %s, expected %s (wrong server or a man in the middle)", got, want)
	}
	return nil
}
