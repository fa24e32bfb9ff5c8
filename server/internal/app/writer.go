package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/election"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/h2loop"
	"github.com/mamori/mamori/server/internal/state"
)

// Roles. Every server campaigns in the writer election (etcd lease, see
// server/internal/election); the embedded single-node default is its only
// candidate and wins at once. The writer claims the event store with its
// epoch and runs the jobs that append (checkpoints, retention, scrubbing);
// a standby serves everything else and redirects agents' batches to the
// writer. docs/high-availability.md says why.

// roleState is what the handlers ask on every request.
type roleState struct {
	self   atomic.Bool            // this node is the writer
	writer atomic.Pointer[string] // the writer's URL as etcd last said
	outage atomic.Bool            // the writer writes on without a lease: etcd is unavailable (etcdoutage.go)
}

// epochBaseKey (below state.Prefix) holds what is added to the election's
// revisions to make the store's writer epoch: 0 until a new etcd is put
// beside a store that a writer of another etcd claimed with a larger epoch.
const epochBaseKey = "writer-epoch-base"

// goawayGrace is how long a connection of the old role may finish what is
// in flight (a long-poll is cut after it) once GOAWAY is sent; goawayPause
// comes before it (see goaway).
// EmbeddedLeaseTTL is the writer lease on the embedded etcd.
const EmbeddedLeaseTTL = 30 * time.Second

const (
	goawayGrace = 10 * time.Second
	goawayPause = time.Second
)

// writerInfo implements api.Config.Writer.
func (s *Server) writerInfo() (bool, string) {
	if s.role.self.Load() {
		return true, s.NodeURL()
	}
	url := ""
	if p := s.role.writer.Load(); p != nil && *p != s.NodeURL() {
		url = *p // never our own key of a previous life: no redirect to ourselves
	}
	return false, url
}

// Role is "writer" or "standby".
func (s *Server) Role() string {
	if s.role.self.Load() {
		return "writer"
	}
	return "standby"
}

// startElection campaigns for the writer role for the server's life and
// returns once this node is the writer or knows another one is, or with
// the error that kept it from taking over the store when first elected.
func (s *Server) startElection(ctx context.Context) error {
	// On the embedded etcd the lease is long: a machine busy enough to starve
	// one process for the 5 s of a cluster's lease (a CI run under -race
	// with a browser beside it did) would otherwise depose the only writer.
	// Servers that share a site use an external cluster and its short lease.
	ttl := election.DefaultTTL
	if len(s.cfg.EtcdEndpoints) == 0 {
		ttl = EmbeddedLeaseTTL
	}
	cand, err := election.New(election.Config{Client: s.state.Client(), URL: s.NodeURL(), TTL: ttl, Log: s.cfg.Log})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	ectx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.electStop, s.electDone = stop, make(chan struct{})
	var once sync.Once
	decided := make(chan error, 1)
	decide := func(err error) { once.Do(func() { decided <- err }) }
	observed := make(chan struct{})
	go func() {
		defer close(observed)
		cand.Observe(ectx, func(w election.Writer) {
			s.role.writer.Store(&w.URL)
			if w.URL != "" && w.URL != s.NodeURL() {
				decide(nil)
			}
		})
	}()
	go func() {
		defer close(s.electDone)
		s.campaign(ectx, cand, decide)
		<-observed
	}()
	select {
	case err := <-decided:
		return err
	case <-ctx.Done():
		return fmt.Errorf("app: writer election: %w", ctx.Err())
	}
}

// campaign is the role loop: campaign, serve as writer until the lease is
// lost, step down, campaign again; until ctx ends (Close), when a writer
// keeps its term for teardown to resign after the final checkpoint.
func (s *Server) campaign(ctx context.Context, cand *election.Candidate, decided func(error)) {
	for ctx.Err() == nil {
		term, err := cand.Campaign(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("writer election: campaigning again in 1s")
				sleep(ctx, time.Second)
			}
			continue
		}
		if err := s.becomeWriter(ctx, term); err != nil {
			decided(err) // at start: refuse to start, saying why
			s.log.Error().Err(err).Int64("epoch", term.Epoch).Msg("elected, but could not take over the event store: resigning")
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			term.Resign(rctx)
			cancel()
			sleep(ctx, 2*time.Second)
			continue
		}
		decided(nil)
		why := s.holdTerm(ctx, cand, term)
		if why == "" {
			return
		}
		s.stepDown(why)
	}
}

