// Package app assembles and runs the Mamori server: CA, control-plane state,
// event store and HTTP API on one TLS port, with the bootstrap files of the
// data directory. mamori-server serve is a thin wrapper around Start, and
// end-to-end tests of other packages start a real server with it:
//
//	srv, err := app.Start(ctx, app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
//		Hostnames: []string{"127.0.0.1"}, Log: zerolog.Nop()})
//	defer srv.Close()
//	// enroll with srv.URL(), srv.EnrollToken(), srv.CAFingerprint();
//	// call the admin API with "Authorization: Bearer "+srv.AdminToken().
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/server/internal/election"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/h2loop"
	"github.com/mamori/mamori/server/internal/keyring"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/server/internal/web"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
	"github.com/mamori/mamori/shared/policy"
	"github.com/mamori/mamori/shared/securefs"
	"github.com/mamori/mamori/shared/wire"
)

// Files the first start creates in the data directory.
const (
	FileCA            = "ca.pem"
	FileEnrollToken   = "enroll-token"           // secret, 0600
	FileAdminToken    = "admin-token"            // secret, 0600
	FileAdminPassword = "initial-admin-password" // secret, 0600
	FileLogKey        = keyring.FileLogKey       // note signer key, secret, 0600; none with a KEK
	FileLogKeyPub     = keyring.FileLogKeyPub    // note verifier key
	FileEvents        = "events.db"
	FileCompliance    = "compliance.json" // cache of the compliance tracker; safe to delete
)

// The bootstrap enrollment token printed on first start: long-lived and
// many-use so that a GPO/Intune rollout can use it; admins mint narrower
// ones with POST /api/v1/tokens.
const (
	BootstrapTokenTTL  = 365 * 24 * time.Hour
	BootstrapTokenUses = 10000
)

// DefaultListen is the one TLS port of the server.
const DefaultListen = ":8443"

// Config configures Start. Only DataDir is required.
type Config struct {
	DataDir string
	// Listen is the TCP address; default ":8443". Tests use "127.0.0.1:0".
	Listen string
	// Hostnames the server certificate covers; the first one goes into the
	// printed URL. Default: os.Hostname(), localhost, 127.0.0.1.
	Hostnames []string
	// EtcdEndpoints of an external etcd cluster; empty runs an embedded one
	// in DataDir/etcd.
	EtcdEndpoints []string
	// EtcdTLS, EtcdUser and EtcdPassword authenticate to an external etcd
	// (state.ClientTLS builds the first from PEM files).
	EtcdTLS                *tls.Config
	EtcdUser, EtcdPassword string
	// KEK seals the keys the servers of a site share in etcd (see package
	// keyring); nil keeps them in DataDir, as a single server does.
	KEK *keyring.KEK
	// Join adds this server to a site whose first server published the
	// keys; it creates no keys and no bootstrap secrets.
	Join bool
	// ServiceName is the site's shared name (load balancer or DNS name):
	// first on the certificate and in the printed URL.
	ServiceName string
	// EventsDSN selects the event store: a SQLite file path, optionally as
	// "sqlite:PATH", or a postgres:// URL (one server writes; see
	// eventlog.Postgres). Default DataDir/events.db.
	EventsDSN string
	Log       zerolog.Logger
	// ShutdownTimeout bounds how long Close waits for in-flight requests
	// (batches being committed); default 30s.
	ShutdownTimeout time.Duration
	// Retention keeps event payloads this long (default 3 years, at least
	// 2); older events keep only their hashes, which still prove the log.
	Retention time.Duration
	// Now is the clock compliance measures agents' silence with; default
	// time.Now. Tests inject a later time to make agents silent.
	Now func() time.Time
	// Location is the time zone the web UI shows times in; default JST.
	Location *time.Location
	// AcceptEventLoss, when it equals the size of etcd's latest checkpoint,
	// lets a store that is behind it (a restored backup) start, provided the
	// store is intact in itself; the loss becomes a violation event in the
	// log. Any other value refuses as usual: the admin names the loss.
	AcceptEventLoss int64
	// VerifierDir holds the verifier builds the web UI offers for download;
	// default the running program's folder (bin/ after `make build`).
	VerifierDir string
	// MaxConns caps open connections (see connLimiter); 0 means
	// DefaultMaxConns. Either way it stays below the fd limit minus a
	// reserve, so load never takes the descriptors etcd and the store need.
	MaxConns int
	// Version names the build in the log's record of each start as writer
	// (TypeWriterStarted); default the module version Go stamped.
	Version string
}

