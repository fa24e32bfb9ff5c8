// Package pki is the Mamori certificate authority: it keeps the CA and the
// server certificate in the data directory, signs agents' client certificates
// from their CSRs, and gives the server's TLS 1.3 configuration. Agents pin the
// CA by its SHA-256 fingerprint, as `kubeadm join --discovery-token-ca-cert-hash`
// does. The package uses only the standard library and shared/securefs (for
// private key files), so the agent can link it.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mamori/mamori/shared/securefs"
)

// File names in the data directory.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
)

// Validity periods.
const (
	caValidity     = 10 * 365 * 24 * time.Hour
	serverValidity = 365 * 24 * time.Hour
	agentValidity  = 365 * 24 * time.Hour
	renewBefore    = 30 * 24 * time.Hour
	// backdate tolerates clocks a little behind the server's.
	backdate = 5 * time.Minute
)

// AgentURIPrefix starts the URI SAN that names an agent: "mamori://agent/<id>".
const AgentURIPrefix = "mamori://agent/"

// PeerURIPrefix marks a server's peer certificate (PeerCert): a standby
// presents it to the writer to have its admin records appended. Only a
// holder of the CA key can issue one; enrollment issues agent names only.
const PeerURIPrefix = "mamori://server/"

// maxCSRBytes bounds the CSR PEM accepted by SignAgent.
const maxCSRBytes = 16 << 10

// Authority is a loaded CA with its server certificate. It is safe for
// concurrent use.
type Authority struct {
	caCert *x509.Certificate
	caKey  crypto.Signer
	caPEM  []byte
	pool   *x509.CertPool
	server tls.Certificate
	now    func() time.Time
}

// LoadOrCreate loads the CA from dataDir (ca.pem, ca-key.pem) or creates one
// (ECDSA P-256, 10 years, "Mamori CA"), and loads or issues the server
// certificate (server.pem, server-key.pem) for hostnames: DNS names and IP
// addresses; empty means localhost, 127.0.0.1 and ::1. The server certificate
// is re-issued when the set of names changes, when it is within 30 days of
// expiry, or when it is not from this CA. Key files are written with mode 0600.
func LoadOrCreate(dataDir string, hostnames []string) (*Authority, error) {
	return loadOrCreate(dataDir, hostnames, time.Now)
}

func loadOrCreate(dataDir string, hostnames []string, now func() time.Time) (*Authority, error) {
	names, ips, err := splitNames(hostnames)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: data dir: %w", err)
	}
	a := &Authority{now: now}
	if err := a.loadOrCreateCA(dataDir); err != nil {
		return nil, err
	}
	if err := a.loadOrIssueServer(dataDir, names, ips); err != nil {
		return nil, err
	}
	return a, nil
}

// CheckNames reports whether each name is a DNS name or an IP address a
// server certificate can carry.
func CheckNames(hostnames []string) error {
	for _, h := range hostnames {
		if strings.TrimSpace(h) == "" {
			return errors.New("pki: empty host name")
		}
	}
	_, _, err := splitNames(hostnames)
	return err
}

// splitNames normalises hostnames into sorted, de-duplicated DNS names and IPs.
func splitNames(hostnames []string) ([]string, []net.IP, error) {
	if len(hostnames) == 0 {
		hostnames = []string{"localhost", "127.0.0.1", "::1"}
	}
	var names []string
	var ips []net.IP
	for _, h := range hostnames {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if !validDNSName(h) {
			return nil, nil, fmt.Errorf("pki: %q is neither an IP address nor a DNS name", h)
		}
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	slices.Sort(names)
	return names, sortIPs(ips), nil
}

func validDNSName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '*' && i == 0 && len(label) == 1) {
				return false
			}
		}
	}
	return true
}

