// Package election chooses the one server that writes the event log, by an
// etcd lease election (go.etcd.io/etcd/client/v3/concurrency): a candidate
// campaigns with a session lease of a few seconds and, once elected, holds a
// Term whose Epoch (the create revision of its leader key) only grows from
// one writer to the next, so the event store can refuse the commits of an
// older writer (fencing). Lost is closed when the lease ends: the process
// froze or lost etcd for longer than the TTL, or resigned.
//
// The embedded single-node etcd of the default install runs the same code:
// its only candidate wins at once.
package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// DefaultPrefix is the etcd key prefix of the writer election.
const DefaultPrefix = "/mamori/election/writer/"

// DefaultTTL is the session lease: how long a frozen or cut-off writer
// keeps the role before a standby can take over.
const DefaultTTL = 5 * time.Second

// Config configures a Candidate.
type Config struct {
	Client *clientv3.Client
	// URL is what this node advertises while it is the writer (its agent
	// plane's base URL); standbys send agents' batches there.
	URL string
	// TTL of the session lease; rounded up to whole seconds, default
	// DefaultTTL.
	TTL    time.Duration
	Prefix string // default DefaultPrefix
	Log    zerolog.Logger
}

// Candidate campaigns for the writer role. It is safe for concurrent use,
// but Campaign is meant to be called by one goroutine at a time.
type Candidate struct {
	cfg Config
	log zerolog.Logger
}

// New returns a candidate; nothing is written to etcd until Campaign.
func New(cfg Config) (*Candidate, error) {
	if cfg.Client == nil {
		return nil, errors.New("election: Config.Client is nil")
	}
	if cfg.URL == "" {
		return nil, errors.New("election: Config.URL is empty")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	return &Candidate{cfg: cfg, log: cfg.Log.With().Str("component", "election").Logger()}, nil
}

// Term is one tenure as writer.
type Term struct {
	// Epoch is the create revision of the leader key: larger than that of
	// every earlier term in this etcd cluster.
	Epoch   int64
	session *concurrency.Session
	elect   *concurrency.Election
}

// Lost is closed when the term's lease has ended (expired, revoked, or
// the client closed): the node is no longer the writer and must stop.
func (t *Term) Lost() <-chan struct{} { return t.session.Done() }

// ErrTermOver is returned by Resume when the term's lease no longer
// exists in etcd: it expired or was revoked, and another node may have
// been elected since.
var ErrTermOver = errors.New("election: the term's lease has ended in etcd")

// Resume takes up a term whose Lost fired because this process could not
// reach etcd (no quorum, cut off), if etcd still holds its lease: then its
// leader key still exists, no other node can have been elected meanwhile,
// and the term goes on with the same Epoch under a new session of the same
// lease. (etcd does not expire leases while it has no leader and extends
// them when a leader is elected again.) A lease that ended in etcd gives
// ErrTermOver; other errors mean etcd did not answer, try again.
func (c *Candidate) Resume(ctx context.Context, t *Term) (*Term, error) {
	id := t.session.Lease()
	if _, err := c.cfg.Client.KeepAliveOnce(ctx, id); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return nil, ErrTermOver
		}
		return nil, fmt.Errorf("election: resume: %w", err)
	}
	ttl := int((c.cfg.TTL + time.Second - 1) / time.Second)
	s, err := concurrency.NewSession(c.cfg.Client, concurrency.WithLease(id), concurrency.WithTTL(ttl),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("election: resume: %w", err)
	}
	w, err := c.Current(ctx)
	if err != nil || w.Epoch != t.Epoch {
		s.Orphan() // not Close: that would revoke a lease that may still be the leader's
		if err == nil || errors.Is(err, ErrNoWriter) {
			return nil, ErrTermOver
		}
		return nil, fmt.Errorf("election: resume: %w", err)
	}
	e := concurrency.ResumeElection(s, c.cfg.Prefix, t.elect.Key(), t.Epoch)
	c.log.Info().Int64("epoch", t.Epoch).Msg("writer term resumed: etcd kept the lease")
	return &Term{Epoch: t.Epoch, session: s, elect: e}, nil
}

