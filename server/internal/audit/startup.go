package audit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/evidence"
)

// ErrTampered is wrapped by VerifyLog when the stored log no longer matches
// its content, its last signed checkpoint or the checkpoint kept outside it.
var ErrTampered = errors.New("audit: event store does not match its signed log")

// anchor is a signed tree size and root the stored log must extend.
type anchor struct {
	size     int64
	root     tlog.Hash
	what     string
	external bool // etcd's copy, which --accept-event-loss may give up
}

// VerifyLog recomputes, from every stored event's content, its hash, its
// Merkle leaf and the tree root, and checks them against the stored hashes
// and the last signed checkpoint in the store. It returns ErrTampered naming
// the first mismatch.
func VerifyLog(ctx context.Context, l Log, v note.Verifier, log zerolog.Logger) error {
	return VerifyLogAgainst(ctx, l, v, nil, log)
}

// VerifyLogAgainst is VerifyLog that also checks the store against external:
// the latest signed checkpoint kept outside the store (etcd's copy; nil when
// there is none). The store's own checkpoints go with its events, so a
// deleted or replaced events.db, or the newest rows deleted together with
// the newer checkpoint rows, leaves a store that agrees with itself;
// external does not go with them, so the store must reach its size and have
// its root there. The server runs it before serving and refuses to start on
// ErrTampered.
func VerifyLogAgainst(ctx context.Context, l Log, v note.Verifier, external []byte, log zerolog.Logger) error {
	_, _, err := verifyLog(ctx, l, v, external, nil, log)
	return err
}

// verifyLog is VerifyLogAgainst; with base (a verified mark whose signature
// was checked) it trusts the stored tree up to base.Size once the stored
// hashes give base's root, and checks only the events after it from their
// content. It returns the tree size checked and its root.
func verifyLog(ctx context.Context, l Log, v note.Verifier, external []byte, base *Mark, log zerolog.Logger) (int64, tlog.Hash, error) {
	n, root, err := verifyLogInner(ctx, l, v, external, base, log)
	return n, root, err
}

