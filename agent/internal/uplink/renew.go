package uplink

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/mamori/mamori/shared/wire"
)

// RenewDue reports whether a certificate should be renewed at now: once
// less than a third of its life is left, so that a year's certificate is
// renewed about four months before it expires, with time to retry.
func RenewDue(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Sub(now) < life/3
}

// Renew asks the server for a certificate for a new key with the agent's
// current certificate (same agent id), checks it, and saves key.pem and
// cert.pem. The server revokes the old certificate once the agent uses the
// new one, so a lost answer leaves the old one working for a retry. It
// returns the new identity; callers build new clients from it.
func Renew(ctx context.Context, dir string, id *Identity) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("uplink: renew: generate key: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("uplink: renew: encode key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id.State.AgentID}}, key)
	if err != nil {
		return nil, fmt.Errorf("uplink: renew: create CSR: %w", err)
	}
	body, _ := json.Marshal(wire.RenewRequest{CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, id.State.Server+wire.PathRenew, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("uplink: renew: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	c := id.HTTPClient(30 * time.Second)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("uplink: renew: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxPolicyBody))
	if err != nil {
		return nil, fmt.Errorf("uplink: renew: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("uplink: renew: server answered %s: %s", resp.Status, errorText(rb))
	}
	var er wire.EnrollResponse
	if err := json.Unmarshal(rb, &er); err != nil {
		return nil, fmt.Errorf("uplink: renew: answer is not JSON: %w", err)
	}
	certPEM := []byte(er.Certificate)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("uplink: renew: certificate does not match the new key: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("uplink: renew: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: id.CAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("uplink: renew: certificate not issued by our CA: %w", err)
	}
	if leaf.Subject.CommonName != id.State.AgentID || er.AgentID != id.State.AgentID {
		return nil, fmt.Errorf("uplink: renew: certificate is for %q, not this agent %q", leaf.Subject.CommonName, id.State.AgentID)
	}
	// Each file is replaced atomically; a crash between the two renames
	// leaves a key that does not match cert.pem (the agent must then enroll
	// again). The old certificate stays valid on the server until the new
	// one is used, so any failure before here is retried safely.
	if err := WriteFileAtomic(filepath.Join(dir, FileKey), keyPEM); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(filepath.Join(dir, FileCert), certPEM); err != nil {
		return nil, err
	}
	pair.Leaf = leaf
	return &Identity{State: id.State, Cert: pair, CAs: id.CAs}, nil
}