// holdTerm serves as writer until the term is lost for good (it returns
// why, to step down) or ctx ends ("": the term is kept for teardown to
// resign). A
// lease lost only because etcd is unavailable does not end the term: the
// writer rides out the outage (etcdoutage.go) and goes on with the term it
// gets back.
func (s *Server) holdTerm(ctx context.Context, cand *election.Candidate, term *election.Term) string {
	for {
		select {
		case <-term.Lost():
			next, why := s.rideOutage(ctx, cand, term)
			if next == nil {
				if ctx.Err() != nil {
					return ""
				}
				return why
			}
			term = next
		case <-ctx.Done():
			s.termMu.Lock()
			s.term = term
			s.termMu.Unlock()
			return ""
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// becomeWriter claims the event store with the term's epoch, which loads
// the log head the last writer left (no re-verification: the store's
// tail and etcd's checkpoint were checked at start, and the scrubber goes
// on from the signed mark), then starts the writer's jobs and takes
// batches.
func (s *Server) becomeWriter(ctx context.Context, term *election.Term) error {
	epoch, err := s.writerEpoch(ctx, term)
	if err != nil {
		return err
	}
	err = s.store.ClaimEpoch(ctx, epoch)
	if errors.Is(err, eventlog.ErrFenced) {
		if epoch, err = s.raiseEpochBase(ctx, term); err == nil {
			err = s.store.ClaimEpoch(ctx, epoch)
		}
	}
	if err != nil {
		return fmt.Errorf("app: claim the event store: %w", err)
	}
	if s.lost != nil {
		if err := recordLoss(ctx, s, *s.lost); err != nil {
			s.store.Depose()
			return err
		}
		s.lost = nil
	}
	if s.noCopy > 0 {
		if err := recordNoCopy(ctx, s, s.noCopy); err != nil {
			s.store.Depose()
			return err
		}
		s.noCopy = 0
	}
	if err := s.recordStart(ctx, epoch); err != nil {
		// The term goes on: refusing it would stop ingest, and the next
		// start names the missing record (an unclean stop) anyway.
		s.log.Error().Err(err).Msg("the log has no record of this start")
	}
	s.startWriterJobs(epoch)
	s.role.self.Store(true)
	s.log.Info().Int64("epoch", epoch).Msg("writer: taking batches")
	return nil
}

// writerEpoch is the base plus the term's leader revision.
func (s *Server) writerEpoch(ctx context.Context, term *election.Term) (int64, error) {
	base, _, err := s.epochBase(ctx)
	return base + term.Epoch, err
}

func (s *Server) epochBase(ctx context.Context) (base, rev int64, err error) {
	rev, err = s.state.GetJSON(ctx, epochBaseKey, &base)
	if errors.Is(err, state.ErrNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("app: writer epoch base: %w", err)
	}
	return base, rev, nil
}

// raiseEpochBase handles a store claimed with an epoch this etcd cannot
// have given (above the base plus its current revision: revisions only
// grow): a new etcd beside an existing store, whose revisions start again
// from 1. It raises the base to the store's epoch once, so every later
// epoch of this etcd is newer. A store claimed by a newer writer of this
// same etcd is not touched: that writer stays.
func (s *Server) raiseEpochBase(ctx context.Context, term *election.Term) (int64, error) {
	stored, err := s.store.StoredEpoch(ctx)
	if err != nil {
		return 0, err
	}
	base, rev, err := s.epochBase(ctx)
	if err != nil {
		return 0, err
	}
	resp, err := s.state.Client().Get(ctx, state.Prefix+epochBaseKey)
	if err != nil {
		return 0, fmt.Errorf("app: etcd revision: %w", err)
	}
	if stored <= base+resp.Header.Revision {
		return 0, fmt.Errorf("%w: epoch %d is held by a newer writer", eventlog.ErrFenced, stored)
	}
	if _, err := s.state.PutJSON(ctx, epochBaseKey, stored, rev); err != nil {
		return 0, fmt.Errorf("app: writer epoch base: %w", err)
	}
	s.log.Warn().Int64("base", stored).Msg("a new etcd beside a claimed event store: writer epochs continue above the store's")
	return stored + term.Epoch, nil
}

// stepDown ends this node's term: no batch is acked from here on (the
// handlers redirect, and the store is deposed so a commit in flight fails by
// the epoch check), agents are told to reconnect, and the writer's jobs
// stop.
func (s *Server) stepDown(why string) {
	s.role.self.Store(false)
	s.store.Depose()
	s.log.Error().Str("why", why).Msg("no longer the writer: standing by")
	s.goaway()
	s.stopWriterJobs()
}

// startWriterJobs runs the checkpointer, retention, the scrubber and
// whatever raises or delivers alerts (writerAlerting) until
// stopWriterJobs. Those stop first, so the final checkpoint covers what
// they recorded.
func (s *Server) startWriterJobs(epoch int64) {
	ctx, stop := context.WithCancel(context.Background())
	cpCtx, cpStop := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.jobsMu.Lock()
	s.jobsStop, s.jobsDone = stop, done
	s.jobsMu.Unlock()
	retainer := &audit.Retainer{Log: s.store, Keep: s.cfg.Retention, Logger: s.cfg.Log,
		Sign: func(ctx context.Context) error { _, err := s.cp.SignNow(ctx); return err }}
	go func() {
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); retainer.Run(ctx) }()
		go func() { defer wg.Done(); s.scrub.Run(ctx) }()
		go func() { defer wg.Done(); s.writerAlerting(ctx) }()
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			wg.Wait()
			// The term's last record, under the final checkpoint, by a
			// writer stopping as it should (stepDown has deposed it first).
			if s.role.self.Load() {
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := s.recordStop(rctx, epoch); err != nil {
					s.log.Warn().Err(err).Msg("the log has no record of this stop")
				}
				cancel()
			}
			cpStop()
		}()
		s.cp.Run(cpCtx)
		<-stopped
		// A mark of the final checkpoint, by a writer that still is one: the
		// next start checks only what comes after it.
		if s.role.self.Load() {
			mctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.scrub.MarkCurrent(mctx); err != nil {
				s.log.Warn().Err(err).Msg("verified mark not stored")
			}
			cancel()
		}
		close(done)
	}()
}

