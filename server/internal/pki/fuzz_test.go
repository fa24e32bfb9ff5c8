package pki

import (
	"testing"
)

// FuzzSignAgent gives the CA arbitrary enrollment CSRs: it signs only a
// well-formed, self-signed request with an accepted key, never panics.
func FuzzSignAgent(f *testing.F) {
	a, err := LoadOrCreate(f.TempDir(), testHosts)
	if err != nil {
		f.Fatal(err)
	}
	_, csr, err := NewKeyAndCSR("pc-1")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(csr)
	f.Add(csr[:len(csr)/2])
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte(""))
	id := NewAgentID()
	f.Fuzz(func(t *testing.T, b []byte) {
		cert, serial, err := a.SignAgent(b, id)
		if err != nil {
			if cert != nil || serial != "" {
				t.Fatal("a refusal returned a certificate")
			}
			return
		}
		if len(cert) == 0 || serial == "" {
			t.Fatal("signed without a certificate")
		}
	})
}