// loadOrCreateCA loads the CA pair, or creates it when neither file exists.
// A certificate without its key is an error: agents have pinned that CA, and a
// new one would strand them all.
func (a *Authority) loadOrCreateCA(dir string) error {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	switch {
	case cerr == nil && kerr == nil:
		if err := tightenMode(keyPath); err != nil {
			return err
		}
		return a.setCA(certPEM, keyPEM)
	case cerr == nil && errors.Is(kerr, os.ErrNotExist):
		return fmt.Errorf("pki: %s exists but %s is missing: restore it from backup (a new CA would invalidate every enrolled agent)", certPath, keyPath)
	case cerr != nil && !errors.Is(cerr, os.ErrNotExist):
		return fmt.Errorf("pki: read CA: %w", cerr)
	case kerr != nil && !errors.Is(kerr, os.ErrNotExist):
		return fmt.Errorf("pki: read CA key: %w", kerr)
	}
	// No certificate: nobody can have pinned this CA yet, so (re)create it,
	// overwriting a key left over from an interrupted first start.
	certPEM, keyPEM, err := newCA(a.now())
	if err != nil {
		return err
	}
	// Key first: a crash in between leaves a key without a certificate, which
	// the next start replaces.
	if err := securefs.WriteSecretFile(keyPath, keyPEM); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := securefs.WriteFile(certPath, certPEM, 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return a.setCA(certPEM, keyPEM)
}

// setCA parses and checks the CA pair.
func (a *Authority) setCA(certPEM, keyPEM []byte) error {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("pki: CA: %w", err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("pki: CA: certificate is not a CA certificate")
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("pki: CA key: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return errors.New("pki: CA key does not match the CA certificate")
	}
	a.caCert, a.caKey = cert, key
	a.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	a.pool = x509.NewCertPool()
	a.pool.AddCert(cert)
	return nil
}

// GenerateCA makes a new CA (ECDSA P-256, 10 years, "Mamori CA") in memory
// and returns its certificate and PKCS#8 key in PEM, for a cluster whose keys
// are kept elsewhere than in a data dir (server/internal/keyring).
func GenerateCA() (certPEM, keyPEM []byte, err error) { return newCA(time.Now()) }

func newCA(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Mamori CA", Organization: []string{"Mamori"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: create CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: encode CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// ReadCA returns the CA pair kept in dataDir (ca.pem, ca-key.pem). It
// returns an error wrapping fs.ErrNotExist when the key file is not there
// (a data dir that never had a CA, or one whose CA is kept elsewhere).
func ReadCA(dataDir string) (certPEM, keyPEM []byte, err error) {
	keyPath := filepath.Join(dataDir, CAKeyFile)
	if keyPEM, err = os.ReadFile(keyPath); err != nil {
		return nil, nil, fmt.Errorf("pki: read CA key: %w", err)
	}
	if certPEM, err = os.ReadFile(filepath.Join(dataDir, CAFile)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// A key without a certificate is an interrupted first start.
			return nil, nil, fmt.Errorf("pki: %s without its certificate: %w", keyPath, err)
		}
		return nil, nil, fmt.Errorf("pki: read CA: %w", err)
	}
	a := &Authority{}
	if err := a.setCA(certPEM, keyPEM); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// CheckCA reports whether a PEM certificate and key form a usable CA pair.
func CheckCA(certPEM, keyPEM []byte) error { return (&Authority{}).setCA(certPEM, keyPEM) }

// Fingerprint returns "sha256:<hex>" of the PEM certificate, as agents pin it.
func Fingerprint(certPEM []byte) (string, error) {
	c, err := parseCertPEM(certPEM)
	if err != nil {
		return "", fmt.Errorf("pki: %w", err)
	}
	return fingerprint(c.Raw), nil
}

// Open is LoadOrCreate for a CA given in memory (PEM certificate and key,
// as GenerateCA makes them): it writes no CA file, and loads or issues this
// node's server certificate in dataDir for hostnames as LoadOrCreate does.
func Open(dataDir string, hostnames []string, caCertPEM, caKeyPEM []byte) (*Authority, error) {
	names, ips, err := splitNames(hostnames)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: data dir: %w", err)
	}
	a := &Authority{now: time.Now}
	if err := a.setCA(caCertPEM, caKeyPEM); err != nil {
		return nil, err
	}
	if err := a.loadOrIssueServer(dataDir, names, ips); err != nil {
		return nil, err
	}
	return a, nil
}

// loadOrIssueServer keeps the server certificate if it still fits, else issues one.
func (a *Authority) loadOrIssueServer(dir string, names []string, ips []net.IP) error {
	certPath, keyPath := filepath.Join(dir, ServerFile), filepath.Join(dir, ServerKeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if cerr == nil && kerr == nil {
		if err := tightenMode(keyPath); err != nil {
			return err
		}
		if pair, ok := a.serverStillGood(certPEM, keyPEM, names, ips); ok {
			a.server = pair
			return nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: generate server key: %w", err)
	}
	cn := "mamori-server"
	if len(names) > 0 {
		cn = names[0]
	} else if len(ips) > 0 {
		cn = ips[0].String()
	}
	now := a.now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Mamori"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(serverValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, key.Public(), a.caKey)
	if err != nil {
		return fmt.Errorf("pki: issue server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: encode server key: %w", err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := securefs.WriteSecretFile(keyPath, keyPEM); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := securefs.WriteFile(certPath, certPEM, 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	pair, err := tls.X509KeyPair(append(certPEM, a.caPEM...), keyPEM)
	if err != nil {
		return fmt.Errorf("pki: server key pair: %w", err)
	}
	a.server = pair
	return nil
}

// serverStillGood reports whether the stored server pair is from this CA,
// names exactly these names and has more than 30 days left.
func (a *Authority) serverStillGood(certPEM, keyPEM []byte, names []string, ips []net.IP) (tls.Certificate, bool) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, false
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || cert.CheckSignatureFrom(a.caCert) != nil {
		return tls.Certificate{}, false
	}
	if a.now().Add(renewBefore).After(cert.NotAfter) {
		return tls.Certificate{}, false
	}
	haveIPs := sortIPs(slices.Clone(cert.IPAddresses))
	haveNames := slices.Clone(cert.DNSNames)
	slices.Sort(haveNames)
	if !slices.Equal(haveNames, names) || !slices.EqualFunc(haveIPs, ips, net.IP.Equal) {
		return tls.Certificate{}, false
	}
	// Serve the chain so clients that pin the CA see it too.
	pair.Certificate = [][]byte{pair.Certificate[0], a.caCert.Raw}
	pair.Leaf = cert
	return pair, true
}

// sortIPs orders IPs by their 16-byte form, so v4 and v4-in-v6 compare alike.
func sortIPs(ips []net.IP) []net.IP {
	slices.SortFunc(ips, func(a, b net.IP) int { return bytes.Compare(a.To16(), b.To16()) })
	return ips
}

// CertPEM returns the CA certificate in PEM, as written to ca.pem.
func (a *Authority) CertPEM() []byte { return slices.Clone(a.caPEM) }

// Fingerprint returns "sha256:<hex>" over the CA certificate's DER bytes.
func (a *Authority) Fingerprint() string { return fingerprint(a.caCert.Raw) }

// SignAgent checks a CSR (PEM; valid self-signature; key ECDSA P-256/P-384,
// Ed25519 or RSA of at least 2048 bits) and issues a one-year client
// certificate for agentID: Subject CN = agentID, URI SAN mamori://agent/<id>,
// extended key usage client auth only. Only the CSR's public key is used; its
// names are ignored. It returns the certificate PEM and its serial in hex.
func (a *Authority) SignAgent(csrPEM []byte, agentID string) (certPEM []byte, serial string, err error) {
	if !ValidAgentID(agentID) {
		return nil, "", fmt.Errorf("pki: agent id %q must be 1..64 letters, digits, - or _", agentID)
	}
	if len(csrPEM) > maxCSRBytes {
		return nil, "", fmt.Errorf("pki: CSR is %d bytes, limit %d", len(csrPEM), maxCSRBytes)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") {
		return nil, "", errors.New("pki: CSR is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("pki: parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", fmt.Errorf("pki: CSR signature: %w", err)
	}
	if err := checkAgentKey(csr.PublicKey); err != nil {
		return nil, "", err
	}
	u, err := url.Parse(AgentURIPrefix + agentID)
	if err != nil {
		return nil, "", fmt.Errorf("pki: agent URI: %w", err)
	}
	sn := randomSerial()
	now := a.now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: agentID, Organization: []string{"Mamori agents"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(agentValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, csr.PublicKey, a.caKey)
	if err != nil {
		return nil, "", fmt.Errorf("pki: issue agent certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), hex.EncodeToString(sn.Bytes()), nil
}

// checkAgentKey accepts ECDSA P-256/P-384, Ed25519 and RSA >= 2048 bits.
func checkAgentKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("pki: ECDSA curve %s not accepted (P-256 or P-384)", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return fmt.Errorf("pki: RSA key of %d bits not accepted (2048..8192)", n)
		}
	default:
		return fmt.Errorf("pki: key type %T not accepted", pub)
	}
	return nil
}

// ServerTLS returns the server's TLS configuration: TLS 1.3 only, the server
// certificate, and client certificates verified against the CA when given.
// The admin plane shares the port without client certificates, so handlers of
// the agent plane must call AgentID themselves.
func (a *Authority) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{a.server},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    a.pool,
	}
}

// Pool returns a certificate pool holding only this CA, for clients and tests.
func (a *Authority) Pool() *x509.CertPool { return a.pool.Clone() }

// AgentID returns the agent id from a client certificate that the TLS stack
// verified against the CA (ServerTLS), or "", false when there is none or it
// is not an agent certificate.
func AgentID(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := cs.VerifiedChains[0][0]
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return "", false
	}
	id := leaf.Subject.CommonName
	if !ValidAgentID(id) {
		return "", false
	}
	for _, u := range leaf.URIs {
		if u.String() == AgentURIPrefix+id {
			return id, true
		}
	}
	return "", false
}

// PeerCert issues this server's client certificate for talking to the other
// servers of the site: CN and URI SAN mamori://server/<node>, client auth
// only. It lives in memory and is issued afresh at each start.
func (a *Authority) PeerCert(node string) (tls.Certificate, error) {
	if node == "" || len(node) > 255 || strings.ContainsAny(node, "/?# ") {
		return tls.Certificate{}, fmt.Errorf("pki: peer name %q must be a host[:port]", node)
	}
	u, err := url.Parse(PeerURIPrefix + node)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: peer URI: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: generate peer key: %w", err)
	}
	now := a.now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: node, Organization: []string{"Mamori"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(serverValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, key.Public(), a.caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue peer certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: peer certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, a.caCert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// PeerServer returns the node name of another server of the site from a
// client certificate the TLS stack verified against the CA, or "", false.
func PeerServer(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := cs.VerifiedChains[0][0]
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return "", false
	}
	for _, u := range leaf.URIs {
		if node, ok := strings.CutPrefix(u.String(), PeerURIPrefix); ok && node == leaf.Subject.CommonName && node != "" {
			return node, true
		}
	}
	return "", false
}

// ValidAgentID reports whether id is a well-formed agent id: 1..64 ASCII
// letters, digits, '-' or '_'.
func ValidAgentID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// NewAgentID returns a fresh random agent id: "ag-" and 16 hex digits.
func NewAgentID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "ag-" + hex.EncodeToString(b[:])
}

// randomSerial returns a positive 128-bit serial number.
func randomSerial() *big.Int {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[0] &= 0x7f
	b[0] |= 0x01 // never zero, never a leading zero byte
	return new(big.Int).SetBytes(b[:])
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("not a PEM key")
	}
	var k any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM type %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key type %T cannot sign", k)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

// tightenMode makes a key file private again if someone loosened it.
func tightenMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("pki: make %s private: %w", path, err)
		}
	}
	return nil
}