// rootHandler sends the agent plane, the admin API, /healthz and /metrics
// to the API and every other path to the web UI.
func rootHandler(apiH, ui http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", ui)
	for _, p := range []string{"/v1/", "/api/", "/healthz", "/readyz", "/metrics"} {
		mux.Handle(p, apiH)
	}
	return mux
}

// Server is a running Mamori server. All methods are safe for concurrent use.
type Server struct {
	cfg     Config
	ownHost string // this node's own first hostname (NodeURL)
	adopted bool   // started on a new data dir against a site etcd already held (no secrets made)
	log     zerolog.Logger
	ca      *pki.Authority
	state   *state.State
	store   eventStore
	records recordStore // the admin plane's store: records go to the writer (records.go)
	peer    peerClient
	scrub   *audit.Scrubber
	ui      *web.UI
	api     *api.Server
	ln      net.Listener
	// Serving: the real listener's connections go to the current
	// generation of http.Server (writer.go).
	httpMu     sync.Mutex
	http       *http.Server
	httpClosed bool
	handler    http.Handler
	tlsCfg     *tls.Config
	genMu      sync.RWMutex
	gen        *genListener // the generation the pump hands connections to
	pumpStop   chan struct{}
	// Roles (writer.go).
	role      roleState
	electStop context.CancelFunc
	electDone chan struct{}
	termMu    sync.Mutex
	term      *election.Term // kept at Close, to resign after the final checkpoint
	jobsMu    sync.Mutex
	jobsStop  context.CancelFunc
	jobsDone  chan struct{}
	lost      *evidence.Checkpoint // an accepted event loss, recorded once writer
	// checkedFrom is where start-up verified every event from (0: all).
	checkedFrom int64
	// noCopy is the size of the store's latest checkpoint when etcd held
	// no copy of it at start, recorded by the writer (0: none).
	noCopy   int64
	lifeStop context.CancelFunc
	conns    *connLimiter
	loop     *h2loop.Server // agents' HTTP/2 connections, after their handshake (nil off Linux)
	shakes   atomic.Int64   // TLS handshakes begun (Handshakes)
	shaking  atomic.Int64   // TLS handshakes under way
	secrets  secrets
	logPub   string
	logKey   note.Signer
	cp       *audit.Checkpointer
	tracker  *compliance.Tracker
	trkStop  context.CancelFunc
	trkDone  chan struct{} // closed when the tracker's loop has returned
	alerting *alerting     // notifier, incidents, reports (alerting.go)
	regs     *register.Service
	served   chan struct{} // closed when Serve returns
	serveErr error         // what Serve returned; read after served is closed
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

type secrets struct{ enroll, admin, password string }

// Start opens (or on first start creates) everything under cfg.DataDir and
// starts serving. It returns once the listener is bound, so Addr is valid.
// Close stops it; Start cleans up after itself when it fails.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("app: Config.DataDir is required")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("app: data dir: %w", err)
	}
	cfg.DataDir = dir
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if len(cfg.Hostnames) == 0 {
		cfg.Hostnames = DefaultHostnames()
	}
	if cfg.ServiceName != "" && strings.EqualFold(cfg.Hostnames[0], cfg.ServiceName) {
		// The first hostname is the node's own: the writer advertises it for
		// redirects, and a restarted node recognises its past life by it.
		return nil, fmt.Errorf("app: the first --hostname (%s) is the service name; list this server's own name first", cfg.Hostnames[0])
	}
	if cfg.Retention == 0 {
		cfg.Retention = eventlog.DefaultRetention
	}
	if err := audit.CheckRetention(cfg.Retention); err != nil {
		return nil, err
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.Version == "" {
		cfg.Version = "unknown"
		if info, ok := debug.ReadBuildInfo(); ok {
			cfg.Version = info.Main.Version
		}
	}
	s := &Server{cfg: cfg, log: cfg.Log.With().Str("component", "app").Logger(), served: make(chan struct{})}
	defer func() {
		if err != nil {
			s.teardown()
		}
	}()
	// Before etcd and the store open files: the fd limit decides the
	// connection cap below.
	fdLimit, fdErr := raiseFDLimit()
	// Private on Windows too: %ProgramData% lets local Users read, and the
	// dir holds the CA and log keys, tokens, etcd and the event store.
	if err := securefs.ProtectDir(dir); err != nil {
		return nil, fmt.Errorf("app: data dir: %w", err)
	}

	if s.state, err = state.Open(ctx, state.Config{DataDir: dir, Endpoints: cfg.EtcdEndpoints, Log: cfg.Log,
		TLS: cfg.EtcdTLS, Username: cfg.EtcdUser, Password: cfg.EtcdPassword}); err != nil {
		return nil, fmt.Errorf("app: state: %w", err)
	}
	keys, err := keyring.Open(ctx, keyring.Config{DataDir: dir, Hostnames: cfg.Hostnames, ServiceName: cfg.ServiceName,
		KEK: cfg.KEK, Join: cfg.Join, Etcd: s.state.Client(), Log: cfg.Log})
	if err != nil {
		return nil, fmt.Errorf("app: keys: %w", err)
	}
	// The node's own name is what the election advertises: a standby must
	// redirect to this node, not to the shared name, which may lead back to
	// a standby.
	s.ownHost = cfg.Hostnames[0]
	if keys.ServiceName != "" && strings.EqualFold(s.ownHost, keys.ServiceName) {
		return nil, fmt.Errorf("app: the first --hostname (%s) is the site's service name; list this server's own name first", s.ownHost)
	}
	s.ca, s.cfg.Hostnames, s.logPub = keys.CA, keys.Names, keys.LogVerifier
	vkey := keys.LogVerifier
	if s.logKey, err = note.NewSigner(keys.LogSigner); err != nil {
		return nil, fmt.Errorf("app: log key: %w", err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("app: log key: %w", err)
	}
	if err := joinedStore(cfg); err != nil {
		return nil, err
	}
	if s.store, err = openEvents(ctx, cfg.EventsDSN, dir, cfg.Log); err != nil {
		return nil, err
	}
	// A standby until elected (startElection, at the end): nothing commits.
	s.store.Depose()
	// Evidence first: a store that no longer matches its signed log must not
	// serve (or sign over) anything. etcd's copy of the latest checkpoint
	// lives apart from the store, so it also catches a store that lost its
	// newest events with their checkpoints, or a deleted events.db.
	etcdCP, err := s.state.LatestCheckpoint(ctx)
	if errors.Is(err, state.ErrNotFound) {
		etcdCP = nil // a new etcd: nothing to compare with yet
		// A store that has signed checkpoints had its copy in etcd: the
		// check that it was not cut back cannot run, and the log says so.
		if cp, err := s.store.LatestCheckpoint(ctx); err == nil && cp.Size > 0 {
			s.noCopy = cp.Size
		}
	} else if err != nil {
		return nil, fmt.Errorf("app: latest checkpoint from etcd: %w", err)
	}
	var lost *evidence.Checkpoint // what the admin accepted to lose, recorded below
	// From the signed "verified through N" mark only the newer part is
	// checked in full; the scrubber below re-checks the rest.
	mark, err := s.state.VerifiedMark(ctx)
	if err != nil {
		return nil, fmt.Errorf("app: verified mark from etcd: %w", err)
	}
	s.checkedFrom = audit.CheckedFrom(ctx, s.store, verifier, mark)
	if n, root, err := audit.VerifyFromMark(ctx, s.store, verifier, etcdCP, mark, cfg.Log); err != nil {
		if lost, err = acceptLoss(ctx, s, verifier, etcdCP, cfg, err); err != nil {
			return nil, fmt.Errorf("app: refusing to start: %w", err)
		}
		etcdCP = nil
	} else if msg, err := audit.StartMark(mark, verifier, n, root, s.logKey); err != nil { // keeps the scrubber's place
		return nil, fmt.Errorf("app: %w", err)
	} else if err := s.state.PutVerifiedMark(ctx, msg); err != nil {
		s.log.Warn().Err(err).Msg("verified mark not stored")
	}
	s.cp = &audit.Checkpointer{Log: s.store, Signer: s.logKey, Advance: s.state.AdvanceCheckpoint, Verifier: verifier, Logger: cfg.Log,
		Signing: s.role.self.Load} // a standby serves the writer's checkpoints
	s.lost = lost // recorded in the log by the writer (becomeWriter)
	if etcdCP == nil {
		// Give a new etcd the store's latest checkpoint now rather than when
		// the log next grows, so the next start has it to check against.
		if cp, err := s.store.LatestCheckpoint(ctx); err == nil {
			if err := s.state.PutCheckpoint(ctx, []byte(cp.Note)); err != nil {
				s.log.Warn().Err(err).Int64("size", cp.Size).Msg("checkpoint not mirrored to etcd")
			}
		}
	}
	lifeCtx, lifeStop := context.WithCancel(context.WithoutCancel(ctx))
	s.lifeStop = lifeStop
	// Checkpoints, retention and the scrubber run on the writer only
	// (startWriterJobs).
	s.scrub = &audit.Scrubber{Log: s.store, Verifier: verifier, Signer: s.logKey, Marks: s.state, Logger: cfg.Log,
		Record: func(ctx context.Context, e event.Event) error { _, err := s.store.AppendServer(ctx, e); return err }}
	exporter := &audit.Exporter{Log: s.store, Checkpointer: s.cp, PublicKey: vkey, HostNames: s.hostNames}

	regs, err := register.New(register.Config{State: s.state, Location: cfg.Location})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if err := regs.EnsureBuiltinPacks(ctx); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	// Compliance judges each host by the policy its agent really runs: the
	// pack plus the registers' folders, media and approvals, as the
	// long-polls serve it (Shared: a few etcd reads per change whatever the
	// number of agents; Effective read 3-4 keys per agent, 40,000 reads per
	// inventory of 10,000 PCs).
	effective := func(ctx context.Context, id string) (*policy.Policy, error) {
		c, err := regs.Shared(ctx, id)
		return c.Policy, err
	}
	if s.tracker, err = compliance.New(compliance.Config{Events: s.store, Now: cfg.Now, Log: cfg.Log,
		SnapshotPath: filepath.Join(dir, FileCompliance), History: compliance.StateHistory{State: s.state}, Location: cfg.Location,
		Inventory: compliance.StateInventory{State: s.state, Fallback: api.BuiltinDefault, Effective: effective}}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	trkCtx, trkStop := context.WithCancel(context.WithoutCancel(ctx))
	s.trkStop, s.trkDone = trkStop, make(chan struct{})
	go func() { s.tracker.Run(trkCtx, s.state.WatchPolicies(trkCtx)); close(s.trkDone) }()

	s.records = recordStore{eventStore: s.store, s: s}
	adminRoutes, err := s.startAlerting(ctx, regs, exporter)
	if err != nil {
		return nil, err
	}
	// Secrets only once every check passed: a refused start must leave no
	// working token behind (in the data dir or in a shared etcd).
	// A joining server adds no tokens: the site has its first server's.
	if !cfg.Join {
		if s.adopted, err = s.siteExists(ctx); err != nil {
			return nil, err
		}
		if s.adopted {
			cfg.Log.Warn().Str("data_dir", dir).Msg("app: this data dir is new but etcd already holds a site: " +
				"no bootstrap secrets made; use the site's admin login and tokens (a restore, or a server started without --join)")
		} else if err := s.bootstrap(ctx); err != nil {
			return nil, err
		}
	}
	// Revoked agent certificates, kept current from etcd for the server's
	// life.
	revoked := &pki.Revocations{}
	if err := s.state.WatchRevoked(lifeCtx, revoked.Replace); err != nil {
		return nil, fmt.Errorf("app: revoked certificates: %w", err)
	}
	if s.api, err = api.New(api.Config{Store: storeAdapter{s: s.store, records: s.records}, State: stateAdapter{s.state}, CA: s.ca,
		Evidence: evidenceAdapter{exporter}, Compliance: s.tracker, Registers: regs, AdminRoutes: adminRoutes,
		Revocation: stateAdapter{s.state}, Revoked: revoked.Revoked,
		AgentID: pki.AgentID, NewAgentID: pki.NewAgentID, PeerServer: pki.PeerServer, Log: cfg.Log, Health: s.store.Halted, Writer: s.writerInfo}); err != nil {
		return nil, err
	}

	ui, err := web.New(web.Config{Events: storeAdapter{s: s.store, records: s.records}, Evidence: evidenceAdapter{exporter}, State: s.state,
		Compliance: s.tracker, Registers: regs, PublicKey: vkey, Location: cfg.Location, Now: cfg.Now, Log: cfg.Log,
		Integrity: newIntegrity(s.store, verifier, s.state, cfg.Log, nil, lost, s.checkedFrom), VerifierDir: verifierDir(cfg.VerifierDir),
		Alerting: s.webAlerting()})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	s.ui = ui

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("app: listen: %w", err)
	}
	tlsCfg := s.ca.ServerTLS()
	// HTTP/2 lets an agent ship batches and hold its policy long-poll on one
	// connection (HTTP/1.1 needs two).
	tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	maxConns := connCap(cfg.MaxConns, fdLimit, fdErr)
	s.conns = newConnLimiter(ln, maxConns, s.log)
	tlsCfg.VerifyConnection = revoked.VerifyConnection
	s.ln = tls.NewListener(loopListener{s.conns}, tlsCfg)
	s.handler, s.tlsCfg = rootHandler(s.api.Handler(), ui), tlsCfg
	if h2loop.Supported() {
		loop, err := h2loop.New(h2loop.Config{Handler: s.handler, ConnState: s.conns.connState,
			IdleTimeout: 2 * time.Minute, ReadTimeout: 2 * time.Minute,
			MaxBodyBytes: wire.MaxBatchBody + 64<<10, // the handlers refuse more in their own words
			Log:          s.log})
		if err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
		s.loop = loop
	}
	s.pumpStop = make(chan struct{})
	s.httpMu.Lock()
	s.serveGeneration()
	s.httpMu.Unlock()
	go func() {
		s.serveErr = s.pump()
		close(s.served)
	}()
	if err := s.startElection(ctx); err != nil {
		return nil, err
	}
	lg := s.log.Info().Str("addr", s.Addr()).Str("data_dir", dir).Int("max_conns", maxConns).Str("role", s.Role())
	if fdErr == nil {
		lg = lg.Uint64("fd_limit", fdLimit)
	}
	lg.Msg("app: serving")
	return s, nil
}

// siteExists says whether this start found no bootstrap secrets in its
// data dir while etcd already holds a site (its admin user): the data dir
// is new, the site is not. Making secrets then would add a second
// never-expiring admin token and a year-long enrollment token, and write a
// password that does not log in.
func (s *Server) siteExists(ctx context.Context) (bool, error) {
	if _, err := os.Stat(filepath.Join(s.cfg.DataDir, FileEnrollToken)); !errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	users, err := s.state.ListUsers(ctx)
	if err != nil {
		return false, fmt.Errorf("app: users: %w", err)
	}
	for _, u := range users {
		if u.Name == "admin" {
			return true, nil
		}
	}
	return false, nil
}

// AdoptedSite says this server started on a new data dir against an etcd
// that already held the site, and so made no bootstrap secrets.
func (s *Server) AdoptedSite() bool { return s.adopted }

// bootstrap creates the secret files on first start and makes sure state
// knows them; a later start reuses the files and changes nothing.
func (s *Server) bootstrap(ctx context.Context) error {
	dir := s.cfg.DataDir
	var err error
	if s.secrets.enroll, err = loadOrCreateSecret(filepath.Join(dir, FileEnrollToken)); err != nil {
		return err
	}
	if s.secrets.admin, err = loadOrCreateSecret(filepath.Join(dir, FileAdminToken)); err != nil {
		return err
	}
	if s.secrets.password, err = loadOrCreateSecret(filepath.Join(dir, FileAdminPassword)); err != nil {
		return err
	}
	if err := s.state.EnsureEnrollToken(ctx, s.secrets.enroll, BootstrapTokenTTL, BootstrapTokenUses); err != nil {
		return fmt.Errorf("app: bootstrap enroll token: %w", err)
	}
	if err := s.state.EnsureAPIToken(ctx, s.secrets.admin, "admin", state.RoleAdmin); err != nil {
		return fmt.Errorf("app: bootstrap admin token: %w", err)
	}
	if err := s.state.EnsureUser(ctx, "admin", state.RoleAdmin, s.secrets.password); err != nil {
		return fmt.Errorf("app: bootstrap admin user: %w", err)
	}
	return nil
}

// eventStore is what the server needs of an event store backend.
type eventStore interface {
	eventlog.Store
	audit.Log
	Prune(ctx context.Context, cutoff time.Time) (int64, error)
	Prunable(ctx context.Context, cutoff time.Time) (int64, error)
	// Fencing (eventlog/fence.go): the writer claims the store with its
	// epoch; a node that is not the writer is deposed.
	ClaimEpoch(ctx context.Context, epoch int64) error
	StoredEpoch(ctx context.Context) (int64, error)
	Depose()
}

// openEvents opens the event store the DSN selects: PostgreSQL for
// postgres:// and postgresql:// URLs, else a SQLite file.
func openEvents(ctx context.Context, dsn, dir string, log zerolog.Logger) (eventStore, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		s, err := eventlog.OpenPostgres(ctx, dsn, log)
		if err != nil {
			return nil, fmt.Errorf("app: event store: %w", err)
		}
		return s, nil
	}
	path, err := sqlitePath(dsn, dir)
	if err != nil {
		return nil, err
	}
	s, err := eventlog.OpenSQLite(ctx, path, log)
	if err != nil {
		return nil, fmt.Errorf("app: event store: %w", err)
	}
	return s, nil
}

