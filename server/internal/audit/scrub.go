package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

// ScrubFailedType is the violation event the Scrubber appends when the
// stored log no longer matches its content (attrs: "problem", "size").
const ScrubFailedType = "server.scrub_failed"

// Scrubber defaults.
const (
	DefaultScrubBudget = 0.1 // share of one core
	minPassGap         = time.Minute
)

// scrubChunk is the events per step: a power of two, so each step is one
// subtree. Tests lower it.
var scrubChunk int64 = 8192

// Scrubber re-checks the whole log in the background, from each event's
// content (hash, Merkle leaf with received time, chains, pruned rows
// against retention records) up to the latest signed checkpoint, whose root
// the recomputed tree must give. It works in steps and sleeps between them
// so that it uses about Budget of one core. A clean pass signs a new
// verified mark; a problem is logged, recorded once as a ScrubFailedType
// violation event, and drops the mark so the next start checks everything
// (and refuses). A row edited in the part start-up trusts is found within
// one pass of running time: events × the per-event check cost / Budget.
// The pass's place goes into every mark (Mark.Scrubbed) and a new Run
// resumes there, so a server restarted more often than a pass takes still
// gets to the end of the log.
type Scrubber struct {
	Log      Log
	Verifier note.Verifier
	Signer   note.Signer // signs the mark after a clean pass
	Marks    MarkStore   // nil: no marks
	Record   func(ctx context.Context, e event.Event) error
	Budget   float64 // default DefaultScrubBudget
	Logger   zerolog.Logger

	mu       sync.Mutex
	reported string
	resumed  bool                  // the place was read from the mark for this Run
	problem  atomic.Pointer[error] // of the last pass; nil when clean
	passes   atomic.Int64
	at       atomic.Int64 // log index the current pass has checked up to
}

// Progress returns the log index the current pass has checked up to.
func (s *Scrubber) Progress() int64 { return s.at.Load() }

// Problem returns what the last pass found, or nil.
func (s *Scrubber) Problem() error {
	if e := s.problem.Load(); e != nil {
		return *e
	}
	return nil
}

// Passes returns how many passes finished.
func (s *Scrubber) Passes() int64 { return s.passes.Load() }

// MarkInterval is how often Run signs a mark of the latest checkpoint (and
// keeps the scrubber's place): after a kill, start-up re-reads at most this
// much ingest (at 5,000 events/s about 7 s on a 2-core machine).
const MarkInterval = time.Minute

// MarkCurrent signs a verified mark of the latest signed checkpoint, unless
// a pass of this process found a problem. Events this server appended were
// checked as they came (content hash, chain), and the log before them at
// start-up, so a restart need not read them again; edits made in the
// database afterwards are the scrubber's to find. Run calls it every
// MarkInterval; the server calls it after its final checkpoint.
func (s *Scrubber) MarkCurrent(ctx context.Context) error {
	if s.Marks == nil || s.Signer == nil || s.Problem() != nil {
		return nil
	}
	cp, err := s.Log.LatestCheckpoint(ctx)
	if errors.Is(err, eventlog.ErrNoCheckpoint) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: mark: %w", err)
	}
	s.resume(ctx)
	msg, err := SignMark(Mark{Size: cp.Size, Root: cp.Root, Time: time.Now().UTC(), Scrubbed: min(s.at.Load(), cp.Size)}, s.Signer)
	if err != nil {
		return err
	}
	s.mu.Lock() // not while a problem is being reported
	defer s.mu.Unlock()
	if s.Problem() != nil {
		return nil
	}
	return s.Marks.PutVerifiedMark(ctx, msg)
}

