package state

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// maxSockPath is the usable length of a unix socket path: sun_path is 108
// bytes on Linux (104 on macOS) including the terminating NUL; we keep a margin.
const maxSockPath = 100

// startEmbedded starts a single-node etcd in dataDir/etcd that listens only on
// unix sockets, so it can never clash with a system etcd or another instance.
// Without AF_UNIX it falls back to loopback TCP on ports free at start.
func (s *State) startEmbedded(ctx context.Context, dataDir string, forceTCP bool) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("state: data dir: %w", err)
	}
	dir := filepath.Join(abs, "etcd")
	if err := ensureDir(dir); err != nil {
		return err
	}
	sockDir := dir
	if len(filepath.Join(sockDir, "client.sock")) > maxSockPath {
		// Long data dirs (deep install paths, t.TempDir) exceed sun_path:
		// use a private short dir instead, removed on Close.
		sockDir, err = os.MkdirTemp("", "mamori-etcd-")
		if err != nil {
			return fmt.Errorf("state: socket dir: %w", err)
		}
		if err := os.Chmod(sockDir, 0o700); err != nil {
			_ = os.RemoveAll(sockDir)
			return fmt.Errorf("state: socket dir: %w", err)
		}
		if len(filepath.Join(sockDir, "client.sock")) > maxSockPath {
			_ = os.RemoveAll(sockDir)
			return fmt.Errorf("state: %w: temp dir %s too long for a unix socket path", ErrInvalid, sockDir)
		}
		s.sockDir = sockDir
	}
	clientURL, peerURL, peerListen, err := s.listenURLs(sockDir, forceTCP)
	if err != nil {
		s.removeSockDir()
		return err
	}

	cfg := embed.NewConfig()
	cfg.Name = "mamori"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerListen}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	cfg.InitialClusterToken = "mamori"
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(s.baseLog, &s.closing))
	// Checkpoints and token use rewrite keys all day: keep one hour of history.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	cfg.EnablePprof = false
	cfg.ListenMetricsUrls = nil
	// A register import is one transaction (all rows or none): let a first
	// import of a few thousand rows through instead of etcd's 128 ops.
	cfg.MaxTxnOps = EmbeddedMaxTxnOps
	cfg.MaxRequestBytes = EmbeddedMaxRequestBytes

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		s.removeSockDir()
		return fmt.Errorf("state: start embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		s.closing.Store(true)
		e.Close()
		s.removeSockDir()
		return fmt.Errorf("state: embedded etcd: %w", err)
	case <-ctx.Done():
		s.closing.Store(true)
		e.Server.Stop()
		e.Close()
		s.removeSockDir()
		return fmt.Errorf("state: embedded etcd not ready: %w", ctx.Err())
	case <-time.After(60 * time.Second):
		s.closing.Store(true)
		e.Server.Stop()
		e.Close()
		s.removeSockDir()
		return fmt.Errorf("state: embedded etcd not ready after 60s")
	}
	s.etcd = e
	s.endpoint = clientURL.String()
	return nil
}

// Limits of the embedded etcd, above etcd's defaults (128 operations, 1.5
// MiB) so one register import of a few thousand rows fits one transaction.
const (
	EmbeddedMaxTxnOps       = 8192
	EmbeddedMaxRequestBytes = 8 << 20
)

// TxnLimits returns the most operations and bytes one transaction may
// carry: the embedded node's, or etcd's defaults for an external cluster
// (whose flags Mamori cannot read).
func (s *State) TxnLimits() (ops, bytes int) {
	if s.etcd != nil {
		return EmbeddedMaxTxnOps, EmbeddedMaxRequestBytes
	}
	return 128, 1536 << 10
}

// listenURLs returns the embedded node's client URL, advertised peer URL and
// peer listen URL: unix sockets in sockDir, or loopback TCP on fresh ports
// where the OS has no AF_UNIX (Windows before 10 1803, Wine).
func (s *State) listenURLs(sockDir string, forceTCP bool) (client, peer, peerListen url.URL, err error) {
	clientPath := filepath.Join(sockDir, "client.sock")
	peerPath := filepath.Join(sockDir, "peer.sock")
	uerr := errors.New("disabled")
	if !forceTCP {
		uerr = probeUnix(filepath.Join(sockDir, "probe.sock"))
	}
	if uerr == nil {
		// etcd listens on Host+Path for client URLs but only on Host for peer
		// URLs, so the peer listen URL carries the whole path in Host; the
		// advertised one is the usual unix:///abs form InitialCluster parses.
		client = url.URL{Scheme: "unix", Path: filepath.ToSlash(clientPath)}
		peer = url.URL{Scheme: "unix", Path: filepath.ToSlash(peerPath)}
		peerListen = url.URL{Scheme: "unix", Host: filepath.ToSlash(peerPath)}
		return client, peer, peerListen, nil
	}
	s.log.Warn().Err(uerr).Msg("unix sockets unavailable: embedded etcd listens on loopback TCP")
	cport, err := freeLoopbackPort()
	if err != nil {
		return client, peer, peerListen, err
	}
	pport, err := freeLoopbackPort()
	if err != nil {
		return client, peer, peerListen, err
	}
	client = url.URL{Scheme: "http", Host: cport}
	peer = url.URL{Scheme: "http", Host: pport}
	return client, peer, peer, nil
}

// probeUnix reports whether a unix socket can be made at path.
func probeUnix(path string) error {
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	_ = l.Close()
	_ = os.Remove(path)
	return nil
}

// freeLoopbackPort returns "127.0.0.1:<port>" for a port free right now.
func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("state: loopback port: %w", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr, nil
}

// stopEmbedded stops the embedded etcd, if any.
func (s *State) stopEmbedded() {
	if s.etcd != nil {
		s.closing.Store(true)
		s.etcd.Close()
		s.etcd = nil
	}
	s.removeSockDir()
}

func (s *State) removeSockDir() {
	if s.sockDir != "" {
		_ = os.RemoveAll(s.sockDir)
		s.sockDir = ""
	}
}

// Endpoint returns the client URL of the embedded etcd ("unix:///.../client.sock",
// or "http://127.0.0.1:<port>" on the TCP fallback), or "" when connected to an
// external cluster.
func (s *State) Endpoint() string { return s.endpoint }
