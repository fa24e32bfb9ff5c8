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
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/mamori/mamori/agent/internal/host"
	"github.com/mamori/mamori/shared/securefs"
	"github.com/mamori/mamori/shared/wire"
)

// EnrollOptions are the inputs of Enroll.
type EnrollOptions struct {
	Server     string // https://host:port
	Token      string
	CAHash     string // sha256:<hex> of the server's CA certificate
	StateDir   string
	Department string
	Hostname   string // default os.Hostname
	OSVersion  string
	Proxy      string // HTTP proxy URL; empty = the system's (ProxyFunc)
}

// CheckServerURL accepts only an https URL with a host and no path beyond "/".
func CheckServerURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err == nil && u.User != nil {
		// Not echoed: it may hold a password. The agent authenticates with
		// its certificate, so a user name would be dropped silently.
		return "", errors.New("uplink: the server URL holds a user name or password: give https://host:port")
	}
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("uplink: server %q: want https://host:port", s)
	}
	return "https://" + u.Host, nil
}

// FetchCA reads the server's certificate chain from a TLS handshake made
// without verification (through the proxy, if any) and returns the
// certificate whose fingerprint is caHash. Nothing from that connection is
// trusted until the hash matched; from then on the CA is pinned.
func FetchCA(ctx context.Context, server, caHash, proxy string) (*x509.Certificate, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	var chain []*x509.Certificate
	tr := &http.Transport{
		Proxy: ProxyFunc(proxy),
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS13,
			InsecureSkipVerify: true, // only to read the chain; checked against caHash below
			ServerName:         u.Hostname(),
			VerifyConnection: func(cs tls.ConnectionState) error {
				chain = cs.PeerCertificates
				return nil
			},
		},
		TLSHandshakeTimeout: 10 * time.Second,
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+u.Host+"/healthz", nil)
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil && chain == nil {
		return nil, fmt.Errorf("uplink: connect to %s: %w (is mamori-server running there, are host and port right, does a firewall or proxy block it?)", u.Host, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	for _, cert := range chain {
		if cert.IsCA && matchFingerprint(cert.Raw, caHash) {
			return cert, nil
		}
	}
	return nil, fmt.Errorf("uplink: no certificate from %s matches %s (wrong server, wrong hash, or a man in the middle)", u.Host, caHash)
}

// Enroll generates a key pair on this machine, has the server certify it
// with the enrollment token, and saves the identity in the state dir. An
// existing enrollment in the dir is an error: re-enrolling would fork the
// agent's event chain.
func Enroll(ctx context.Context, opt EnrollOptions) (_ State, err error) {
	// Pasted values carry spaces and a Windows file's "\r": a token with
	// them would be refused with 401.
	for _, p := range []*string{&opt.Server, &opt.Token, &opt.CAHash, &opt.Department, &opt.Proxy} {
		*p = strings.TrimSpace(*p)
	}
	server, err := CheckServerURL(opt.Server)
	if err != nil {
		return State{}, err
	}
	caHash, err := ParseCAHash(opt.CAHash)
	if err != nil {
		return State{}, err
	}
	if opt.Token == "" {
		return State{}, errors.New("uplink: enrollment token missing")
	}
	if strings.ContainsAny(opt.Token, " \t\r\n") {
		return State{}, errors.New("uplink: token contains white space")
	}
	if _, err := LoadState(opt.StateDir); err == nil {
		return State{}, fmt.Errorf("uplink: %s is already enrolled; remove it to enroll again", opt.StateDir)
	}
	// Prove the state dir writable before the server is asked: once it
	// answers, it has created the agent and used a use of the token, and a
	// failure to save would leave that agent orphaned.
	made, err := probeStateDir(opt.StateDir)
	if err != nil {
		return State{}, err
	}
	if made {
		// A refused enrollment leaves no dir behind (os.Remove only takes
		// it while empty, so a saved identity is never touched).
		defer func() {
			if err != nil {
				os.Remove(opt.StateDir)
			}
		}()
	}
	if opt.Hostname == "" {
		opt.Hostname, _ = os.Hostname()
	}
	if opt.OSVersion == "" {
		opt.OSVersion = host.OSVersion(ctx) // shown in the server's agent list
	}
	ca, err := FetchCA(ctx, server, caHash, opt.Proxy)
	if err != nil {
		return State{}, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return State{}, fmt.Errorf("uplink: generate key: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return State{}, fmt.Errorf("uplink: encode key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: opt.Hostname},
	}, key)
	if err != nil {
		return State{}, fmt.Errorf("uplink: create CSR: %w", err)
	}
	req := wire.EnrollRequest{
		Token: opt.Token, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		Hostname: opt.Hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, OSVersion: opt.OSVersion,
		Department: opt.Department,
	}
	body, _ := json.Marshal(req)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:           ProxyFunc(opt.Proxy),
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool},
	}}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, server+wire.PathEnroll, bytes.NewReader(body))
	if err != nil {
		return State{}, fmt.Errorf("uplink: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return State{}, fmt.Errorf("uplink: enroll: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxPolicyBody))
	if err != nil {
		return State{}, fmt.Errorf("uplink: enroll: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return State{}, fmt.Errorf("uplink: enroll: server answered %s: %s", resp.Status, errorText(rb))
	}
	var er wire.EnrollResponse
	if err := json.Unmarshal(rb, &er); err != nil {
		return State{}, fmt.Errorf("uplink: enroll: answer is not JSON: %w", err)
	}
	certPEM := []byte(er.Certificate)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return State{}, fmt.Errorf("uplink: enroll: certificate does not match our key: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return State{}, fmt.Errorf("uplink: enroll: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return State{}, fmt.Errorf("uplink: enroll: certificate not issued by the pinned CA: %w", err)
	}
	if er.AgentID == "" || leaf.Subject.CommonName != er.AgentID {
		return State{}, fmt.Errorf("uplink: enroll: agent id %q does not match certificate %q", er.AgentID, leaf.Subject.CommonName)
	}
	st := State{AgentID: er.AgentID, Server: server, Department: opt.Department, Enrolled: time.Now().UTC()}
	if err := saveEnrollment(opt.StateDir, st, keyPEM, certPEM, pemCert(ca.Raw)); err != nil {
		return State{}, err
	}
	return st, nil
}

