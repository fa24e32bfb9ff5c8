package pki

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testHosts = []string{"localhost", "127.0.0.1", "mamori.example.jp"}

func newAuthority(t *testing.T) (*Authority, string) {
	t.Helper()
	dir := t.TempDir()
	a, err := LoadOrCreate(dir, testHosts)
	if err != nil {
		t.Fatal(err)
	}
	return a, dir
}

// handshake is what the server saw of one connection.
type handshake struct {
	err     error
	agentID string
	ok      bool
	peer    string // PeerServer's answer
	peerOK  bool
}

// serve runs a TLS server with a.ServerTLS() on loopback and reports each
// connection's server-side handshake result.
func serve(t *testing.T, a *Authority) (string, <-chan handshake) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", a.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	results := make(chan handshake, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					results <- handshake{err: err}
					return
				}
				cs := tc.ConnectionState()
				id, ok := AgentID(&cs)
				peer, peerOK := PeerServer(&cs)
				results <- handshake{agentID: id, ok: ok, peer: peer, peerOK: peerOK}
				_, _ = io.WriteString(tc, "hello "+id+"\n")
			}()
		}
	}()
	return ln.Addr().String(), results
}

// dial connects like an agent and reads the server's greeting.
func dial(addr string, a *Authority, cfg *tls.Config) (string, error) {
	if cfg.RootCAs == nil {
		cfg.RootCAs = a.Pool()
	}
	cfg.ServerName = "localhost"
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return bufio.NewReader(c).ReadString('\n')
}

func wait(t *testing.T, ch <-chan handshake) handshake {
	t.Helper()
	select {
	case h := <-ch:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("server saw no connection")
		return handshake{}
	}
}

// enroll makes an agent key pair signed by a.
func enroll(t *testing.T, a *Authority, id string) tls.Certificate {
	t.Helper()
	keyPEM, csrPEM, err := NewKeyAndCSR("pc-01")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, serial, err := a.SignAgent(csrPEM, id)
	if err != nil {
		t.Fatal(err)
	}
	if serial == "" {
		t.Fatal("empty serial")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func TestAgentCertificateHandshake(t *testing.T) {
	a, _ := newAuthority(t)
	addr, results := serve(t, a)
	id := NewAgentID()
	pair := enroll(t, a, id)

	got, err := dial(addr, a, &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	h := wait(t, results)
	if h.err != nil || !h.ok || h.agentID != id || got != "hello "+id+"\n" {
		t.Fatalf("server %+v, client read %q", h, got)
	}

	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != id || len(leaf.URIs) != 1 || leaf.URIs[0].String() != "mamori://agent/"+id {
		t.Fatalf("names %q %v", leaf.Subject.CommonName, leaf.URIs)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || leaf.IsCA {
		t.Fatalf("usage %v ca %v", leaf.ExtKeyUsage, leaf.IsCA)
	}
	if d := leaf.NotAfter.Sub(time.Now()); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Fatalf("validity %v", d)
	}
}

func TestNoClientCertificateIsAllowedButHasNoAgentID(t *testing.T) {
	a, _ := newAuthority(t)
	addr, results := serve(t, a)
	got, err := dial(addr, a, &tls.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := wait(t, results)
	if h.err != nil || h.ok || h.agentID != "" || got != "hello \n" {
		t.Fatalf("server %+v, client read %q", h, got)
	}
	if id, ok := AgentID(nil); ok || id != "" {
		t.Fatal("AgentID(nil) ok")
	}
}

func TestForeignCACertificateIsRefused(t *testing.T) {
	a, _ := newAuthority(t)
	other, _ := newAuthority(t)
	addr, results := serve(t, a)
	pair := enroll(t, other, NewAgentID())
	if _, err := dial(addr, a, &tls.Config{Certificates: []tls.Certificate{pair}}); err == nil {
		t.Fatal("client with a foreign CA's certificate got through")
	}
	h := wait(t, results)
	var unk x509.UnknownAuthorityError
	if h.err == nil || !errors.As(h.err, &unk) {
		t.Fatalf("server handshake: %+v", h)
	}
}

func TestServerCertificateIsNotAClientCertificate(t *testing.T) {
	a, dir := newAuthority(t)
	addr, results := serve(t, a)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerFile), filepath.Join(dir, ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, a, &tls.Config{Certificates: []tls.Certificate{pair}}); err == nil {
		t.Fatal("server certificate accepted as a client certificate")
	}
	if h := wait(t, results); h.err == nil {
		t.Fatalf("server handshake: %+v", h)
	}
}

func TestTLS12IsRefused(t *testing.T) {
	a, _ := newAuthority(t)
	addr, results := serve(t, a)
	_, err := dial(addr, a, &tls.Config{MaxVersion: tls.VersionTLS12})
	if err == nil {
		t.Fatal("TLS 1.2 client connected")
	}
	if h := wait(t, results); h.err == nil || !strings.Contains(h.err.Error(), "version") {
		t.Fatalf("server handshake: %+v", h)
	}
	if cfg := a.ServerTLS(); cfg.MinVersion != tls.VersionTLS13 || cfg.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Fatalf("config %+v", cfg)
	}
}

func csrFor(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "pc"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestSignAgentChecksCSR(t *testing.T) {
	a, _ := newAuthority(t)
	id := NewAgentID()

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]any{"p384": p384, "ed25519": edKey, "rsa2048": rsa2048} {
		if _, _, err := a.SignAgent(csrFor(t, key), id); err != nil {
			t.Errorf("%s rejected: %v", name, err)
		}
	}

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	_, good, err := NewKeyAndCSR("pc")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(good)
	tampered := slices.Clone(block.Bytes)
	tampered[len(tampered)-3] ^= 0xff // inside the signature
	badSig := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})
	// Same CSR body with a subject changed after signing.
	csr, _ := x509.ParseCertificateRequest(block.Bytes)
	bodyChanged := bytes.Replace(block.Bytes, csr.RawSubject, bytes.Replace(csr.RawSubject, []byte("pc"), []byte("px"), 1), 1)

	cases := map[string]struct {
		csr  []byte
		id   string
		want string
	}{
		"bad signature":   {badSig, id, "signature"},
		"changed subject": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bodyChanged}), id, "signature"},
		"rsa 1024":        {csrFor(t, rsa1024), id, "1024 bits"},
		"p224":            {csrFor(t, p224), id, "P-224"},
		"not pem":         {[]byte("hello"), id, "PEM"},
		"cert not csr":    {a.CertPEM(), id, "PEM CERTIFICATE REQUEST"},
		"huge":            {make([]byte, maxCSRBytes+1), id, "limit"},
		"bad id":          {good, "../x", "agent id"},
		"empty id":        {good, "", "agent id"},
	}
	for name, c := range cases {
		cert, serial, err := a.SignAgent(c.csr, c.id)
		if err == nil || !strings.Contains(err.Error(), c.want) || cert != nil || serial != "" {
			t.Errorf("%s: cert %v err %v", name, cert != nil, err)
		}
	}
}

