// Package uplink connects the agent to its server: enrollment with a pinned
// CA (as kubeadm join does), the mTLS client, the batch shipper that drains
// the spool, and the policy long-poll.
//
// Everything here is standard library plus shared/: the agent never links
// server code.
package uplink

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Files in the agent's state dir.
const (
	FileAgent  = "agent.json"
	FileKey    = "key.pem"
	FileCert   = "cert.pem"
	FileCA     = "ca.pem"
	FilePolicy = "policy.json"
)

// State is the agent's identity as saved in agent.json.
type State struct {
	AgentID    string    `json:"agent_id"`
	Server     string    `json:"server"` // base URL, https://host:port
	Department string    `json:"department,omitempty"`
	Enrolled   time.Time `json:"enrolled"`
}

// ErrNotEnrolled is returned by LoadState when the state dir holds no identity.
var ErrNotEnrolled = errors.New("uplink: not enrolled (run mamori-agent enroll first)")

// LoadState reads agent.json from dir.
func LoadState(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileAgent))
	if errors.Is(err, os.ErrNotExist) {
		return State{}, ErrNotEnrolled
	}
	if err != nil {
		return State{}, fmt.Errorf("uplink: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("uplink: %s: %w", FileAgent, err)
	}
	if st.AgentID == "" || st.Server == "" {
		return State{}, fmt.Errorf("uplink: %s: agent_id or server missing", FileAgent)
	}
	return st, nil
}

// Fingerprint returns "sha256:" + lowercase hex of SHA-256 over a
// certificate's DER bytes, the form --ca-hash takes.
func Fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(h[:])
}

// ParseCAHash checks that s is "sha256:<64 hex digits>" and returns it in
// lowercase.
func ParseCAHash(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 2*sha256.Size {
		return "", fmt.Errorf("uplink: CA hash %q is not of the form sha256:<64 hex digits>", s)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", fmt.Errorf("uplink: CA hash %q is not of the form sha256:<64 hex digits>", s)
	}
	return s, nil
}

// matchFingerprint compares in constant time.
func matchFingerprint(der []byte, want string) bool {
	return subtle.ConstantTimeCompare([]byte(Fingerprint(der)), []byte(want)) == 1
}

// Identity is what the mTLS client needs, loaded from the state dir.
type Identity struct {
	State State
	Cert  tls.Certificate // as loaded; after a renewal Certificate returns the current one
	CAs   *x509.CertPool
	Proxy string // from the installed config; empty = the system's

	cur  atomic.Pointer[tls.Certificate] // set by SetCertificate; nil = Cert
	rtMu sync.Mutex
	rt   *rotatingTransport // made by the first HTTPClient
}

// LoadIdentity reads agent.json, key.pem, cert.pem and ca.pem from dir,
// first finishing or undoing a renewal a crash interrupted.
func LoadIdentity(dir string) (*Identity, error) {
	st, err := LoadState(dir)
	if err != nil {
		return nil, err
	}
	if err := recoverRenewal(dir); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, FileCert), filepath.Join(dir, FileKey))
	if err != nil {
		return nil, fmt.Errorf("uplink: key pair: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, FileCA))
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("uplink: %s holds no certificate", FileCA)
	}
	id := &Identity{State: st, Cert: cert, CAs: pool}
	if c, err := LoadConfig(dir); err == nil {
		id.Proxy = c.Proxy
	} else if !errors.Is(err, ErrNoConfig) {
		return nil, err
	}
	return id, nil
}

// Certificate is the client certificate the agent presents now: the loaded
// one, or the latest renewal's.
func (id *Identity) Certificate() *tls.Certificate {
	if c := id.cur.Load(); c != nil {
		return c
	}
	return &id.Cert
}

// Leaf parses the current certificate.
func (id *Identity) Leaf() (*x509.Certificate, error) {
	c := id.Certificate()
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("uplink: identity holds no certificate")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("uplink: certificate: %w", err)
	}
	return leaf, nil
}

// SetCertificate makes c the certificate every new connection presents,
// without a restart. Requests already under way (a held policy long-poll)
// finish on their connection; every later request of every client of id
// goes over a new connection with c, so the server sees c at once.
func (id *Identity) SetCertificate(c tls.Certificate) {
	id.cur.Store(&c)
	id.rtMu.Lock()
	rt := id.rt
	id.rtMu.Unlock()
	if rt != nil {
		rt.rotate(id.makeTransport())
	}
}

// TLSConfig is the agent's client side: TLS 1.3 only, the current
// certificate (read at each handshake, so a renewal applies to the next
// connection), and the Mamori CA as the only root.
func (id *Identity) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return id.Certificate(), nil
		},
		RootCAs: id.CAs,
	}
}

// HTTPClient returns an mTLS client. timeout bounds each request; the policy
// long-poll needs one longer than its wait. Every client of one Identity
// shares one transport, so over HTTP/2 the shipper's batches and the
// policy long-poll travel on one connection (the server holds one per agent,
// not two).
func (id *Identity) HTTPClient(timeout time.Duration) *http.Client {
	id.rtMu.Lock()
	defer id.rtMu.Unlock()
	if id.rt == nil {
		id.rt = &rotatingTransport{}
		id.rt.cur.Store(id.makeTransport())
	}
	return &http.Client{Timeout: timeout, Transport: id.rt}
}

func (id *Identity) makeTransport() *http.Transport {
	return &http.Transport{
		Proxy:               ProxyFunc(id.Proxy),
		TLSClientConfig:     id.TLSConfig(),
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
}

// rotatingTransport sends each request through the current transport. A
// renewal puts in a new one: connections made with the old certificate take
// no new requests, and close once idle.
type rotatingTransport struct {
	cur atomic.Pointer[http.Transport]
}

func (t *rotatingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.cur.Load().RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// current transport.
func (t *rotatingTransport) CloseIdleConnections() { t.cur.Load().CloseIdleConnections() }

func (t *rotatingTransport) rotate(next *http.Transport) {
	// Idle connections go now; one busy with a held long-poll finishes it
	// and then goes idle, and IdleConnTimeout closes it.
	t.cur.Swap(next).CloseIdleConnections()
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
