// Command mamori-loadgen measures a running mamori-server from outside, as
// its own process, speaking the agent's protocol exactly: each simulated
// agent enrolls with its own key and certificate, ships zstd (or gzip) JSON batches
// of sealed, hash-chained, realistic file-access events (Japanese paths,
// user, process, register id) over HTTP/2 and holds the policy long-poll on
// the same connection. It can pace or saturate, open raw unauthenticated
// connections, and change the policy to time the wake of every long-poll.
// It prints events/s, ack p50/p99, and the server's CPU per event, RSS and
// file descriptors read from /proc/PID. It builds its batches before the
// clock starts, so that its own work does not take the cores of a server
// it shares a machine with.
//
//	mamori-loadgen --data-dir DATA --pid PID --agents 32 --batch 500 --duration 30s
//
// It never links server code (see deps_test.go): what it measures is what
// an agent sees.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"
)

// config is the command line.
type config struct {
	server         string
	dataDir        string
	caFile         string
	enrollToken    string
	adminToken     string
	idsFile        string
	agents         int
	batch          int
	rate           int
	raw            int
	enrollParallel int
	duration       time.Duration
	timeout        time.Duration
	policyChange   time.Duration
	connectOver    time.Duration
	longPoll       bool
	h1             bool
	pid            int
	encoding       string
}

// Bounds that keep a run from becoming something else than a measurement.
const (
	maxDuration = 10 * time.Minute
	maxAgents   = 100000
	maxRaw      = 200000
	maxBatch    = 1000 // wire.MaxBatchEvents
)

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("mamori-loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.server, "server", "https://127.0.0.1:8443", "server base URL")
	fs.StringVar(&c.dataDir, "data-dir", "", "the server's data dir: ca.pem, enroll-token and admin-token are read from it")
	fs.StringVar(&c.caFile, "ca", "", "the Mamori CA certificate (default DATA/ca.pem)")
	fs.StringVar(&c.enrollToken, "token", "", "enrollment token (default DATA/enroll-token; with an admin token a new one is minted)")
	fs.StringVar(&c.adminToken, "admin-token", "", "admin API token (default DATA/admin-token)")
	fs.StringVar(&c.idsFile, "ids", "", "JSON-lines cache of enrolled identities and their chain heads, reused by later runs")
	fs.IntVar(&c.agents, "agents", 32, "simulated agents")
	fs.IntVar(&c.batch, "batch", 500, "events per batch")
	fs.IntVar(&c.rate, "rate", 0, "events/s offered by all agents together; 0 saturates (each agent sends its next batch when the last is acked)")
	fs.IntVar(&c.raw, "raw", 0, "raw unauthenticated TLS connections, each sending one GET /healthz and then held open")
	fs.IntVar(&c.enrollParallel, "enroll-parallel", 16, "enrollments at once")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to ship")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "per-batch timeout (the agent's is 30s)")
	fs.DurationVar(&c.policyChange, "policy-change", 0, "after this long, change the default policy and time how long until every long-poll has it (needs --long-poll and an admin token)")
	fs.BoolVar(&c.longPoll, "long-poll", false, "each agent holds the policy long-poll, on its shipping connection")
	fs.DurationVar(&c.connectOver, "connect-over", 0, "agents open their long-polls spread evenly over this long, as an office's PCs come up, instead of all at once as after a server restart (needs --long-poll)")
	fs.BoolVar(&c.h1, "h1", false, "HTTP/1.1 only (two connections per agent, as before HTTP/2)")
	fs.IntVar(&c.pid, "pid", 0, "the server's process id, for CPU, RSS and fds from /proc")
	fs.StringVar(&c.encoding, "encoding", "zstd", "batch Content-Encoding: zstd (what agents send a server that takes it) or gzip (agents from before, or servers)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("loadgen: unexpected argument %q", fs.Arg(0))
	}
	switch {
	case !strings.HasPrefix(c.server, "https://"):
		return nil, fmt.Errorf("loadgen: --server %q: want https://HOST:PORT", c.server)
	case c.agents < 0 || c.agents > maxAgents:
		return nil, fmt.Errorf("loadgen: --agents %d: want 0 to %d", c.agents, maxAgents)
	case c.batch < 1 || c.batch > maxBatch:
		return nil, fmt.Errorf("loadgen: --batch %d: want 1 to %d", c.batch, maxBatch)
	case c.rate < 0:
		return nil, fmt.Errorf("loadgen: --rate %d: want 0 (saturate) or more", c.rate)
	case c.raw < 0 || c.raw > maxRaw:
		return nil, fmt.Errorf("loadgen: --raw %d: want 0 to %d", c.raw, maxRaw)
	case c.duration <= 0 || c.duration > maxDuration:
		return nil, fmt.Errorf("loadgen: --duration %s: want more than 0 and at most %s", c.duration, maxDuration)
	case c.timeout <= 0:
		return nil, fmt.Errorf("loadgen: --timeout %s: want more than 0", c.timeout)
	case c.policyChange < 0 || c.policyChange >= c.duration:
		return nil, fmt.Errorf("loadgen: --policy-change %s: want 0 (off) or less than --duration", c.policyChange)
	case c.policyChange > 0 && !c.longPoll:
		return nil, errors.New("loadgen: --policy-change needs --long-poll")
	case c.connectOver < 0 || c.connectOver > maxDuration:
		return nil, fmt.Errorf("loadgen: --connect-over %s: want 0 (all at once) to %s", c.connectOver, maxDuration)
	case c.connectOver > 0 && !c.longPoll:
		return nil, errors.New("loadgen: --connect-over needs --long-poll")
	case c.encoding != "zstd" && c.encoding != "gzip":
		return nil, fmt.Errorf("loadgen: --encoding %q: want zstd or gzip", c.encoding)
	}
	c.server = strings.TrimRight(c.server, "/")
	if c.dataDir != "" {
		if c.caFile == "" {
			c.caFile = filepath.Join(c.dataDir, "ca.pem")
		}
		if c.enrollToken == "" {
			c.enrollToken = readTrim(filepath.Join(c.dataDir, "enroll-token"))
		}
		if c.adminToken == "" {
			c.adminToken = readTrim(filepath.Join(c.dataDir, "admin-token"))
		}
	}
	if c.caFile == "" {
		return nil, errors.New("loadgen: --ca or --data-dir is required (the CA is pinned, never skipped)")
	}
	if c.agents > 0 && c.enrollToken == "" && c.adminToken == "" {
		return nil, errors.New("loadgen: --token, --admin-token or --data-dir is required to enroll agents")
	}
	if c.policyChange > 0 && c.adminToken == "" {
		return nil, errors.New("loadgen: --policy-change needs an admin token")
	}
	return c, nil
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rep.print(os.Stdout, cfg)
}

func loadRoots(path string) (*tlsRoots, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loadgen: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("loadgen: CA: %s holds no certificate", path)
	}
	return &tlsRoots{pool: pool}, nil
}