func verifyLogInner(ctx context.Context, l Log, v note.Verifier, external []byte, base *Mark, log zerolog.Logger) (int64, tlog.Hash, error) {
	var (
		anchors []anchor
		extSize int64 = -1
	)
	cp, err := l.LatestCheckpoint(ctx)
	switch {
	case errors.Is(err, eventlog.ErrNoCheckpoint):
		cp = eventlog.Checkpoint{}
	case err != nil:
		return 0, tlog.Hash{}, fmt.Errorf("audit: %w", err)
	default:
		signed, err := evidence.Open([]byte(cp.Note), v)
		if err != nil {
			return 0, tlog.Hash{}, fmt.Errorf("%w: last checkpoint (size %d): %v", ErrTampered, cp.Size, err)
		}
		if signed.Size != cp.Size || signed.Root != cp.Root {
			return 0, tlog.Hash{}, fmt.Errorf("%w: checkpoint row (size %d) differs from its signed note (size %d)", ErrTampered, cp.Size, signed.Size)
		}
		anchors = append(anchors, anchor{cp.Size, cp.Root, "the store's last signed checkpoint", false})
	}
	if external != nil {
		// Signed by another key too: the log key was replaced, which the
		// store's own checkpoints refuse as well.
		ext, err := evidence.Open(external, v)
		if err != nil {
			return 0, tlog.Hash{}, fmt.Errorf("%w: the latest checkpoint in etcd does not verify with this server's log key (%s): %v. "+
				"If the log key was replaced, restore the log-key file from a backup", ErrTampered, v.Name(), err)
		}
		anchors = append(anchors, anchor{ext.Size, ext.Root, "the latest signed checkpoint in etcd", true})
		extSize = ext.Size
	}
	n, err := l.TreeSize(ctx)
	if err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("audit: %w", err)
	}
	for _, a := range anchors {
		if n < a.size {
			err := fmt.Errorf("%w: the event store has %d events, %s covers %d (root %s): events were deleted or the store was replaced. "+
				"Restore the event store (events.db, or the PostgreSQL database) from a backup holding at least %d events, then start again",
				ErrTampered, n, a.what, a.size, a.root, a.size)
			if a.external {
				err = fmt.Errorf("%w; if those events are lost for good, start once with --accept-event-loss %d to accept the store as it is (the loss is recorded in the log)",
					err, a.size)
			}
			return 0, tlog.Hash{}, err
		}
	}
	began := time.Now()
	var done atomic.Int64 // events checked, for the progress log
	stopProgress := make(chan struct{})
	defer close(stopProgress)
	go func() { // a large store takes minutes: say so
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				log.Info().Int64("verified", done.Load()).Int64("events", n).Dur("took", time.Since(began)).
					Msg("verifying the event log before serving")
			}
		}
	}()

	// Segments of segmentSize events (a power of two, aligned) are checked
	// in parallel: each full segment is one complete subtree of the log, so
	// the segments' subtrees fold into the whole tree's root in order.
	var at []int64
	for _, a := range anchors {
		at = append(at, a.size)
	}
	// From a mark, the stored tree up to it is trusted once its stored
	// subtree hashes give the mark's signed root; the first segment starts
	// from those subtrees.
	var (
		start  int64
		prefix rootStack
	)
	if base != nil && base.Size > 0 {
		var err error
		if prefix, err = storedPrefix(l, base.Size); err != nil {
			return 0, tlog.Hash{}, fmt.Errorf("audit: %w", err)
		}
		if prefix.root() != base.Root {
			return 0, tlog.Hash{}, fmt.Errorf("%w: the stored Merkle hashes at size %d give root %s, the verified mark says %s: the store was changed",
				ErrTampered, base.Size, prefix.root(), base.Root)
		}
		start = base.Size
		// Anchors inside the trusted part: a consistency proof (from the
		// stored hashes) between each and the mark, both signed.
		for _, a := range anchors {
			if a.size > base.Size || a.size == 0 {
				continue // the empty log is a prefix of every log
			}
			proof, err := tlog.ProveTree(base.Size, a.size, l)
			if err == nil {
				err = tlog.CheckTree(proof, base.Size, base.Root, a.size, a.root)
			}
			if err != nil {
				return 0, tlog.Hash{}, fmt.Errorf("%w: %s (size %d) is not consistent with the verified mark at %d: %v", ErrTampered, a.what, a.size, base.Size, err)
			}
		}
	}
	var segs []segment
	for from := start; from < n; {
		to := min(n, (from/segmentSize+1)*segmentSize)
		segs = append(segs, segment{from: from, to: to})
		from = to
	}
	if len(segs) > 0 && start > 0 {
		segs[0].base = &prefix
	}
	nseg := len(segs)
	next := make(chan int, nseg)
	for k := range segs {
		next <- k
	}
	close(next)
	var wg sync.WaitGroup
	for range min(nseg, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				segs[k].verify(ctx, l, at, &done)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("audit: %w", err)
	}

	// The earliest problem in log order: a row's, or a chain link across
	// segments (each segment checks the links inside it).
	var (
		first    = problemAt{index: n + 1}
		lastSeen = map[string]chainEnd{}
		stack    rootStack
		problem  error
	)
	for k := range segs {
		g := &segs[k]
		first = first.earlier(g.problem)
		for _, f := range g.first {
			if prev, ok := lastSeen[f.Agent]; ok && f.Seq == prev.Seq+1 && f.Prev != prev.Hash {
				first = first.earlier(problemAt{f.Index, fmt.Errorf("%w: log index %d (agent %s, seq %d): prev does not match the hash of seq %d",
					ErrTampered, f.Index, f.Agent, f.Seq, prev.Seq)})
			}
		}
		for a, e := range g.last {
			lastSeen[a] = e
		}
		for _, a := range anchors {
			if snap, ok := g.at[a.size]; ok && problem == nil {
				pre := snap // a based segment's stack holds the prefix already
				if g.base == nil {
					pre = stack
					pre.hashes, pre.sizes = slices.Clone(stack.hashes), slices.Clone(stack.sizes)
					pre.append(snap)
				}
				if pre.root() != a.root {
					problem = fmt.Errorf("%w: the event store's tree at size %d has root %s, %s says %s: "+
						"stored events were rewritten or the store was replaced by another one. "+
						"Restore the event store from a backup taken before the change, then start again",
						ErrTampered, a.size, pre.root(), a.what, a.root)
					if a.external {
						problem = fmt.Errorf("%w; if the store is a restored backup and the events after it are lost for good, "+
							"start once with --accept-event-loss %d (the loss is recorded in the log)", problem, a.size)
					}
				}
			}
		}
		if g.base != nil {
			stack = g.stack
		} else {
			stack.append(g.stack)
		}
	}
	if first.err != nil {
		return 0, tlog.Hash{}, first.err
	}
	if problem != nil {
		return 0, tlog.Hash{}, problem
	}
	if err := checkLeafKinds(segs); err != nil {
		return 0, tlog.Hash{}, err
	}
	var signed int64 // what a signed checkpoint covers
	for _, a := range anchors {
		signed = max(signed, a.size)
	}
	if base != nil {
		if err := checkPrunedIndexed(ctx, l, segs, anchors, base); err != nil {
			return 0, tlog.Hash{}, err
		}
	} else if err := checkPruned(segs, signed); err != nil {
		return 0, tlog.Hash{}, err
	}
	if base != nil && n == base.Size {
		stack = prefix
	}
	if n > 0 {
		root, err := l.TreeHash(ctx, n)
		if err != nil {
			return 0, tlog.Hash{}, fmt.Errorf("audit: %w", err)
		}
		if root != stack.root() {
			return 0, tlog.Hash{}, fmt.Errorf("%w: stored Merkle hashes give root %s, the events give %s", ErrTampered, root, stack.root())
		}
	}
	from := int64(0)
	if base != nil {
		from = base.Size
	}
	log.Info().Int64("events", n).Int64("checked_from", from).Int64("checkpoint", cp.Size).Int64("etcd_checkpoint", extSize).
		Dur("took", time.Since(began)).Msg("event log verified")
	return n, stack.root(), nil
}