// probeSize is about what saveEnrollment writes (key, certificate, CA,
// agent.json), so a nearly full disk fails the probe too.
const probeSize = 8 << 10

// probeStateDir makes the state dir and writes and removes a file of
// probeSize in it with the helpers saveEnrollment uses. made says the dir
// did not exist before.
func probeStateDir(dir string) (made bool, err error) {
	if _, serr := os.Lstat(dir); errors.Is(serr, os.ErrNotExist) {
		made = true
	}
	if err := MakeStateDir(dir); err != nil {
		return false, err
	}
	probe := filepath.Join(dir, ".enroll-probe")
	werr := WriteFileAtomic(probe, make([]byte, probeSize))
	os.Remove(probe)
	if werr != nil {
		if made {
			os.Remove(dir)
		}
		return false, fmt.Errorf("uplink: state dir %s is not writable: %w", dir, werr)
	}
	return made, nil
}

// saveEnrollment writes the identity; agent.json goes last so a crash half
// way leaves a dir that is still "not enrolled".
func saveEnrollment(dir string, st State, keyPEM, certPEM, caPEM []byte) error {
	if err := MakeStateDir(dir); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(st, "", "  ")
	for _, f := range []struct {
		name string
		b    []byte
	}{{FileKey, keyPEM}, {FileCert, certPEM}, {FileCA, caPEM}, {FileAgent, append(js, '\n')}} {
		if err := WriteFileAtomic(filepath.Join(dir, f.name), f.b); err != nil {
			return err
		}
	}
	return nil
}

// MakeStateDir creates dir readable only by root/SYSTEM (and Administrators
// on Windows) and tightens it when it exists.
func MakeStateDir(dir string) error {
	if err := securefs.ProtectDir(dir); err != nil {
		return fmt.Errorf("uplink: state dir: %w", err)
	}
	return nil
}

// WriteFileAtomic writes b to path privately (0600; its own protected DACL
// on Windows) through a synced temp file and a rename, so readers see the
// old or the new content, never a mix.
func WriteFileAtomic(path string, b []byte) error {
	if err := securefs.WriteSecretFile(path, b); err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	return nil
}

// errorText extracts wire.Error's message, or a bounded raw prefix.
func errorText(b []byte) string {
	var e wire.Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("%q", b)
}