// joinedStore refuses a joining server an SQLite store that does not hold
// a log yet: the site's log is elsewhere (its PostgreSQL, or an SQLite file
// the site's servers share on one machine), and a new file of this
// server's own would become a second log signed with the site's key, a
// fork, once this server is elected.
func joinedStore(cfg Config) error {
	dsn := cfg.EventsDSN
	if !cfg.Join || strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return nil
	}
	path, err := sqlitePath(dsn, cfg.DataDir)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return fmt.Errorf("app: --join: the event store %s holds no log: a joining server shares the site's event store (--events-dsn postgres://...); a store of its own would be a second log signed with the site's key, a fork", path)
	}
	return nil
}

// sqlitePath reads a SQLite events DSN: a path, optionally as sqlite:PATH.
func sqlitePath(dsn, dir string) (string, error) {
	if dsn == "" {
		return filepath.Join(dir, FileEvents), nil
	}
	p := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "sqlite:")
	if p == "" {
		return "", errors.New("app: events DSN: empty SQLite path")
	}
	return p, nil
}

// DefaultHostnames are the names the server certificate covers by default.
func DefaultHostnames() []string {
	names := []string{}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		names = append(names, strings.ToLower(h))
	}
	return append(names, "localhost", "127.0.0.1")
}

// Addr is the bound listen address (host:port), e.g. "127.0.0.1:40123".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the bound TCP port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// URL is https://<first hostname>:<port>, the base URL agents enroll with.
func (s *Server) URL() string {
	return "https://" + net.JoinHostPort(s.cfg.Hostnames[0], strconv.Itoa(s.Port()))
}