// Run scrubs until ctx ends, a pass after another (at least a minute
// apart), and signs a mark every MarkInterval.
func (s *Scrubber) Run(ctx context.Context) {
	s.mu.Lock()
	s.resumed = false // another writer may have moved the place since
	s.mu.Unlock()
	go func() {
		t := time.NewTicker(MarkInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.MarkCurrent(ctx); err != nil && ctx.Err() == nil {
					s.Logger.Warn().Err(err).Msg("scrubber: verified mark not stored")
				}
			}
		}
	}()
	for ctx.Err() == nil {
		began := time.Now()
		if _, err := s.Pass(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrTampered) {
			s.Logger.Warn().Err(err).Msg("scrubber: pass not finished")
		}
		select {
		case <-ctx.Done():
		case <-time.After(max(minPassGap-time.Since(began), time.Second)):
		}
	}
}

// resume takes the place of the pass under way from the stored mark, once
// per Run.
func (s *Scrubber) resume(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resumed || s.Marks == nil {
		return
	}
	b, err := s.Marks.VerifiedMark(ctx)
	if err != nil {
		return // tried again at the next pass or mark
	}
	s.resumed = true
	if m, err := OpenMark(b, s.Verifier); err == nil {
		s.at.Store(m.Scrubbed)
	}
}

// Pass checks the log through the latest signed checkpoint, from where the
// pass under way had got to (Progress; 0 for a new pass), and returns the
// size checked. A problem found is returned wrapping ErrTampered (and
// recorded); other errors are failures to check.
func (s *Scrubber) Pass(ctx context.Context) (int64, error) {
	budget := s.Budget
	if budget <= 0 || budget > 1 {
		budget = DefaultScrubBudget
	}
	cp, err := s.Log.LatestCheckpoint(ctx)
	if errors.Is(err, eventlog.ErrNoCheckpoint) || err == nil && cp.Size == 0 {
		return 0, nil // nothing signed to re-check yet (an empty log's root is not a fold of leaves)
	}
	if err != nil {
		return 0, fmt.Errorf("audit: scrub: %w", err)
	}
	target := cp.Size
	s.resume(ctx)
	start := s.at.Load() / scrubChunk * scrubChunk
	if start >= target {
		start = 0
	}
	s.at.Store(start)
	var (
		stack    rootStack
		lastSeen = map[string]chainEnd{}
		firstV2  = int64(-1)
		segs     = make([]segment, 1) // one step's results, folded as we go
		pruned   *eventlog.Stored
		records  []retentionRecord
		done     atomic.Int64
		found    error
	)
	if start > 0 {
		// Resumed: the part before start was re-checked by an earlier run.
		// Its stored subtrees start the fold (the root must still come out
		// as the signed one), and its retention records are read back for
		// the pruned-row rule. Chain links across start are not compared:
		// each event's prev is in its hash, which its leaf and so the root
		// cover.
		if stack, err = storedPrefix(s.Log, start); err != nil {
			return 0, fmt.Errorf("audit: scrub: %w", err)
		}
		if records, err = retentionBefore(ctx, s.Log, start); err != nil {
			return 0, fmt.Errorf("audit: scrub: %w", err)
		}
	}
	began := time.Now()
	for from := start; from < target && found == nil; from += scrubChunk {
		step := time.Now()
		g := &segs[0]
		*g = segment{from: from, to: min(target, from+scrubChunk)}
		g.verify(ctx, s.Log, nil, &done)
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("audit: scrub: %w", err)
		}
		if g.problem.err != nil {
			if !errors.Is(g.problem.err, ErrTampered) {
				return 0, fmt.Errorf("audit: scrub: %w", g.problem.err)
			}
			found = g.problem.err
			break
		}
		for _, f := range g.first {
			if prev, ok := lastSeen[f.Agent]; ok && f.Seq == prev.Seq+1 && f.Prev != prev.Hash {
				found = fmt.Errorf("%w: log index %d (agent %s, seq %d): prev does not match the hash of seq %d", ErrTampered, f.Index, f.Agent, f.Seq, prev.Seq)
			}
		}
		for a, e := range g.last {
			lastSeen[a] = e
		}
		if firstV2 >= 0 && g.lastV1 >= 0 || g.firstV2 < g.to && g.lastV1 > g.firstV2 {
			found = fmt.Errorf("%w: log index %d has a Merkle leaf without its received time after one with it: the row was written by hand", ErrTampered, g.lastV1)
		}
		if g.firstV2 < g.to && firstV2 < 0 {
			firstV2 = g.firstV2
		}
		if g.pruned != nil && (pruned == nil || g.pruned.Received.After(pruned.Received)) {
			pruned = g.pruned
		}
		records = append(records, g.retention...)
		stack.append(g.stack)
		s.at.Store(g.to)
		// Sleep so this step's time is Budget of the step plus the sleep.
		// (Watching ctx: a stopping server must not wait out a long pause.)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("audit: scrub: %w", ctx.Err())
		case <-time.After(time.Duration(float64(time.Since(step)) * (1 - budget) / budget)):
		}
	}
	if found == nil {
		segs[0] = segment{pruned: pruned, retention: records, to: target}
		found = checkPruned(segs, target)
	}
	if found == nil && stack.root() != cp.Root {
		found = fmt.Errorf("%w: the events' content gives root %s at size %d, the signed checkpoint says %s: stored events were changed",
			ErrTampered, stack.root(), target, cp.Root)
	}
	s.passes.Add(1)
	if found != nil {
		s.report(ctx, found, target)
		return target, found
	}
	s.problem.Store(nil)
	s.at.Store(0) // the next pass starts over
	s.Logger.Info().Int64("events", target).Int64("from", start).Dur("took", time.Since(began)).Msg("scrubber: log re-checked from content")
	if s.Marks != nil && s.Signer != nil {
		msg, err := SignMark(Mark{Size: target, Root: cp.Root, Time: time.Now().UTC()}, s.Signer)
		if err == nil {
			err = s.Marks.PutVerifiedMark(ctx, msg)
		}
		if err != nil {
			s.Logger.Warn().Err(err).Msg("scrubber: verified mark not stored")
		}
	}
	return target, nil
}

