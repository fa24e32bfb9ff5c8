package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// TestAgentRenewsCertificate: a running agent whose certificate is due
// (its renewal clock looks 7000 h ahead, past two thirds of a year) renews
// it with the real server over mTLS without a restart, keeps shipping with
// the new one, and the certificate it started with is then refused in the
// handshake; the pair left on disk is the working one.
func TestAgentRenewsCertificate(t *testing.T) {
	srvBin, agentBin := binaries(t)
	s := startServer(t, srvBin, filepath.Join(t.TempDir(), "data"), freePort(t))
	a := enroll(t, agentBin, s)
	original := loadPair(t, a.dir)
	caPEM, err := os.ReadFile(filepath.Join(a.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := post(t, s.url, caPEM, original); err != nil {
		t.Fatalf("the enrolled certificate does not connect: %v", err)
	}
	p := a.startEnv(t, 20, "MAMORI_TEST_RENEW_SKEW=7000h", "MAMORI_TEST_RENEW_CHECK=1h")

	var renewed []event.Event
	waitFor(t, 60*time.Second, "agent.cert_renewed recorded by the server", func() bool {
		renewed = nil
		for _, e := range s.query(t, url.Values{"agent": {event.ServerStream}}) {
			if e.Type == "agent.cert_renewed" && e.User == a.id {
				renewed = append(renewed, e)
			}
		}
		return len(renewed) > 0
	})
	if prev, _ := renewed[0].Attrs["previous_serial"].(string); prev == "" {
		t.Errorf("renewal event without the replaced serial: %v", renewed[0].Attrs)
	}
	// Shipping goes on with the new certificate: test events keep arriving.
	after := countType(s.events(t, a.id), "agent.test")
	waitFor(t, 60*time.Second, "20 more test events after the renewal", func() bool {
		return countType(s.events(t, a.id), "agent.test") >= after+20
	})
	// The certificate the agent started with no longer connects.
	waitFor(t, 10*time.Second, "the replaced certificate refused", func() bool {
		return post(t, s.url, caPEM, original) != nil
	})
	p.stop(t, syscall.SIGTERM)
	checkContiguous(t, s.events(t, a.id))
	cur := loadPair(t, a.dir)
	if string(cur.Certificate[0]) == string(original.Certificate[0]) {
		t.Fatal("cert.pem still holds the original certificate")
	}
	if err := post(t, s.url, caPEM, cur); err != nil {
		t.Fatalf("the renewed pair on disk does not connect: %v", err)
	}
	for _, n := range []string{"key.pem.new", "cert.pem.new"} {
		if _, err := os.Stat(filepath.Join(a.dir, n)); err == nil {
			t.Errorf("%s left behind", n)
		}
	}
	if out := p.out.String(); !strings.Contains(out, "certificate renewed") {
		t.Errorf("agent log does not say it renewed:\n%s", out)
	}
}

func loadPair(t testing.TB, dir string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// post sends an empty batch with cert over a new connection; an error means
// the server refused the connection.
func post(t testing.TB, base string, caPEM []byte, cert tls.Certificate) error {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	defer c.CloseIdleConnections()
	resp, err := c.Post(base+wire.PathEvents, "application/json", strings.NewReader(`{"events":[]}`))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