// NodeURL is https://<this node's own first hostname>:<port>: the writer
// advertises it for standbys to redirect agents to. It equals URL unless a
// service name (the site's shared name) is set.
func (s *Server) NodeURL() string {
	return "https://" + net.JoinHostPort(s.ownHost, strconv.Itoa(s.Port()))
}

// DashboardURL is where an admin points a browser.
func (s *Server) DashboardURL() string { return s.URL() + "/" }

// CAFingerprint is the CA's "sha256:HEX", given to agents with the token.
func (s *Server) CAFingerprint() string { return s.ca.Fingerprint() }

// CAPEM is the CA certificate, for clients that trust it directly.
func (s *Server) CAPEM() []byte { return s.ca.CertPEM() }

// EnrollToken is the bootstrap enrollment token (the enroll-token file).
func (s *Server) EnrollToken() string { return s.secrets.enroll }

// AdminToken is the bootstrap admin API token (the admin-token file).
func (s *Server) AdminToken() string { return s.secrets.admin }

// AdminPassword is the initial password of the "admin" user.
func (s *Server) AdminPassword() string { return s.secrets.password }

// LogVerifierKey is the note verifier key of the log (log-key.pub).
func (s *Server) LogVerifierKey() string { return s.logPub }

// EnrollCommand is the exact command that enrolls an agent.
func (s *Server) EnrollCommand() string {
	return fmt.Sprintf("mamori-agent enroll --server %s --token %s --ca-hash %s", s.URL(), s.EnrollToken(), s.CAFingerprint())
}

