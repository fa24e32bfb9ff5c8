package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kardianos/service"
	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
)

func newLogger(w io.Writer, level string) zerolog.Logger {
	lv, err := zerolog.ParseLevel(level)
	if err != nil {
		lv = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lv).With().Timestamp().Str("program", "mamori-server").Logger()
}

// cmdServe runs the server until SIGINT/SIGTERM (or the service manager's
// stop), then shuts down gracefully.
func cmdServe(args []string, stdout, stderr io.Writer) error {
	f := newFlags(stderr)
	f.fs.Usage = func() {
		fmt.Fprint(stderr, "usage: mamori-server serve [flags]\n\nRuns the server in the foreground (or under the service manager).\n\nflags:\n")
		f.fs.PrintDefaults()
	}
	if err := f.parse(args); err != nil {
		return err
	}
	log := newLogger(stderr, f.logLevel)
	cfg, err := f.config(log)
	if err != nil {
		return err
	}
	cfg.Version = versionString()
	prg := &program{cfg: cfg, log: log, out: stdout}
	if service.Interactive() {
		// A terminal, a container or a test: no service manager needed
		// (kardianos refuses to build a service where it detects none).
		stopProfile, err := startCPUProfile()
		if err != nil {
			return err
		}
		defer stopProfile()
		// Signals first: a SIGTERM right after the banner must stop us
		// cleanly, not kill us.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := prg.Start(nil); err != nil {
			return err
		}
		<-ctx.Done()
		return prg.Stop(nil)
	}
	hardenAtStart(log)
	svc, err := service.New(prg, serviceConfig(nil))
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	// Run calls Start, waits for the service manager's stop, calls Stop.
	return svc.Run()
}

// program adapts app.Server to kardianos/service.
type program struct {
	cfg  app.Config
	log  zerolog.Logger
	out  io.Writer
	srv  *app.Server
	lock *dataDirLock
	gc   chan struct{} // stops tuneGC
}

// Start starts the server and returns once it listens (the service manager
// wants Start to return promptly).
func (p *program) Start(s service.Service) error {
	fresh := dirIsEmpty(p.cfg.DataDir)
	lock, err := lockDataDir(p.cfg.DataDir, p.cfg.Listen)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The enroll command carries the bootstrap enroll token: print it on
	// the first start only (when this start creates the token), not into
	// every later start's log.
	_, statErr := os.Stat(filepath.Join(p.cfg.DataDir, app.FileEnrollToken))
	first := errors.Is(statErr, fs.ErrNotExist)
	srv, err := app.Start(ctx, p.cfg)
	if err != nil {
		lock.Release()
		if fresh {
			// A first start that failed (the port taken, say) leaves no
			// half-made data dir with a CA nobody enrolled against.
			if rerr := os.RemoveAll(p.cfg.DataDir); rerr != nil {
				p.log.Warn().Err(rerr).Str("data_dir", p.cfg.DataDir).Msg("could not remove the half-made data dir")
			}
		}
		return err
	}
	p.srv, p.lock, p.gc = srv, lock, make(chan struct{})
	go tuneGC(p.gc, srv.Handshakes)
	p.printBanner(srv, first)
	go func() {
		// Serving stopped without Stop (listener failure): exit non-zero so
		// that the service manager restarts us.
		if err := srv.Wait(context.Background()); err != nil {
			p.log.Error().Err(err).Msg("serve failed")
			srv.Close()
			os.Exit(1)
		}
	}()
	return nil
}

// Stop shuts down: in-flight batches finish and are acked, or are not
// acked at all; then the event store and state close.
func (p *program) Stop(s service.Service) error {
	if p.srv == nil {
		return nil
	}
	p.log.Info().Msg("shutting down")
	close(p.gc)
	defer p.lock.Release()
	if err := p.srv.Close(); err != nil {
		p.log.Error().Err(err).Msg("shutdown")
		return err
	}
	p.log.Info().Msg("stopped")
	return nil
}

// printBanner tells the admin where things are; the enroll command with the
// bootstrap token only on the first start. The CA hash is public and is what
// agents' --ca-hash and the MSI's CAHASH need, so every start shows it.
func (p *program) printBanner(srv *app.Server, first bool) {
	if p.cfg.Join || srv.AdoptedSite() {
		// A joined server made no secrets: the site's first server has them;
		// nor did a new data dir on an etcd that already held the site.
		fmt.Fprintf(p.out, `
Mamori server joined the site / サイトに参加しました
  dashboard:       %s
  data directory:  %s
  CA hash:         %s
  log verifier:    %s
  admin login, tokens, enroll command: the site's first server's

`, srv.DashboardURL(), p.cfg.DataDir, srv.CAFingerprint(), srv.LogVerifierKey())
		return
	}
	enroll := srv.EnrollCommand()
	if !first {
		enroll = "mamori-server tokens create --ttl 24h --uses 10   (the bootstrap token was shown on the first start only)"
	}
	fmt.Fprintf(p.out, `
Mamori server is running / Mamori サーバーが起動しました
  dashboard:       %s
  data directory:  %s
  admin login:     user admin, password in %s
  admin token:     %s (file)
  CA hash:         %s
  log verifier:    %s
Enroll an agent / エージェントの登録:
  %s

`, srv.DashboardURL(), p.cfg.DataDir, filepath.Join(p.cfg.DataDir, app.FileAdminPassword), filepath.Join(p.cfg.DataDir, app.FileAdminToken),
		srv.CAFingerprint(), srv.LogVerifierKey(), enroll)
}
