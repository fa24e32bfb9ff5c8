package state

import (
	"context"
	"fmt"
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
func (s *State) startEmbedded(ctx context.Context, dataDir string) error {
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
	clientPath := filepath.Join(sockDir, "client.sock")
	peerPath := filepath.Join(sockDir, "peer.sock")
	// etcd listens on Host+Path for client URLs but only on Host for peer URLs,
	// so the peer listen URL carries the whole path in Host; the advertised one
	// is the usual unix:///abs form that InitialCluster can parse.
	clientURL := url.URL{Scheme: "unix", Path: filepath.ToSlash(clientPath)}
	peerURL := url.URL{Scheme: "unix", Path: filepath.ToSlash(peerPath)}
	peerListen := url.URL{Scheme: "unix", Host: filepath.ToSlash(peerPath)}

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

// Endpoint returns the client URL of the embedded etcd ("unix:///.../client.sock"),
// or "" when connected to an external cluster.
func (s *State) Endpoint() string { return s.endpoint }
