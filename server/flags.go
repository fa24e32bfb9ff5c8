package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/keyring"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/server/internal/state"
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
	cluster   clusterFlags
}

// clusterFlags are serve's flags for several servers on one etcd: the
// key-encryption key, joining, and the etcd client's credentials.
type clusterFlags struct {
	join         bool
	kekFile      string
	serviceName  string
	etcdCert     string
	etcdKey      string
	etcdCA       string
	etcdUser     string
	etcdPassFile string
}

// EnvEtcdPassword carries the etcd user's password when no file does: a
// flag value would show in the process list.
const EnvEtcdPassword = "MAMORI_ETCD_PASSWORD"

// fileFlags name files; install makes them absolute, as a service does
// not run in the installer's working directory.
var fileFlags = map[string]bool{"kek-file": true, "etcd-cert": true, "etcd-key": true, "etcd-ca": true, "etcd-password-file": true}

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
	c := &f.cluster
	f.fs.BoolVar(&c.join, "join", false, "add this server to a site whose first server put the shared keys into etcd (needs --etcd-endpoints, the KEK and the shared event store)")
	f.fs.StringVar(&c.kekFile, "kek-file", "", "file (mode 0600) with the site's key-encryption key, which seals the shared CA and log keys in etcd (or set "+keyring.EnvKEK+"; make one with: mamori-server kek new)")
	f.fs.StringVar(&c.serviceName, "service-name", "", "the site's shared name (load balancer or DNS name) on every server's certificate and in the enroll command; the first server records it in etcd")
	f.fs.StringVar(&c.etcdCert, "etcd-cert", "", "client certificate (PEM) for an etcd cluster with client certificate auth")
	f.fs.StringVar(&c.etcdKey, "etcd-key", "", "private key (PEM) of --etcd-cert")
	f.fs.StringVar(&c.etcdCA, "etcd-ca", "", "CA certificate (PEM) that signed the etcd servers' certificates (default: the system's roots)")
	f.fs.StringVar(&c.etcdUser, "etcd-user", "", "etcd user name (password from --etcd-password-file or "+EnvEtcdPassword+")")
	f.fs.StringVar(&c.etcdPassFile, "etcd-password-file", "", "file with the password of --etcd-user")
	f.retention = eventlog.DefaultRetention
	f.fs.Var((*retentionValue)(&f.retention), "retention", "keep event payloads this long: years (3y), days (1095d) or a Go duration (26280h); at least 2y; older events keep only their hashes")
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
	if err := checkListen(f.listen); err != nil {
		return usageError{fmt.Errorf("--listen: %w", err)}
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

// config turns the flags and the environment into an app.Config.
func (f *serveFlags) config(log zerolog.Logger) (app.Config, error) {
	return f.configEnv(log, os.Getenv)
}

func (f *serveFlags) configEnv(log zerolog.Logger, getenv func(string) string) (app.Config, error) {
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
	cfg := app.Config{DataDir: abs, Listen: f.listen, Hostnames: splitList(f.hostnames),
		EtcdEndpoints: splitList(f.etcd), EventsDSN: f.eventsDSN, Log: log, Retention: f.retention,
		AcceptEventLoss: f.lossOf, MaxConns: f.maxConns}
	if err := f.cluster.apply(&cfg, getenv); err != nil {
		return app.Config{}, err
	}
	return cfg, nil
}

// apply checks the cluster flags and reads the files and variables they
// name into cfg.
func (c *clusterFlags) apply(cfg *app.Config, getenv func(string) string) error {
	external := len(cfg.EtcdEndpoints) > 0
	if (c.etcdCert != "" || c.etcdKey != "" || c.etcdCA != "" || c.etcdUser != "" || c.etcdPassFile != "") && !external {
		return usageError{errors.New("--etcd-cert, --etcd-key, --etcd-ca, --etcd-user and --etcd-password-file are for an external etcd: give --etcd-endpoints")}
	}
	if c.etcdCert != "" || c.etcdKey != "" || c.etcdCA != "" {
		tc, err := state.ClientTLS(c.etcdCert, c.etcdKey, c.etcdCA)
		if err != nil {
			return usageError{fmt.Errorf("--etcd-cert/--etcd-key/--etcd-ca: %w", err)}
		}
		cfg.EtcdTLS = tc
	}
	if c.etcdUser != "" {
		pw := getenv(EnvEtcdPassword)
		if c.etcdPassFile != "" {
			b, err := os.ReadFile(c.etcdPassFile)
			if err != nil {
				return usageError{fmt.Errorf("--etcd-password-file: %w", err)}
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		if pw == "" {
			return usageError{fmt.Errorf("--etcd-user %s: no password (--etcd-password-file or %s)", c.etcdUser, EnvEtcdPassword)}
		}
		cfg.EtcdUser, cfg.EtcdPassword = c.etcdUser, pw
	} else if c.etcdPassFile != "" {
		return usageError{errors.New("--etcd-password-file without --etcd-user")}
	}
	kek, err := keyring.LoadKEK(c.kekFile, getenv(keyring.EnvKEK))
	if err != nil {
		return usageError{err}
	}
	if c.join {
		switch {
		case !external:
			return usageError{errors.New("--join: give --etcd-endpoints of the site's etcd (a joining server has no etcd of its own)")}
		case kek == nil:
			return usageError{fmt.Errorf("--join: give the site's key-encryption key with --kek-file or %s", keyring.EnvKEK)}
		case cfg.EventsDSN == "":
			// Its own events.db would be a second log signed with the
			// site's log key: a fork.
			return usageError{errors.New("--join: give the site's shared event store with --events-dsn postgres://... (a joining server's own events.db would fork the log)")}
		}
	}
	if c.serviceName != "" {
		if err := pki.CheckNames([]string{c.serviceName}); err != nil {
			return usageError{fmt.Errorf("--service-name: %w", err)}
		}
	}
	cfg.KEK, cfg.Join, cfg.ServiceName = kek, c.join, c.serviceName
	return nil
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
	var err2 error
	f.fs.Visit(func(fl *flag.Flag) {
		v := fl.Value.String()
		if fileFlags[fl.Name] && v != "" {
			if v, err = filepath.Abs(v); err != nil {
				err2 = fmt.Errorf("--%s: %w", fl.Name, err)
			}
		}
		switch b, _ := fl.Value.(interface{ IsBoolFlag() bool }); {
		case fl.Name == "data-dir":
		case b != nil && b.IsBoolFlag():
			// A bool flag (--join) takes no separate value.
			args = append(args, "--"+fl.Name+"="+v)
		default:
			args = append(args, "--"+fl.Name, v)
		}
	})
	return args, err2
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

// checkListen refuses a listen address the server could not listen on,
// before it opens its data: HOST:PORT or :PORT with a port number 0-65535.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT or :PORT, such as %s", addr, app.DefaultListen)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// retentionValue is --retention: years (3y), days (1095d) or a Go
// duration (26280h). A year is 365 days, as eventlog.DefaultRetention.
type retentionValue time.Duration

const retentionForms = "want years (3y), days (1095d) or a Go duration (26280h)"

// String is the shortest form Set takes back: 3y, 1000d or 26281h0m0s.
func (r *retentionValue) String() string {
	const day, year = 24 * time.Hour, 365 * 24 * time.Hour
	switch d := time.Duration(*r); {
	case d > 0 && d%year == 0:
		return fmt.Sprintf("%dy", d/year)
	case d > 0 && d%day == 0:
		return fmt.Sprintf("%dd", d/day)
	default:
		return d.String()
	}
}

func (r *retentionValue) Set(s string) error {
	d, err := parseRetention(s)
	if err != nil {
		return err
	}
	*r = retentionValue(d)
	return nil
}

func parseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"y", 365 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n < 0 || n > int64(math.MaxInt64/u.unit) {
			return 0, fmt.Errorf("%q: %s", s, retentionForms)
		}
		return time.Duration(n) * u.unit, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: %s", s, retentionForms)
	}
	return d, nil
}
