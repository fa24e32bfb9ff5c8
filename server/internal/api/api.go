// Package api is the Mamori server's HTTP layer: the agent plane (/v1:
// enrollment, event ingest, policy long-poll, authenticated by client
// certificate) and the admin plane (/api/v1, authenticated by bearer API
// token), plus /healthz and /metrics.
//
// The package depends only on the small interfaces below, so that the real
// event store, control-plane state and CA (server/internal/eventlog, state,
// pki) plug in through thin adapters (see server/internal/app) and tests can
// use fakes.
package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/event"
)

// AppendResult is what the event store says about a stored batch.
type AppendResult struct {
	AckedSeq   uint64
	Stored     int
	Duplicates int
	Gap        bool
}

// Head is the latest stored event of one agent's stream.
type Head struct {
	Agent    string
	Seq      uint64
	Hash     string
	LastSeen time.Time
	Events   int64
}

// Filter selects events for the admin query; zero fields match everything.
type Filter struct {
	Agent, Control, Type, User, ObjectPrefix, RegisterID string
	From, To                                             time.Time
	Limit                                                int
	Cursor                                               string
}

// Stored is an event with its position in the server's Merkle log.
type Stored struct {
	event.Event
	Index    int64
	Received time.Time
	Pruned   bool // retention cleared the payload; the chain fields remain
}

// Page is one page of query results; Next is empty on the last page.
type Page struct {
	Events []Stored
	Next   string
}

// EventStore is the part of the event store the API uses. Append must
// return only once the batch is durable; its errors wrap event.ErrInvalid,
// ErrHash, ErrChain, ErrSeq or ErrWrongAgent for bad input. Query errors wrap
// ErrBadCursor for a cursor it cannot read.
type EventStore interface {
	Append(ctx context.Context, agent string, evs []event.Event) (AppendResult, error)
	AppendServer(ctx context.Context, e event.Event) (event.Event, error)
	Query(ctx context.Context, f Filter) (Page, error)
	Agents(ctx context.Context) ([]Head, error)
	TreeSize(ctx context.Context) (int64, error)
}

// EnrollToken describes an enrollment token (never its secret).
type EnrollToken struct {
	ID         string
	Expires    time.Time
	UsesLeft   int
	Created    time.Time
	CreatedBy  string
	Department string
}

// APIToken is the identity behind a bearer token.
type APIToken struct {
	ID, Name, Role string
	Created        time.Time
	Expires        time.Time // zero: does not expire (the bootstrap admin token)
	CreatedBy      string
}

// Agent is an enrolled agent's static record.
type Agent struct {
	ID, Hostname, OS, Arch, OSVersion, Department, CertSerial string
	Enrolled                                                  time.Time
	Disabled                                                  bool
	PreviousSerial                                            string
}

// ControlPlane is the part of the control-plane state (etcd) the API uses.
// Lookups of missing things return errors wrapping ErrNotFound; a bad,
// expired or used-up enrollment token one wrapping ErrTokenInvalid.
type ControlPlane interface {
	CreateEnrollToken(ctx context.Context, ttl time.Duration, uses int, createdBy string) (string, EnrollToken, error)
	ConsumeEnrollToken(ctx context.Context, plaintext string) (EnrollToken, error)
	LookupAPIToken(ctx context.Context, plaintext string) (APIToken, error)
	PutAgent(ctx context.Context, a Agent) error
	GetAgent(ctx context.Context, id string) (Agent, error)
	// SetAgentOSVersion changes only the agent's OS version (from its
	// inventory), leaving a concurrent change of the record in place.
	SetAgentOSVersion(ctx context.Context, id, v string) error
	ListAgents(ctx context.Context) ([]Agent, error)
	PutPolicy(ctx context.Context, name string, yaml []byte) error
	GetPolicy(ctx context.Context, name string) ([]byte, int64, error)
	ListPolicies(ctx context.Context) ([]string, error)
	Assignment(ctx context.Context, agentID string) (string, error)
	// WatchPolicies signals (coalesced) every change of policies or
	// assignments until ctx ends.
	WatchPolicies(ctx context.Context) <-chan struct{}
}