// segmentSize is how many events one worker checks at a time; a power of
// two so that a full segment is one complete subtree (tests lower it).
var segmentSize int64 = 1 << 20

// problemAt is a tamper finding and the log index it is at.
type problemAt struct {
	index int64
	err   error
}

func (p problemAt) earlier(q problemAt) problemAt {
	if q.err != nil && (p.err == nil || q.index < p.index) {
		return q
	}
	return p
}

// segment is the check of the stored events with index in [from, to).
type segment struct {
	from, to int64
	base     *rootStack // the trusted tree before from (a verified mark), or nil
	// Results.
	problem problemAt
	stack   rootStack           // the segment's subtrees, largest first
	at      map[int64]rootStack // the stack when the segment reached an anchor size
	first   []chainEnd          // each agent's first event in the segment, in log order
	last    map[string]chainEnd // each agent's last event in the segment
	// lastV1 is the last index whose leaf is of the hash alone (-1: none),
	// firstV2 the first whose leaf covers the received time too.
	lastV1, firstV2 int64
	pruned          *eventlog.Stored  // the pruned event received last
	retention       []retentionRecord // valid retention records, in log order
}

// chainEnd is what links an agent's chain across segments: not the whole
// event, which for 10,000 agents would hold 10,000 events' paths and
// attributes for the length of a scrubber's pass.
type chainEnd struct {
	Index      int64
	Agent      string
	Seq        uint64
	Prev, Hash string
}

func endOf(s *eventlog.Stored) chainEnd {
	return chainEnd{Index: s.Index, Agent: s.Agent, Seq: s.Seq, Prev: s.Prev, Hash: s.Hash}
}

// retentionRecord is a retention.pruned event's place and cutoff.
type retentionRecord struct {
	index  int64
	cutoff time.Time
}

