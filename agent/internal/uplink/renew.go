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
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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

// Renew asks the server at base (empty: the enrolled server) for a
// certificate for a new key with the agent's current certificate (same agent
// id), checks it, saves key.pem and cert.pem crash-safely, and makes id
// present it on every later request (SetCertificate). The server revokes the
// old certificate once the agent uses the new one, so a lost answer leaves
// the old one working for a retry. It returns the new certificate.
func Renew(ctx context.Context, dir, base string, id *Identity) (*x509.Certificate, error) {
	if base == "" {
		base = id.State.Server
	}
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+wire.PathRenew, bytes.NewReader(body))
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
	if err := saveRenewed(dir, keyPEM, certPEM); err != nil {
		return nil, err
	}
	pair.Leaf = leaf
	id.SetCertificate(pair)
	return leaf, nil
}

// Names of a renewed pair before it replaces key.pem and cert.pem.
const (
	fileKeyNew  = FileKey + ".new"
	fileCertNew = FileCert + ".new"
)

// renewStep is called after each step of saveRenewed; tests make it fail
// to stop there as a crash would.
var renewStep = func(step int) error { return nil }

// saveRenewed replaces key.pem and cert.pem so that a crash at any point
// leaves a state recoverRenewal turns into a matching pair: both new files
// are written whole first (each through a synced temp file), then key.pem
// is replaced, then cert.pem. key.pem.new present means the swap has not
// begun; cert.pem.new alone means key.pem is new already.
func saveRenewed(dir string, keyPEM, certPEM []byte) error {
	steps := []func() error{
		func() error { return WriteFileAtomic(filepath.Join(dir, fileKeyNew), keyPEM) },
		func() error { return WriteFileAtomic(filepath.Join(dir, fileCertNew), certPEM) },
		func() error { return rename(dir, fileKeyNew, FileKey) },
		func() error { return rename(dir, fileCertNew, FileCert) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("uplink: renew: save: %w", err)
		}
		if err := renewStep(i); err != nil {
			return err
		}
	}
	return nil
}

// recoverRenewal finishes or undoes a saveRenewed a crash interrupted.
func recoverRenewal(dir string) error {
	keyNew, certNew := exists(dir, fileKeyNew), exists(dir, fileCertNew)
	switch {
	case keyNew && certNew: // both written, nothing replaced: finish if they pair
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, fileCertNew), filepath.Join(dir, fileKeyNew)); err != nil {
			return errors.Join(os.Remove(filepath.Join(dir, fileKeyNew)), os.Remove(filepath.Join(dir, fileCertNew)))
		}
		if err := rename(dir, fileKeyNew, FileKey); err != nil {
			return err
		}
		return rename(dir, fileCertNew, FileCert)
	case certNew: // key.pem is the new key already
		return rename(dir, fileCertNew, FileCert)
	case keyNew: // the certificate was never saved: the old pair stands
		if err := os.Remove(filepath.Join(dir, fileKeyNew)); err != nil {
			return fmt.Errorf("uplink: renew: recover: %w", err)
		}
	}
	return nil
}

func rename(dir, from, to string) error {
	if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
		return fmt.Errorf("uplink: renew: %w", err)
	}
	return nil
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}
