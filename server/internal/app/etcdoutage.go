package app

import (
	"context"
	"errors"
	"time"

	"github.com/mamori/mamori/server/internal/election"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/state"
)

// Writing through an etcd outage. The lease only chooses the writer; what
// keeps the log one log is the store's epoch fence (eventlog/fence.go). So
// when the writer's lease ends because etcd cannot be reached (it lost its
// quorum, or this node is cut off from it), the writer goes on committing
// under its epoch: no other node can claim the store without first winning
// an election, which needs a quorum; and if one did (this node was the cut
// off one), the first commit after its claim fails by the fence and this
// node steps down. docs/high-availability.md has the reasoning.

// outageCheckEvery is how often a writer riding out an outage asks etcd
// and the store's epoch.
const outageCheckEvery = time.Second

// rideOutage is called when term's lease has ended. It returns the term to
// go on with (the same lease resumed, or a new election won), or nil and
// why to step down: at once when etcd answers (the lease truly ended,
// another node may be elected), and when ctx ends.
func (s *Server) rideOutage(ctx context.Context, cand *election.Candidate, term *election.Term) (*election.Term, string) {
	const (
		lapsed = "the writer lease ended while etcd answers (this process was paused longer than the lease, or another node was elected)"
		fenced = "a newer writer claimed the event store while etcd was unavailable to this node"
		lost   = "etcd answers again, and another node holds or awaits the writer role"
	)
	if err := s.state.Reachable(ctx); !errors.Is(err, state.ErrUnavailable) {
		return nil, lapsed
	}
	mine := s.storeEpoch()
	s.log.Warn().Int64("epoch", mine).Msg("writer lease lost while etcd is unavailable: writing on under the same epoch " +
		"(the store's fence stops this node if another one is elected and claims it)")
	s.role.outage.Store(true)
	defer s.role.outage.Store(false)
	tick := time.NewTicker(outageCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ""
		case <-tick.C:
		}
		// A newer writer claimed the store (this node was the one cut off):
		// its commits already fail; stop.
		if stored, err := s.store.StoredEpoch(ctx); err == nil && stored > mine {
			s.log.Warn().Int64("epoch", mine).Int64("store", stored).Msg("a newer writer claimed the event store during the etcd outage")
			return nil, fenced
		}
		if s.state.Reachable(ctx) != nil {
			continue
		}
		next, err := cand.Resume(ctx, term)
		if err == nil {
			s.log.Warn().Int64("epoch", next.Epoch).Msg("etcd answers again: still the writer (its lease outlived the outage)")
			return next, ""
		}
		if !errors.Is(err, election.ErrTermOver) {
			s.log.Debug().Err(err).Msg("resuming the writer term")
			continue
		}
		if next := s.reelect(ctx, cand); next != nil {
			return next, ""
		}
		return nil, lost
	}
}

// reelect campaigns after an outage in which this node's lease ended in
// etcd: if another node holds or awaits the role it steps down (nil);
// otherwise it must win at once, and claims the store with its new epoch.
func (s *Server) reelect(ctx context.Context, cand *election.Candidate) *election.Term {
	if _, err := cand.Current(ctx); !errors.Is(err, election.ErrNoWriter) {
		return nil // another candidate comes first (or etcd failed again): stand by
	}
	cctx, cancel := context.WithTimeout(ctx, election.DefaultTTL)
	term, err := cand.Campaign(cctx)
	cancel()
	if err != nil {
		s.log.Warn().Err(err).Msg("etcd answers again but this node was not elected again")
		return nil
	}
	epoch, err := s.writerEpoch(ctx, term)
	if err == nil {
		err = s.store.ClaimEpoch(ctx, epoch)
	}
	if err != nil {
		s.log.Error().Err(err).Msg("elected again after the etcd outage, but could not claim the event store: resigning")
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		term.Resign(rctx)
		cancel()
		return nil
	}
	s.log.Warn().Int64("epoch", epoch).Msg("etcd answers again: elected writer again")
	return term
}

// storeEpoch is the epoch the store commits with.
func (s *Server) storeEpoch() int64 {
	if e, ok := s.store.(interface{ Epoch() int64 }); ok {
		return e.Epoch()
	}
	return 0
}

// InEtcdOutage reports whether this node is the writer writing on without
// a lease because etcd is unavailable.
func (s *Server) InEtcdOutage() bool { return s.role.outage.Load() }

// Both stores say their epoch (storeEpoch).
var (
	_ interface{ Epoch() int64 } = (*eventlog.SQLite)(nil)
	_ interface{ Epoch() int64 } = (*eventlog.Postgres)(nil)
)
