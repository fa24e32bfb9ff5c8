package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/eventlog"
)

// serveFlags are the flags of serve (and install, which passes them on).
type serveFlags struct {
	fs        *flag.FlagSet
	dataDir   string
	listen    string
	hostnames string
	etcd      string
	eventsDSN string
	logLevel  string
	retention time.Duration
	lossOf    int64
	maxConns  int
}

func newFlags(out io.Writer) *serveFlags {
	f := &serveFlags{fs: flag.NewFlagSet("mamori-server", flag.ContinueOnError)}
	f.fs.SetOutput(out)
	f.fs.StringVar(&f.dataDir, "data-dir", "", "data directory (default ./mamori-data; for install: "+defaultServiceDataDir()+")")
	f.fs.StringVar(&f.listen, "listen", app.DefaultListen, "TLS listen address")
	f.fs.StringVar(&f.hostnames, "hostname", "", "comma-separated names and IPs of the server certificate; the first goes into the printed URL (default: this host's name, localhost, 127.0.0.1)")
	f.fs.StringVar(&f.etcd, "etcd-endpoints", "", "comma-separated URLs of an external etcd cluster (default: embedded etcd in the data dir)")
	f.fs.StringVar(&f.eventsDSN, "events-dsn", "", "event store: SQLite file path (default DATA/events.db) or postgres://... URL")
	f.fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	f.fs.Int64Var(&f.lossOf, "accept-event-loss", 0, "start on an event store behind etcd's latest checkpoint (a restored backup) when N is that checkpoint's size, as the refusal names it; the loss is recorded as a violation event. Use once")
	f.fs.IntVar(&f.maxConns, "max-conns", 0, fmt.Sprintf("cap on open connections, idle ones shed first (default %d, and always below the fd limit minus a reserve for etcd and the event store)", app.DefaultMaxConns))
	f.fs.DurationVar(&f.retention, "retention", eventlog.DefaultRetention, "keep event payloads this long (at least 17520h = 2 years); older events keep only their hashes")
	return f
}

func (f *serveFlags) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err}
	}
	if f.fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", f.fs.Arg(0))}
	}
	if _, err := zerolog.ParseLevel(f.logLevel); err != nil || f.logLevel == "" {
		return usageError{fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", f.logLevel)}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// config turns the flags into an app.Config.
func (f *serveFlags) config(log zerolog.Logger) (app.Config, error) {
	dir := f.dataDir
	if dir == "" {
		dir = "mamori-data"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return app.Config{}, fmt.Errorf("--data-dir: %w", err)
	}
	if f.lossOf < 0 {
		return app.Config{}, usageError{fmt.Errorf("--accept-event-loss: %d is not a checkpoint size", f.lossOf)}
	}
	if err := audit.CheckRetention(f.retention); err != nil {
		return app.Config{}, usageError{fmt.Errorf("--retention: %w", err)}
	}
	if f.maxConns < 0 {
		return app.Config{}, usageError{fmt.Errorf("--max-conns: %d: want 0 (default) or more", f.maxConns)}
	}
	return app.Config{DataDir: abs, Listen: f.listen, Hostnames: splitList(f.hostnames),
		EtcdEndpoints: splitList(f.etcd), EventsDSN: f.eventsDSN, Log: log, Retention: f.retention,
		AcceptEventLoss: f.lossOf, MaxConns: f.maxConns}, nil
}

// serviceArgs are the arguments the installed service runs with: serve
// with an absolute data dir and the flags given to install.
func (f *serveFlags) serviceArgs() ([]string, error) {
	dir := f.dataDir
	if dir == "" {
		dir = defaultServiceDataDir()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	args := []string{"serve", "--data-dir", abs}
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name != "data-dir" {
			args = append(args, "--"+fl.Name, fl.Value.String())
		}
	})
	return args, nil
}

// defaultServiceDataDir is where an installed server keeps its data.
func defaultServiceDataDir() string {
	switch runtime.GOOS {
	case "windows":
		base := os.Getenv("ProgramData")
		if base == "" {
			base = `C:\ProgramData`
		}
		return filepath.Join(base, "Mamori", "server")
	case "darwin":
		return "/Library/Application Support/Mamori/server"
	default:
		return "/var/lib/mamori-server"
	}
}