func TestLoadOrCreateReusesCA(t *testing.T) {
	a, dir := newAuthority(t)
	server1, err := os.ReadFile(filepath.Join(dir, ServerFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(dir, []string{"mamori.example.jp", "127.0.0.1", "LOCALHOST"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint() != b.Fingerprint() || !bytes.Equal(a.CertPEM(), b.CertPEM()) {
		t.Fatal("second LoadOrCreate made a new CA")
	}
	server2, _ := os.ReadFile(filepath.Join(dir, ServerFile))
	if !bytes.Equal(server1, server2) {
		t.Fatal("same names (other order and case) re-issued the server certificate")
	}
	caFile, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if !bytes.Equal(caFile, a.CertPEM()) {
		t.Fatal("ca.pem differs from CertPEM")
	}
	if runtime.GOOS != "windows" {
		for _, f := range []string{CAKeyFile, ServerKeyFile} {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v", f, fi.Mode(), err)
			}
		}
	}
	ca, err := parseCertPEM(a.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	if ca.Subject.CommonName != "Mamori CA" || !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) < 10*365*24*time.Hour {
		t.Fatalf("CA %q ca=%v %v..%v", ca.Subject.CommonName, ca.IsCA, ca.NotBefore, ca.NotAfter)
	}
	if _, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("CA key %T", ca.PublicKey)
	}
	// An agent certificate from the first load verifies with the second.
	addr, results := serve(t, b)
	pair := enroll(t, a, "ag-1")
	if _, err := dial(addr, b, &tls.Config{Certificates: []tls.Certificate{pair}}); err != nil {
		t.Fatal(err)
	}
	if h := wait(t, results); h.agentID != "ag-1" {
		t.Fatalf("%+v", h)
	}
}

func serverLeaf(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ServerFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCertPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServerCertificateReissue(t *testing.T) {
	a, dir := newAuthority(t)
	first := serverLeaf(t, dir)

	b, err := LoadOrCreate(dir, []string{"mamori.corp.example.jp", "192.0.2.10"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Fingerprint() != a.Fingerprint() {
		t.Fatal("hostname change replaced the CA")
	}
	second := serverLeaf(t, dir)
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("hostname change did not re-issue the server certificate")
	}
	if !slices.Equal(second.DNSNames, []string{"mamori.corp.example.jp"}) || len(second.IPAddresses) != 1 ||
		!second.IPAddresses[0].Equal(net.ParseIP("192.0.2.10")) {
		t.Fatalf("names %v %v", second.DNSNames, second.IPAddresses)
	}
	if err := second.CheckSignatureFrom(must(parseCertPEM(a.CertPEM()))); err != nil {
		t.Fatal(err)
	}

	// 340 days later the certificate has under 30 days left: re-issued.
	later := func() time.Time { return time.Now().Add(340 * 24 * time.Hour) }
	if _, err := loadOrCreate(dir, []string{"mamori.corp.example.jp", "192.0.2.10"}, later); err != nil {
		t.Fatal(err)
	}
	third := serverLeaf(t, dir)
	if third.SerialNumber.Cmp(second.SerialNumber) == 0 {
		t.Fatal("certificate near expiry was not re-issued")
	}
	// 300 days later it still has over 30 days: kept.
	if _, err := loadOrCreate(dir, []string{"mamori.corp.example.jp", "192.0.2.10"},
		func() time.Time { return time.Now().Add(300 * 24 * time.Hour) }); err != nil {
		t.Fatal(err)
	}
	if serverLeaf(t, dir).SerialNumber.Cmp(third.SerialNumber) != 0 {
		t.Fatal("certificate with time left was re-issued")
	}
}

func TestLoadOrCreateRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir, []string{"bad host!"}); err == nil {
		t.Fatal("bad hostname accepted")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("bad input wrote files: %v", entries)
	}
	if _, err := LoadOrCreate(dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreate(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("CA without key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a new CA key was written next to the old CA certificate")
	}
}

func TestCheckFingerprint(t *testing.T) {
	a, _ := newAuthority(t)
	other, _ := newAuthority(t)
	fp := a.Fingerprint()
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != 7+64 {
		t.Fatalf("fingerprint %q", fp)
	}
	if err := CheckFingerprint(a.CertPEM(), fp); err != nil {
		t.Fatal(err)
	}
	if err := CheckFingerprint(a.CertPEM(), strings.ToUpper(fp[:7])+strings.ToUpper(fp[7:])); err != nil {
		t.Fatalf("upper case: %v", err)
	}
	if err := CheckFingerprint(a.CertPEM(), other.Fingerprint()); err == nil || !strings.Contains(err.Error(), "mismatch") {
		t.Fatalf("other CA: %v", err)
	}
	for _, bad := range []string{"", fp[7:], "sha1:" + fp[7:], fp[:70], fp[:70] + "g"} {
		if err := CheckFingerprint(a.CertPEM(), bad); err == nil {
			t.Errorf("want %q accepted", bad)
		}
	}
	if err := CheckFingerprint([]byte("junk"), fp); err == nil {
		t.Error("junk PEM accepted")
	}
	if err := CheckFingerprint(append(a.CertPEM(), other.CertPEM()...), fp); err == nil {
		t.Error("two certificates accepted")
	}
}

func TestNewAgentID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewAgentID()
		if len(id) != 19 || !strings.HasPrefix(id, "ag-") || !ValidAgentID(id) || seen[id] {
			t.Fatalf("id %q", id)
		}
		seen[id] = true
	}
}

// The agent links this package: it must use the standard library only,
// besides shared/securefs (private key files), which, like all of shared/,
// is made for both programs.
func TestOnlyStandardLibraryImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == "github.com/mamori/mamori/shared/securefs" {
				continue
			}
			if first, _, _ := strings.Cut(p, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A server's peer certificate names the server and is no agent's; an agent's
// certificate is no server's; another site's peer certificate is refused.
func TestPeerCertificate(t *testing.T) {
	a, _ := newAuthority(t)
	addr, results := serve(t, a)
	peer, err := a.PeerCert("srv-b.example:8443")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, a, &tls.Config{Certificates: []tls.Certificate{peer}}); err != nil {
		t.Fatal(err)
	}
	if h := wait(t, results); h.err != nil || !h.peerOK || h.peer != "srv-b.example:8443" || h.ok {
		t.Fatalf("peer certificate seen as %+v", h)
	}

	if _, err := dial(addr, a, &tls.Config{Certificates: []tls.Certificate{enroll(t, a, NewAgentID())}}); err != nil {
		t.Fatal(err)
	}
	if h := wait(t, results); h.err != nil || h.peerOK || !h.ok {
		t.Fatalf("agent certificate seen as %+v", h)
	}

	other, _ := newAuthority(t)
	foreign, err := other.PeerCert("srv-b.example:8443")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, a, &tls.Config{Certificates: []tls.Certificate{foreign}}); err == nil {
		t.Fatal("another site's peer certificate got through")
	}
	if h := wait(t, results); h.err == nil {
		t.Fatalf("foreign peer handshake: %+v", h)
	}
	for _, bad := range []string{"", "a/b", "x y", strings.Repeat("a", 256)} {
		if _, err := a.PeerCert(bad); err == nil {
			t.Errorf("PeerCert(%q) issued", bad)
		}
	}
}