// verify checks each row's content hash, its stored Merkle leaf, that no
// index is missing and each agent's chain inside the segment.
func (g *segment) verify(ctx context.Context, l Log, anchors []int64, done *atomic.Int64) {
	g.at, g.last = map[int64]rootStack{}, map[string]chainEnd{}
	g.lastV1, g.firstV2 = -1, g.to
	if g.base != nil {
		g.stack = rootStack{hashes: slices.Clone(g.base.hashes), sizes: slices.Clone(g.base.sizes)}
	}
	expect := g.from
	fail := func(index int64, err error) error {
		g.problem = problemAt{index, err}
		return err
	}
	check := func(s *eventlog.Stored, storedLeaf tlog.Hash) error {
		where := fmt.Sprintf("log index %d (agent %s, seq %d)", s.Index, s.Agent, s.Seq)
		if s.Index != expect {
			return fail(expect, fmt.Errorf("%w: log index %d missing: the row was deleted", ErrTampered, expect))
		}
		expect++
		// A pruned event has no content left to hash; its hash still
		// links the chain and is still the Merkle leaf checked below.
		if !s.Pruned {
			h, err := s.Event.ComputeHash()
			if err != nil || h != s.Hash {
				return fail(s.Index, fmt.Errorf("%w: %s: content changed after it was stored (hash %s, content hashes to %s)", ErrTampered, where, s.Hash, h))
			}
		}
		if prev, ok := g.last[s.Agent]; !ok {
			g.first = append(g.first, endOf(s))
		} else if s.Seq == prev.Seq+1 && s.Prev != prev.Hash {
			return fail(s.Index, fmt.Errorf("%w: %s: prev does not match the hash of seq %d", ErrTampered, where, prev.Seq))
		}
		g.last[s.Agent] = endOf(s)
		// The leaf commits to the received time too (evidence.LeafHashAt);
		// a store written before that has leaves of the hash alone, which
		// may only precede the first leaf with a received time.
		leaf, err := evidence.LeafHashAt(s.Hash, s.Received)
		if err != nil {
			return fail(s.Index, fmt.Errorf("%w: %s: %v", ErrTampered, where, err))
		}
		if storedLeaf == leaf {
			g.firstV2 = min(g.firstV2, s.Index)
		} else {
			old, _ := evidence.LeafHash(s.Hash)
			if storedLeaf != old {
				return fail(s.Index, fmt.Errorf("%w: %s: stored Merkle leaf does not match the event's hash and received time "+
					"(received %s): the row was changed after it was stored", ErrTampered, where, s.Received.Format(time.RFC3339Nano)))
			}
			leaf = old
			g.lastV1 = s.Index
		}
		if s.Pruned && (g.pruned == nil || s.Received.After(g.pruned.Received)) {
			p := *s
			g.pruned = &p
		}
		if cutoff, ok := evidence.RetentionCutoff(&s.Event); ok && !s.Pruned {
			g.retention = append(g.retention, retentionRecord{s.Index, cutoff})
		}
		g.stack.push(leaf)
		for _, a := range anchors {
			if s.Index+1 == a {
				g.at[a] = rootStack{hashes: slices.Clone(g.stack.hashes), sizes: slices.Clone(g.stack.sizes)}
			}
		}
		return nil
	}
	err := scanPages(ctx, l, g.from, g.to, func(page []eventlog.Stored) error {
		idx := make([]int64, len(page))
		for i := range page {
			idx[i] = tlog.StoredHashIndex(0, page[i].Index)
		}
		stored, err := l.ReadHashes(idx)
		if err != nil {
			return fmt.Errorf("audit: read leaves: %w", err)
		}
		for i := range page {
			if err := check(&page[i], stored[i]); err != nil {
				return err
			}
		}
		done.Add(int64(len(page)))
		return nil
	})
	switch {
	case g.problem.err != nil:
	case err != nil:
		g.problem = problemAt{g.from, err} // a read error: reported as it is
	case expect != g.to:
		g.problem = problemAt{expect, fmt.Errorf("%w: log index %d missing: the row was deleted", ErrTampered, expect)}
	}
}

