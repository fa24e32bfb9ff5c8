package state

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// certFiles writes a CA, an etcd server certificate for 127.0.0.1 and a
// client certificate under it, and returns their file names.
type certFiles struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func writeCerts(t *testing.T, dir string) certFiles {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, k.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalPKCS8PrivateKey(k)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "PRIVATE KEY", kd)
	}
	var f certFiles
	f.ca = write("ca.pem", "CERTIFICATE", caDER)
	f.serverCert, f.serverKey = issue("etcd", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	f.clientCert, f.clientKey = issue("mamori", 3, x509.ExtKeyUsageClientAuth, nil)
	return f
}

// tlsEtcd starts an embedded etcd that requires client certificates
// (etcd --client-cert-auth), as an external cluster would run.
func tlsEtcd(t *testing.T, f certFiles) string {
	t.Helper()
	cport, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	pport, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "tls"
	cfg.Dir = filepath.Join(t.TempDir(), "etcd")
	client := url.URL{Scheme: "https", Host: cport}
	peer := url.URL{Scheme: "http", Host: pport}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = f.serverCert, f.serverKey
	cfg.ClientTLSInfo.TrustedCAFile, cfg.ClientTLSInfo.ClientCertAuth = f.ca, true
	var closing atomic.Bool // quiets etcd's shutdown chatter, as State does
	cfg.Logger, cfg.LogLevel = "zap", "warn"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(testLog(t), &closing))
	cfg.ListenMetricsUrls = nil
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closing.Store(true); e.Close() })
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		t.Fatal("etcd not ready")
	}
	return client.String()
}

func TestExternalEtcdClientCertificate(t *testing.T) {
	f := writeCerts(t, t.TempDir())
	ep := tlsEtcd(t, f)
	tc, err := ClientTLS(f.clientCert, f.clientKey, f.ca)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctxT(t), Config{Endpoints: []string{ep}, TLS: tc, Log: testLog(t)})
	if err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	defer s.Close()
	if _, err := s.PutJSON(ctxT(t), "registers/x/1", map[string]int{"a": 1}, 0); err != nil {
		t.Fatal(err)
	}
	count := func() int64 {
		resp, err := s.cli.Get(ctxT(t), "", withAll()...)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	before := count()
	// Without a client certificate etcd refuses the handshake: Open fails
	// and nothing is written.
	noCert, err := ClientTLS("", "", f.ca)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bad, err := Open(ctx, Config{Endpoints: []string{ep}, TLS: noCert, Log: testLog(t)})
	if err == nil {
		bad.Close()
		t.Fatal("opened without a client certificate")
	}
	if !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("refusal does not say why: %v", err)
	}
	if after := count(); after != before {
		t.Errorf("etcd revision %d -> %d after a refused open", before, after)
	}
}

func TestClientTLSInput(t *testing.T) {
	f := writeCerts(t, t.TempDir())
	if _, err := ClientTLS(f.clientCert, "", f.ca); !errors.Is(err, ErrInvalid) {
		t.Errorf("cert without key: %v", err)
	}
	if _, err := ClientTLS("", "", f.clientKey); !errors.Is(err, ErrInvalid) {
		t.Errorf("a key as CA: %v", err)
	}
	if _, err := ClientTLS(f.clientCert, f.serverKey, f.ca); err == nil {
		t.Error("mismatched key accepted")
	}
	if _, err := Open(ctxT(t), Config{DataDir: t.TempDir(), Username: "u", Password: "p"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("user for the embedded etcd: %v", err)
	}
}

func TestExternalEtcdUserPassword(t *testing.T) {
	admin := openTest(t)
	ctx := ctxT(t)
	cli := admin.cli
	if _, err := cli.UserAdd(ctx, "root", "s3cret-root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	ep := admin.Endpoint()
	s, err := Open(ctx, Config{Endpoints: []string{ep}, Username: "root", Password: "s3cret-root", Log: testLog(t)})
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	defer s.Close()
	if _, err := s.PutJSON(ctx, "registers/x/1", map[string]int{"a": 1}, 0); err != nil {
		t.Fatal(err)
	}
	rev := func() int64 {
		resp, err := s.cli.Get(ctx, "", withAll()...)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	before := rev()
	bad, err := Open(ctx, Config{Endpoints: []string{ep}, Username: "root", Password: "wrong", Log: testLog(t)})
	if err == nil {
		bad.Close()
		t.Fatal("opened with a wrong password")
	}
	if !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("wrong password: %v", err)
	}
	if after := rev(); after != before {
		t.Errorf("etcd revision %d -> %d after a refused open", before, after)
	}
	if _, err := Open(ctx, Config{Endpoints: []string{ep}, Username: "root", Log: testLog(t)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("user without password: %v", err)
	}
}

func withAll() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}
}
