package state

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"time"
)

// ClientTLS builds the TLS client configuration for an external etcd
// cluster from PEM files: caFile verifies etcd's certificates (empty: the
// system roots); certFile and keyFile, both or neither, are this server's
// client certificate for clusters that run --client-cert-auth.
func ClientTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("state: %w: etcd client certificate and key go together", ErrInvalid)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("state: etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("state: %w: etcd CA %s holds no PEM certificate", ErrInvalid, caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("state: etcd client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// tlsProbe finds why etcd over TLS did not answer, which gRPC reports only
// as a deadline: a handshake error, or the alert a server requiring client
// certificates sends after it (TLS 1.3). nil when it finds nothing.
func tlsProbe(endpoints []string, cfg *tls.Config) error {
	if cfg == nil {
		return nil
	}
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" {
			continue
		}
		c := cfg.Clone()
		if c.ServerName == "" {
			c.ServerName = u.Hostname()
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", u.Host, c)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}