// Resign gives the role up at once (a standby may take over without
// waiting out the TTL) and ends the session.
func (t *Term) Resign(ctx context.Context) error {
	rerr := t.elect.Resign(ctx)
	cerr := t.session.Close()
	if err := errors.Join(rerr, cerr); err != nil {
		return fmt.Errorf("election: resign: %w", err)
	}
	return nil
}

// Campaign blocks until this node is the writer or ctx ends. Each term has
// a session of its own: a lease that ended cannot be renewed.
func (c *Candidate) Campaign(ctx context.Context) (*Term, error) {
	c.revokePastLives(ctx)
	ttl := int((c.cfg.TTL + time.Second - 1) / time.Second)
	// The lease is granted under ctx, so that a campaign started while etcd
	// has no quorum ends with ctx (Close); the session outlives it.
	lease, err := c.cfg.Client.Grant(ctx, int64(ttl))
	if err != nil {
		return nil, fmt.Errorf("election: session: %w", err)
	}
	s, err := concurrency.NewSession(c.cfg.Client, concurrency.WithLease(lease.ID), concurrency.WithTTL(ttl),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("election: session: %w", err)
	}
	e := concurrency.NewElection(s, c.cfg.Prefix)
	if err := e.Campaign(ctx, c.cfg.URL); err != nil {
		s.Close()
		return nil, fmt.Errorf("election: campaign: %w", err)
	}
	// Campaign can return after the session ended (the lease expired
	// while waiting): such a term is already lost.
	select {
	case <-s.Done():
		return nil, errors.New("election: campaign: the session ended while waiting")
	default:
	}
	c.log.Info().Int64("epoch", e.Rev()).Str("url", c.cfg.URL).Msg("elected writer")
	return &Term{Epoch: e.Rev(), session: s, elect: e}, nil
}

// revokePastLives ends the leases of keys that carry this node's own URL:
// they belong to a previous process of this node (killed, or restarted by
// its service manager), since two live processes cannot serve one URL. A
// restarted writer is then elected at once instead of after the old lease
// runs out. Errors are left to the campaign, which meets them again.
func (c *Candidate) revokePastLives(ctx context.Context) {
	resp, err := c.cfg.Client.Get(ctx, c.cfg.Prefix, clientv3.WithPrefix())
	if err != nil {
		return
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) != c.cfg.URL || kv.Lease == 0 {
			continue
		}
		if _, err := c.cfg.Client.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
			c.log.Info().Str("url", c.cfg.URL).Int64("epoch", kv.CreateRevision).Msg("ended the lease of a previous process of this node")
		}
	}
}

// Writer is the current writer as etcd knows it.
type Writer struct {
	URL   string
	Epoch int64
}

// ErrNoWriter is returned by Current when no node holds the role.
var ErrNoWriter = errors.New("election: no writer elected")

// Current returns the current writer, or ErrNoWriter.
func (c *Candidate) Current(ctx context.Context) (Writer, error) {
	resp, err := c.cfg.Client.Get(ctx, c.cfg.Prefix, clientv3.WithFirstCreate()...)
	if err != nil {
		return Writer{}, fmt.Errorf("election: current writer: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Writer{}, ErrNoWriter
	}
	kv := resp.Kvs[0]
	return Writer{URL: string(kv.Value), Epoch: kv.CreateRevision}, nil
}

// Observe calls fn with each new writer (and with Writer{} while there is
// none known) until ctx ends, re-watching after etcd errors.
func (c *Candidate) Observe(ctx context.Context, fn func(Writer)) {
	var (
		last Writer
		once bool
	)
	report := func(w Writer) {
		if !once || w != last {
			last, once = w, true
			fn(w)
		}
	}
	for ctx.Err() == nil {
		w, err := c.Current(ctx)
		switch {
		case errors.Is(err, ErrNoWriter):
			report(Writer{})
		case err != nil:
			c.log.Debug().Err(err).Msg("observe")
		default:
			report(w)
		}
		wctx, cancel := context.WithCancel(ctx)
		ch := c.cfg.Client.Watch(clientv3.WithRequireLeader(wctx), c.cfg.Prefix, clientv3.WithPrefix())
		for resp := range ch {
			if resp.Err() != nil {
				break
			}
			w, err := c.Current(ctx)
			switch {
			case errors.Is(err, ErrNoWriter):
				report(Writer{})
			case err == nil:
				report(w)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