// Authority is the part of the Mamori CA the API uses.
type Authority interface {
	CertPEM() []byte
	SignAgent(csrPEM []byte, agentID string) (certPEM []byte, serial string, err error)
}

// Errors the adapters map their packages' errors to.
var (
	ErrNotFound     = errors.New("api: not found")
	ErrTokenInvalid = errors.New("api: enrollment token invalid, expired or used up")
	ErrBadCursor    = errors.New("api: bad cursor")
	ErrBadFilter    = errors.New("api: bad filter")
	// ErrNotWriter is wrapped by store errors that mean this node has
	// stopped being the writer (fenced by a newer one): answered 503.
	ErrNotWriter = errors.New("api: this server is no longer the writer")
)

// Roles of API tokens. Auditors read; managers also keep the registers and
// decide carry-outs; admins do everything.
const (
	RoleAdmin   = "admin"
	RoleAuditor = "auditor"
	RoleManager = "manager"
)

// Config is what New needs. AgentID extracts the agent id from a verified
// client certificate (pki.AgentID); NewAgentID mints one (pki.NewAgentID).
type Config struct {
	Store      EventStore
	State      ControlPlane
	CA         Authority
	Evidence   Evidence // checkpoints and exports; nil answers 501
	AgentID    func(cs *tls.ConnectionState) (string, bool)
	NewAgentID func() string
	Log        zerolog.Logger
	// MaxPolicyWait caps the wait= of the policy long-poll; 0 means 5m.
	MaxPolicyWait time.Duration
	// MaxAckWait is the longest wait for an ack a batch is admitted to;
	// one that would wait longer is answered 503 with Retry-After at once.
	// 0 means DefaultMaxAckWait.
	MaxAckWait time.Duration
	// MaxConcurrentBatches bounds batches decoded at once; 0 means
	// 4 × GOMAXPROCS, at least 8.
	MaxConcurrentBatches int
	// BatchReadTimeout bounds the reading of one batch body; 0 means 30s.
	BatchReadTimeout time.Duration
	// BodyReadsPerAgent and BodyReadsPerSource bound the batch bodies being
	// read at once per agent certificate and per source address (more are
	// refused with 429); 0 means 2 and 32.
	BodyReadsPerAgent, BodyReadsPerSource int
	// Revocation lists and revokes tokens and disables agents; nil leaves
	// GET /api/v1/tokens, DELETE /api/v1/tokens/{id} and the agent
	// disable/enable routes out.
	Revocation Revocation
	// Revoked reports a revoked certificate serial (pki.Revocations); the
	// agent plane refuses it on connections opened before the revocation.
	// nil: none.
	Revoked func(serial string) bool
	// Role says this node's role for GET /readyz (writer or standby); nil
	// means writer.
	Role func() string
	// Writer, when set, says whether this node is the elected writer and,
	// when it is not, the writer's URL ("" while none is known). A standby
	// redirects agents' batches to the writer (see ingest.go); GET /readyz
	// reports the role.
	Writer func() (self bool, url string)
	// Registerer receives the metrics besides the server's own registry;
	// nil is fine.
	Registerer prometheus.Registerer
	// Compliance serves GET /api/v1/compliance and /api/v1/alerts (any
	// role); nil leaves them 404.
	Compliance ComplianceHandlers
	// Registers serves the management registers and compiles each agent's
	// effective policy from them; nil leaves both out (assigned-or-default
	// policy only).
	Registers *register.Service
	// Health, when set, is asked by GET /healthz: an error (e.g. the event
	// store stopped after finding its database rolled back) answers 503
	// with the reason.
	Health func() error
	// PeerServer names another server of the site from its peer
	// certificate (pki.PeerServer); set, POST PathPeerRecords takes the
	// records a standby forwards to this node while it is the writer.
	PeerServer func(cs *tls.ConnectionState) (string, bool)
	// AdminRoutes are admin-plane routes of other packages (notifications,
	// incidents, reports), mounted behind the admin authentication.
	AdminRoutes []AdminRoute
}

