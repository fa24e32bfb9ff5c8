package pki

import (
	"crypto/tls"
	"testing"
)

// BenchmarkSignAgent is the CA's share of one enrollment.
func BenchmarkSignAgent(b *testing.B) {
	a, err := LoadOrCreate(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	_, csr, err := NewKeyAndCSR("pc")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := a.SignAgent(csr, "ag-0123456789abcdef"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAgentHandshake is a full mTLS handshake on loopback as an agent
// reconnecting does it.
func BenchmarkAgentHandshake(b *testing.B) {
	a, err := LoadOrCreate(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	keyPEM, csr, _ := NewKeyAndCSR("pc")
	certPEM, _, err := a.SignAgent(csr, "ag-1")
	if err != nil {
		b.Fatal(err)
	}
	pair, _ := tls.X509KeyPair(certPEM, keyPEM)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", a.ServerTLS())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() == nil {
				cs := tc.ConnectionState()
				if _, ok := AgentID(&cs); !ok {
					panic("no agent id")
				}
			}
			tc.Close()
		}
	}()
	cfg := &tls.Config{RootCAs: a.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{pair}}
	b.ResetTimer()
	for b.Loop() {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