// stopWriterJobs stops them (the checkpointer signs a final checkpoint,
// which fails harmlessly once deposed) and waits.
func (s *Server) stopWriterJobs() {
	s.jobsMu.Lock()
	stop, done := s.jobsStop, s.jobsDone
	s.jobsStop, s.jobsDone = nil, nil
	s.jobsMu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// resign gives up a term kept at Close, so a standby takes over at once.
func (s *Server) resign() {
	s.termMu.Lock()
	term := s.term
	s.term = nil
	s.termMu.Unlock()
	if term == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := term.Resign(ctx); err != nil {
		s.log.Warn().Err(err).Msg("writer lease not given up: a standby takes over when it expires")
	}
}

// Connections. The real listener's connections are handed to the current
// generation of http.Server. A role change starts a new generation and
// shuts the old one down, which sends HTTP/2 GOAWAY on its connections (and
// closes idle HTTP/1.1 ones): agents reconnect, through their server list
// or the load balancer, to a node that serves them as the new roles say.

// genListener is one generation's view of the real listener: it gets the
// connections the pump hands it while it is the current generation.
type genListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func (l *genListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *genListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }

func (l *genListener) Addr() net.Addr { return l.addr }

// pump accepts from the real listener until it fails or is closed. With
// the agents' loop, each connection's handshake runs in its own goroutine
// (as net/http would run it) and route decides who serves it; without, the
// connection goes to the current generation as it is.
func (s *Server) pump() error {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return err
		}
		if s.loop != nil {
			go s.route(c.(*tls.Conn))
			continue
		}
		if !s.toGeneration(c) {
			return http.ErrServerClosed
		}
	}
}

// handshakeTimeout bounds a client's TLS handshake, as ReadHeaderTimeout
// bounds it under net/http.
const handshakeTimeout = 10 * time.Second

// route hands an enrolled agent's HTTP/2 connection to the loop, which
// keeps no goroutine per idle connection or held long-poll, and every other
// connection (browsers, admin tools, enrollment, HTTP/1.1) to net/http.
func (s *Server) route(tc *tls.Conn) {
	s.shakes.Add(1)
	s.shaking.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	s.shaking.Add(-1)
	if err != nil {
		s.log.Debug().Err(err).Str("remote", tc.RemoteAddr().String()).Msg("TLS handshake failed")
		tc.Close()
		return
	}
	if h2loop.ServesConn(tc.ConnectionState()) {
		if err := s.loop.Serve(tc); err != nil {
			tc.Close()
		}
		return
	}
	s.toGeneration(tc)
}

// Handshakes returns how many TLS handshakes the listener has begun and
// how many are under way: many is agents reconnecting together (the
// collector's tuner keeps the heap tight then).
func (s *Server) Handshakes() (begun, underWay int64) { return s.shakes.Load(), s.shaking.Load() }

// toGeneration hands a connection to the current generation; false when
// the server is closing. It holds genMu (shared) while handing over, so
// once goaway has switched generations no connection reaches the old one.
func (s *Server) toGeneration(c net.Conn) bool {
	s.genMu.RLock()
	defer s.genMu.RUnlock()
	g := s.gen
	select {
	case g.conns <- c:
		return true
	case <-g.done: // the last generation, shut down by Close
		c.Close()
		return true
	case <-s.pumpStop:
		c.Close()
		return false
	}
}

// serveGeneration starts a new http.Server and makes it the one the pump
// hands connections to; the caller holds httpMu.
func (s *Server) serveGeneration() {
	srv := s.newHTTPServer()
	l := &genListener{conns: make(chan net.Conn), done: make(chan struct{}), addr: s.ln.Addr()}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error().Err(err).Msg("serve")
		}
	}()
	s.genMu.Lock()
	s.gen = l
	s.genMu.Unlock()
	s.http = srv
}

// goaway moves serving to a new generation and then shuts the old one
// down. The pause first lets a connection the old one accepted just before
// the switch send its first request: http.Server drops a request it reads
// after Shutdown began (the client sees EOF).
func (s *Server) goaway() {
	s.httpMu.Lock()
	if s.httpClosed || s.http == nil {
		s.httpMu.Unlock()
		return
	}
	old := s.http
	s.serveGeneration()
	s.httpMu.Unlock()
	if s.loop != nil {
		// The agents' connections taken so far were served as the old
		// roles said: they get GOAWAY too and reconnect.
		s.loop.GoAway(goawayPause + goawayGrace)
	}
	go func() {
		time.Sleep(goawayPause)
		ctx, cancel := context.WithTimeout(context.Background(), goawayGrace)
		defer cancel()
		if err := old.Shutdown(ctx); err != nil {
			old.Close()
		}
	}()
}
