package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
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
	nid, err := Renew(context.Background(), dir, id)
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
		string(again.Cert.Certificate[0]) != string(nid.Cert.Certificate[0]) {
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
	if _, err := Renew(context.Background(), dir, id); err == nil {
		t.Fatal("a certificate for another agent was accepted")
	}
	after, err := LoadIdentity(dir)
	if err != nil || string(after.Cert.Certificate[0]) != string(id.Cert.Certificate[0]) {
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
