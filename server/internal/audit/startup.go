package audit

import (
	"context"
	"errors"
	"fmt"
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
	var (
		anchors []anchor
		extSize int64 = -1
	)
	cp, err := l.LatestCheckpoint(ctx)
	switch {
	case errors.Is(err, eventlog.ErrNoCheckpoint):
		cp = eventlog.Checkpoint{}
	case err != nil:
		return fmt.Errorf("audit: %w", err)
	default:
		signed, err := evidence.Open([]byte(cp.Note), v)
		if err != nil {
			return fmt.Errorf("%w: last checkpoint (size %d): %v", ErrTampered, cp.Size, err)
		}
		if signed.Size != cp.Size || signed.Root != cp.Root {
			return fmt.Errorf("%w: checkpoint row (size %d) differs from its signed note (size %d)", ErrTampered, cp.Size, signed.Size)
		}
		anchors = append(anchors, anchor{cp.Size, cp.Root, "the store's last signed checkpoint", false})
	}
	if external != nil {
		// Signed by another key too: the log key was replaced, which the
		// store's own checkpoints refuse as well.
		ext, err := evidence.Open(external, v)
		if err != nil {
			return fmt.Errorf("%w: the latest checkpoint in etcd does not verify with this server's log key (%s): %v. "+
				"If the log key was replaced, restore the log-key file from a backup", ErrTampered, v.Name(), err)
		}
		anchors = append(anchors, anchor{ext.Size, ext.Root, "the latest signed checkpoint in etcd", true})
		extSize = ext.Size
	}
	n, err := l.TreeSize(ctx)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	for _, a := range anchors {
		if n < a.size {
			return fmt.Errorf("%w: the event store has %d events, %s covers %d (root %s): events were deleted or the store was replaced. "+
				"Restore the event store (events.db, or the PostgreSQL database) from a backup holding at least %d events, then start again; "+
				"if those events are lost for good, start once with --accept-event-loss %d to accept the store as it is (the loss is recorded in the log)",
				ErrTampered, n, a.what, a.size, a.root, a.size, a.size)
		}
	}
	start := time.Now()
	var (
		expect  int64
		heads   = map[string]eventlog.Stored{}
		stack   rootStack
		problem error
	)
	check := func(s *eventlog.Stored, storedLeaf tlog.Hash) error {
		where := fmt.Sprintf("log index %d (agent %s, seq %d)", s.Index, s.Agent, s.Seq)
		if s.Index != expect {
			return fmt.Errorf("%w: log index %d missing: the row was deleted", ErrTampered, expect)
		}
		expect++
		// A pruned event has no content left to hash; its hash still
		// links the chain and is still the Merkle leaf checked below.
		if !s.Pruned {
			h, err := s.Event.ComputeHash()
			if err != nil || h != s.Hash {
				return fmt.Errorf("%w: %s: content changed after it was stored (hash %s, content hashes to %s)", ErrTampered, where, s.Hash, h)
			}
		}
		if prev, ok := heads[s.Agent]; ok && s.Seq == prev.Seq+1 && s.Prev != prev.Hash {
			return fmt.Errorf("%w: %s: prev does not match the hash of seq %d", ErrTampered, where, prev.Seq)
		}
		heads[s.Agent] = *s
		leaf, err := evidence.LeafHash(s.Hash)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrTampered, where, err)
		}
		if storedLeaf != leaf {
			return fmt.Errorf("%w: %s: stored Merkle leaf does not match the event's hash", ErrTampered, where)
		}
		stack.push(leaf)
		for _, a := range anchors {
			if problem == nil && s.Index+1 == a.size && stack.root() != a.root {
				// Reported after the scan, unless a row-level cause shows up.
				problem = fmt.Errorf("%w: the event store's tree at size %d has root %s, %s says %s: "+
					"stored events were rewritten or the store was replaced by another one. "+
					"Restore the event store from a backup taken before the change, then start again",
					ErrTampered, a.size, stack.root(), a.what, a.root)
				if a.external {
					problem = fmt.Errorf("%w; if the store is a restored backup and the events after it are lost for good, "+
						"start once with --accept-event-loss %d (the loss is recorded in the log)", problem, a.size)
				}
			}
		}
		return nil
	}
	lastNote := start
	err = scanPages(ctx, l, 0, n, func(page []eventlog.Stored) error {
		if now := time.Now(); now.Sub(lastNote) >= 10*time.Second { // a large store takes minutes: say so
			lastNote = now
			log.Info().Int64("verified", expect).Int64("events", n).Dur("took", now.Sub(start)).
				Msg("verifying the event log before serving")
		}
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
		return nil
	})
	if err != nil {
		return err
	}
	if problem != nil {
		return problem
	}
	if expect != n {
		return fmt.Errorf("%w: log index %d missing: the row was deleted", ErrTampered, expect)
	}
	if n > 0 {
		root, err := l.TreeHash(ctx, n)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if root != stack.root() {
			return fmt.Errorf("%w: stored Merkle hashes give root %s, the events give %s", ErrTampered, root, stack.root())
		}
	}
	log.Info().Int64("events", n).Int64("checkpoint", cp.Size).Int64("etcd_checkpoint", extSize).
		Dur("took", time.Since(start)).Msg("event log verified")
	return nil
}

// rootStack computes an RFC 6962 root incrementally: it keeps the roots of
// the complete power-of-two subtrees, largest first.
type rootStack struct {
	hashes []tlog.Hash
	sizes  []int64
}

func (r *rootStack) push(leaf tlog.Hash) {
	r.hashes = append(r.hashes, leaf)
	r.sizes = append(r.sizes, 1)
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