// retentionBefore returns the retention records with index below n whose
// content and stored leaf agree (the stored leaves below n are what the
// fold checks against the signed root).
func retentionBefore(ctx context.Context, l Log, n int64) ([]retentionRecord, error) {
	var out []retentionRecord
	f := eventlog.Filter{Agent: event.ServerStream, Type: evidence.RetentionType, Limit: eventlog.MaxLimit}
	for {
		p, err := l.Query(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, e := range p.Events {
			c, ok := evidence.RetentionCutoff(&e.Event)
			if e.Index >= n || !ok || e.Pruned {
				continue
			}
			if h, err := e.Event.ComputeHash(); err != nil || h != e.Hash {
				continue
			}
			leaf, err := evidence.LeafHashAt(e.Hash, e.Received)
			if err != nil {
				continue
			}
			stored, err := l.ReadHashes([]int64{tlog.StoredHashIndex(0, e.Index)})
			if err != nil {
				return nil, err
			}
			if stored[0] == leaf {
				out = append(out, retentionRecord{e.Index, c})
			}
		}
		if p.Next == "" {
			return out, nil
		}
		f.Cursor = p.Next
	}
}

// report logs a problem, drops the mark and records it once.
func (s *Scrubber) report(ctx context.Context, found error, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.problem.Store(&found)
	s.Logger.Error().Err(found).Int64("size", size).Msg("scrubber: the stored log does not match its content")
	if s.Marks != nil {
		if err := s.Marks.DropVerifiedMark(ctx); err != nil {
			s.Logger.Error().Err(err).Msg("scrubber: drop the verified mark")
		}
	}
	if s.reported == found.Error() || s.Record == nil {
		return
	}
	err := s.Record(ctx, event.Event{Control: "server", Type: ScrubFailedType, Severity: event.Violation,
		Attrs: event.Attrs{"problem": found.Error(), "size": size}})
	if err != nil {
		s.Logger.Error().Err(err).Msg("scrubber: record the problem")
		return
	}
	s.reported = found.Error()
}