// ComplianceHandlers serves the compliance resources
// (server/internal/compliance.Tracker).
type ComplianceHandlers interface {
	ServeCompliance(w http.ResponseWriter, r *http.Request)
	ServeAlerts(w http.ResponseWriter, r *http.Request)
}

// Server serves the Mamori HTTP API. Create it with New, mount Handler on an
// http.Server whose TLS config verifies client certificates if given, and
// Close it after the http.Server has shut down.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	mux     *http.ServeMux
	metrics *metrics

	agentsMu sync.RWMutex
	known    map[string]struct{} // agents known to exist in state

	policies *policyCache
	// ingestSlots bounds the batches being read and decoded at once, and so
	// the memory they take (each up to wire.MaxBatchBody).
	ingestSlots chan struct{}
	smallSlots  chan struct{} // for raw bodies up to smallBatchBody
	// storeSlots bounds the small batches being decoded or decoded and
	// waiting for their commit, and so their events in memory
	// (4 x MaxConcurrentBatches: enough to fill two of the writer's groups
	// while the next batches decode).
	storeSlots chan struct{}
	readers    *bodyReaders
	admission  *admission
	tamper     tamperLog // when suspected tampering was last recorded, per agent
	// stateSlots bounds the agent plane's etcd reads at once (agent
	// lookups, policy compilations).
	stateSlots  chan struct{}
	renewed     renewals
	peerRecords peerRecords

	cancel context.CancelFunc
	done   chan struct{}
}

// New builds the server and starts its policy watch.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("api: Config.Store is nil")
	case cfg.State == nil:
		return nil, errors.New("api: Config.State is nil")
	case cfg.CA == nil:
		return nil, errors.New("api: Config.CA is nil")
	case cfg.AgentID == nil || cfg.NewAgentID == nil:
		return nil, errors.New("api: Config.AgentID and NewAgentID are required")
	}
	if cfg.MaxConcurrentBatches <= 0 {
		cfg.MaxConcurrentBatches = max(8, 4*runtime.GOMAXPROCS(0))
	}
	if cfg.BatchReadTimeout <= 0 {
		cfg.BatchReadTimeout = 30 * time.Second
	}
	if cfg.BodyReadsPerAgent <= 0 {
		cfg.BodyReadsPerAgent = defaultBodyReadsPerAgent
	}
	if cfg.BodyReadsPerSource <= 0 {
		cfg.BodyReadsPerSource = defaultBodyReadsPerSource
	}
	if cfg.MaxAckWait <= 0 {
		cfg.MaxAckWait = DefaultMaxAckWait
	}
	if cfg.MaxPolicyWait <= 0 {
		cfg.MaxPolicyWait = 5 * time.Minute
	}
	s := &Server{
		cfg:         cfg,
		log:         cfg.Log.With().Str("component", "api").Logger(),
		known:       map[string]struct{}{},
		policies:    newPolicyCache(),
		ingestSlots: make(chan struct{}, cfg.MaxConcurrentBatches),
		smallSlots:  make(chan struct{}, cfg.MaxConcurrentBatches),
		storeSlots:  make(chan struct{}, 4*cfg.MaxConcurrentBatches),
		readers:     newBodyReaders(cfg.BodyReadsPerAgent, cfg.BodyReadsPerSource),
		admission:   newAdmission(cfg.MaxAckWait, nil),
		stateSlots:  make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0))),
		renewed:     renewals{prev: map[string]string{}},
		done:        make(chan struct{}),
	}
	m, err := newMetrics(cfg.Registerer, cfg.Store)
	if err != nil {
		return nil, fmt.Errorf("api: metrics: %w", err)
	}
	s.metrics = m
	s.mux = s.routes()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.watchPolicies(ctx)
	return s, nil
}

// Handler returns the route table.
func (s *Server) Handler() http.Handler { return s.mux }

// Close stops the policy watch and wakes every waiting long-poll.
func (s *Server) Close() error {
	s.cancel()
	<-s.done
	return nil
}
