package uplink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/wire"
)

// renewServer serves PathRenew for agents of f's CA: it requires the
// client certificate and signs the CSR for cn.
func renewServer(t *testing.T, f *fakeServer, cn string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathRenew, func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "agent-1" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var req wire.RenewRequest
		json.NewDecoder(r.Body).Decode(&req)
		b, _ := pem.Decode([]byte(req.CSR))
		csr, err := x509.ParseCertificateRequest(b.Bytes)
		if err != nil || csr.CheckSignature() != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		der := f.ca.issue(t, csr.PublicKey, cn, false)
		json.NewEncoder(w).Encode(wire.EnrollResponse{AgentID: cn, Certificate: string(pemCert(der)), CA: string(pemCert(f.ca.cert.Raw))})
	})
	s := httptest.NewUnstartedServer(mux)
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.cert)
	s.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{f.ca.serverCert(t)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func TestRenewNewKeySameIdentity(t *testing.T) {
	f := newFakeServer(t)
	dir := enrollTest(t, f)
	id, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	id.State.Server = renewServer(t, f, "agent-1").URL
	nleaf, err := Renew(context.Background(), dir, "", id)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadIdentity(dir)
	if err != nil {
		t.Fatalf("saved pair does not load: %v", err)
	}
	oldLeaf, _ := x509.ParseCertificate(id.Cert.Certificate[0])
	newLeaf, _ := x509.ParseCertificate(again.Cert.Certificate[0])
	if newLeaf.Subject.CommonName != "agent-1" || newLeaf.SerialNumber.Cmp(oldLeaf.SerialNumber) == 0 ||
		string(again.Cert.Certificate[0]) != string(nleaf.Raw) || string(id.Certificate().Certificate[0]) != string(nleaf.Raw) {
		t.Fatal("renewed certificate not saved or not new")
	}
	if string(mustKeyDER(t, again)) == string(mustKeyDER(t, id)) {
		t.Fatal("the key was not replaced")
	}
	if RenewDue(newLeaf, newLeaf.NotBefore.Add(time.Second)) {
		t.Fatal("a fresh certificate is due for renewal")
	}
	if life := newLeaf.NotAfter.Sub(newLeaf.NotBefore); !RenewDue(newLeaf, newLeaf.NotAfter.Add(-life/10)) {
		t.Fatal("a certificate in the last tenth of its life is not due")
	}
}

// A server that answers with another agent's certificate changes nothing.
func TestRenewRefusesAnotherIdentity(t *testing.T) {
	f := newFakeServer(t)
	dir := enrollTest(t, f)
	id, _ := LoadIdentity(dir)
	id.State.Server = renewServer(t, f, "agent-2").URL
	if _, err := Renew(context.Background(), dir, "", id); err == nil {
		t.Fatal("a certificate for another agent was accepted")
	}
	after, err := LoadIdentity(dir)
	if err != nil || string(after.Cert.Certificate[0]) != string(id.Cert.Certificate[0]) ||
		id.Certificate() != &id.Cert {
		t.Fatalf("identity changed after a refused renewal: %v", err)
	}
}

func mustKeyDER(t *testing.T, id *Identity) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(id.Cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRenewCrashAtEachStep stops the save after each of its steps, as a
// crash would, and loads the identity as the next start does: it is always
// a matching pair, the new one as soon as both new files were written, and
// no temporary file is left.
func TestRenewCrashAtEachStep(t *testing.T) {
	for crashAt := range 4 {
		f := newFakeServer(t)
		dir := enrollTest(t, f)
		id, err := LoadIdentity(dir)
		if err != nil {
			t.Fatal(err)
		}
		srv := renewServer(t, f, "agent-1")
		renewStep = func(step int) error {
			if step == crashAt {
				return errors.New("crash")
			}
			return nil
		}
		_, err = Renew(context.Background(), dir, srv.URL, id)
		renewStep = func(int) error { return nil }
		if err == nil {
			t.Fatalf("step %d: the simulated crash did not stop the save", crashAt)
		}
		again, err := LoadIdentity(dir)
		if err != nil {
			t.Fatalf("crash after step %d: identity does not load: %v", crashAt, err)
		}
		isNew := string(again.Cert.Certificate[0]) != string(id.Cert.Certificate[0])
		if want := crashAt >= 1; isNew != want {
			t.Fatalf("crash after step %d: new pair in use = %v, want %v", crashAt, isNew, want)
		}
		for _, n := range []string{fileKeyNew, fileCertNew} {
			if exists(dir, n) {
				t.Fatalf("crash after step %d: %s left behind", crashAt, n)
			}
		}
		// The recovered identity still talks to the server.
		if _, err := Renew(context.Background(), dir, srv.URL, again); err != nil {
			t.Fatalf("crash after step %d: renewing with the recovered pair: %v", crashAt, err)
		}
	}
}

// TestRenewedCertOnNextRequest: after SetCertificate, the next request of
// any client of the identity presents the new certificate (no restart),
// while a long-poll already held on the old connection is not cut.
func TestRenewedCertOnNextRequest(t *testing.T) {
	ca := newCA(t, "Mamori CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	held, pollDone := make(chan struct{}), make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/policy", func(w http.ResponseWriter, r *http.Request) {
		close(held)
		select {
		case <-r.Context().Done():
		case <-time.After(time.Second):
		}
		io.WriteString(w, r.TLS.PeerCertificates[0].SerialNumber.String())
	})
	mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.PeerCertificates[0].SerialNumber.String())
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		Certificates: []tls.Certificate{ca.serverCert(t)}}
	srv.StartTLS()
	defer srv.Close()

	pair := func() (tls.Certificate, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der := ca.issue(t, key.Public(), "ag-0000000000000001", false)
		leaf, _ := x509.ParseCertificate(der)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, leaf.SerialNumber.String()
	}
	oldCert, oldSerial := pair()
	newCert, newSerial := pair()
	id := &Identity{State: State{AgentID: "ag-0000000000000001", Server: srv.URL}, CAs: pool, Cert: oldCert}
	poll, ship := id.HTTPClient(time.Minute), id.HTTPClient(5*time.Second)
	post := func() string {
		t.Helper()
		resp, err := ship.Post(srv.URL+"/v1/events", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := post(); got != oldSerial {
		t.Fatalf("before renewal the server saw %s, want %s", got, oldSerial)
	}
	go func() {
		resp, err := poll.Get(srv.URL + "/v1/policy")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != oldSerial {
				err = errors.New("long-poll answered on another connection: " + string(b))
			}
		}
		pollDone <- err
	}()
	<-held
	id.SetCertificate(newCert)
	if got := post(); got != newSerial {
		t.Fatalf("after renewal the server saw %s, want the new certificate %s", got, newSerial)
	}
	if err := <-pollDone; err != nil {
		t.Fatalf("held long-poll across the renewal: %v", err)
	}
}