// rootStack computes an RFC 6962 root incrementally: it keeps the roots of
// the complete power-of-two subtrees, largest first.
type rootStack struct {
	hashes []tlog.Hash
	sizes  []int64
}

func (r *rootStack) push(leaf tlog.Hash) { r.pushTree(leaf, 1) }

// append pushes o's subtrees after r's: right when o covers the leaves
// that follow r's, starting at a multiple of o's largest subtree.
func (r *rootStack) append(o rootStack) {
	for i := range o.hashes {
		r.pushTree(o.hashes[i], o.sizes[i])
	}
}

// pushTree adds a complete subtree of size leaves after the ones held.
func (r *rootStack) pushTree(h tlog.Hash, size int64) {
	r.hashes = append(r.hashes, h)
	r.sizes = append(r.sizes, size)
	for n := len(r.sizes); n >= 2 && r.sizes[n-1] == r.sizes[n-2]; n = len(r.sizes) {
		r.hashes[n-2] = tlog.NodeHash(r.hashes[n-2], r.hashes[n-1])
		r.sizes[n-2] *= 2
		r.hashes, r.sizes = r.hashes[:n-1], r.sizes[:n-1]
	}
}

// root folds the subtrees right to left, as RFC 6962 does for unbalanced trees.
func (r *rootStack) root() tlog.Hash {
	if len(r.hashes) == 0 {
		return tlog.Hash{}
	}
	h := r.hashes[len(r.hashes)-1]
	for i := len(r.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(r.hashes[i], h)
	}
	return h
}

// checkLeafKinds refuses a leaf of the hash alone after one that covers the
// received time: only a store written before the change has them, at its
// start, so such a row was written by hand.
func checkLeafKinds(segs []segment) error {
	firstV2 := int64(-1)
	for k := range segs {
		g := &segs[k]
		if firstV2 >= 0 && g.lastV1 >= 0 {
			return fmt.Errorf("%w: log index %d has a Merkle leaf without its received time, after index %d which has one: the row was written by hand",
				ErrTampered, g.lastV1, firstV2)
		}
		if g.firstV2 < g.to {
			if g.lastV1 > g.firstV2 {
				return fmt.Errorf("%w: log index %d has a Merkle leaf without its received time, after index %d which has one: the row was written by hand",
					ErrTampered, g.lastV1, g.firstV2)
			}
			if firstV2 < 0 {
				firstV2 = g.firstV2
			}
		}
	}
	return nil
}

// checkPruned refuses a pruned event (payload cleared) that no retention
// record covers: it must have been received before the cutoff of a whole,
// valid retention.pruned server event (evidence.RetentionCutoff) inside the
// signed part of the log (index < signed). Clearing a row by hand leaves
// just such an event.
func checkPruned(segs []segment, signed int64) error {
	var (
		newest *eventlog.Stored
		cutoff time.Time
		have   bool
	)
	for k := range segs {
		g := &segs[k]
		if g.pruned != nil && (newest == nil || g.pruned.Received.After(newest.Received)) {
			newest = g.pruned
		}
		for _, r := range g.retention {
			if r.index < signed && (!have || r.cutoff.After(cutoff)) {
				cutoff, have = r.cutoff, true
			}
		}
	}
	if newest == nil || have && newest.Received.Before(cutoff) {
		return nil
	}
	why := "no signed retention record (retention.pruned) is in the log"
	if have {
		why = fmt.Sprintf("it was received %s, after the latest signed retention cutoff %s",
			newest.Received.Format(time.RFC3339Nano), cutoff.Format(time.RFC3339Nano))
	}
	return fmt.Errorf("%w: log index %d (agent %s, seq %d): the event's content was cleared, but %s: "+
		"it was cleared by hand. Restore the event store from a backup taken before the change",
		ErrTampered, newest.Index, newest.Agent, newest.Seq, why)
}