// Store is the event store, for in-process users such as checkpointing.
func (s *Server) Store() eventlog.Store { return s.store }

// Compliance is the compliance tracker (per-host status, rates, alerts),
// for in-process users such as the web UI.
func (s *Server) Compliance() *compliance.Tracker { return s.tracker }

// State is the control-plane state.
func (s *Server) State() *state.State { return s.state }

// Close shuts down gracefully: no new connections, in-flight requests
// finish (so a batch being committed is acked, and one not yet committed is
// not acked) within ShutdownTimeout, then the event store and state close.
// It is safe to call more than once.
func (s *Server) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return s.closeErr
	}
	s.closed = true
	s.closeErr = s.teardown()
	return s.closeErr
}

func (s *Server) teardown() error {
	var errs []error
	if s.electStop != nil {
		s.electStop() // no role change from here on; a writer keeps its term
		<-s.electDone
	}
	s.httpMu.Lock()
	srv := s.http
	s.httpClosed = true
	s.httpMu.Unlock()
	if srv != nil {
		// Wake long-polls first so that Shutdown does not wait for them.
		s.api.Close()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("app: http shutdown: %w", err))
			srv.Close()
		}
		if s.loop != nil {
			if err := s.loop.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("app: agents' connections: %w", err))
			}
		}
		cancel()
		close(s.pumpStop)
		s.ln.Close()
		<-s.served
		if err := s.serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("app: serve: %w", err))
		}
	} else if s.api != nil {
		s.api.Close()
	}
	if s.ln != nil && srv == nil {
		s.ln.Close()
	}
	if s.loop != nil {
		s.loop.Close()
	}
	if s.ui != nil {
		s.ui.Close() // no more requests: record the open login-throttling windows
	}
	if s.trkStop != nil {
		s.trkStop()
		<-s.trkDone
	}
	s.stopWriterJobs() // alerting first, then a final checkpoint over everything acked
	if s.lifeStop != nil {
		s.lifeStop()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("app: event store: %w", err))
		}
	}
	s.resign() // after the final checkpoint: a standby takes over at once
	if s.state != nil {
		if err := s.state.Close(); err != nil {
			errs = append(errs, fmt.Errorf("app: state: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Wait blocks until the server stops serving (after Close, or when the
// listener fails) and returns the serve error, nil after a clean Close.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case <-s.served:
		if errors.Is(s.serveErr, http.ErrServerClosed) || errors.Is(s.serveErr, net.ErrClosed) {
			return nil
		}
		return s.serveErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acceptLoss decides whether a store that failed the start-up check against
// etcd's checkpoint may start anyway: only when the admin named exactly the
// size of that checkpoint and the store is intact in itself. It then drops
// etcd's copy, which the store's own latest checkpoint replaces.
func acceptLoss(ctx context.Context, s *Server, v note.Verifier, etcdCP []byte, cfg Config, verr error) (*evidence.Checkpoint, error) {
	if !errors.Is(verr, audit.ErrTampered) || etcdCP == nil || cfg.AcceptEventLoss == 0 {
		return nil, verr
	}
	ext, err := evidence.Open(etcdCP, v)
	if err != nil {
		return nil, verr
	}
	if ext.Size != cfg.AcceptEventLoss {
		return nil, fmt.Errorf("%w (--accept-event-loss %d does not name etcd's checkpoint, which covers %d events)",
			verr, cfg.AcceptEventLoss, ext.Size)
	}
	if err := audit.VerifyLogAgainst(ctx, s.store, v, nil, cfg.Log); err != nil {
		return nil, fmt.Errorf("the store is not intact in itself, so its loss cannot be accepted: %w", err)
	}
	if err := s.state.DeleteCheckpoint(ctx); err != nil {
		return nil, err
	}
	s.log.Error().Int64("etcd_checkpoint", ext.Size).Msg("event loss accepted by the admin: starting on the store as it is")
	return &ext, nil
}

// recordLoss puts the accepted loss into the log as a server event, so the
// gap is evidence rather than silence.
func recordLoss(ctx context.Context, s *Server, lost evidence.Checkpoint) error {
	n, err := s.store.TreeSize(ctx)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	e := event.Event{Control: "server", Type: TypeEventLossAccepted, Severity: event.Violation,
		Attrs: event.Attrs{"store_events": n, "checkpoint_events": lost.Size, "checkpoint_root": lost.Root.String(),
			"lost_events": lost.Size - n}}
	if _, err := s.store.AppendServer(ctx, e); err != nil {
		return fmt.Errorf("app: recording the accepted event loss: %w", err)
	}
	return nil
}

// TypeEventLossAccepted is the server event of an admin accepting, at
// start, a store behind etcd's checkpoint.
const TypeEventLossAccepted = "server.event_loss_accepted"

// TypeCheckpointCopyMissing is the server event of a start whose etcd held
// no copy of the store's latest checkpoint (a new or wiped etcd): the store
// could not be checked for having been cut back. attrs: checkpoint_events.
const TypeCheckpointCopyMissing = "server.checkpoint_copy_missing"

// recordNoCopy puts a start without etcd's checkpoint copy into the log.
func recordNoCopy(ctx context.Context, s *Server, size int64) error {
	e := event.Event{Control: "server", Type: TypeCheckpointCopyMissing, Severity: event.Warning,
		Attrs: event.Attrs{"checkpoint_events": size}}
	if _, err := s.store.AppendServer(ctx, e); err != nil {
		return fmt.Errorf("app: recording the missing checkpoint copy: %w", err)
	}
	return nil
}

// newHTTPServer is one generation's http.Server (see writer.go).
func (s *Server) newHTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tlsCfg.Clone(),
		ConnState:         s.conns.connState,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,  // a 16 MiB batch on a slow office link
		WriteTimeout:      10 * time.Minute, // policy long-polls are capped below this
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          newStdLog(s.cfg.Log),
		// Go's HTTP/2 framer keeps a read buffer as large as the largest
		// frame a connection sent: at the 1 MiB default, a whole gzip'd
		// batch per agent (101 MB of 644 MB live with 2,000 agents).
		HTTP2: &http.HTTP2Config{MaxReadFrameSize: 16 << 10},
	}
}
