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
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

// MarkFormat is the first line of a verified mark's signed text; it keeps a
// mark from ever parsing as a checkpoint under the same key.
const MarkFormat = "mamori-verified-mark/v1"

// Mark is the server's signed statement that it checked the whole log from
// each event's content (hash, Merkle leaf, chain, retention) through Size,
// whose root is Root, at Time. Start-up trusts the stored tree up to a
// valid mark and checks only the newer part; the Scrubber keeps re-checking
// the old part in the background.
type Mark struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	Time   time.Time
	// Scrubbed is where the Scrubber's current pass had got to (it has
	// re-checked [0, Scrubbed)): the next run resumes there, so restarts
	// more frequent than a pass do not keep the end of the log unchecked.
	// Written only when not 0, so marks from before it still open.
	Scrubbed int64
}

func (m Mark) text() string {
	t := fmt.Sprintf("%s\norigin %s\nsize %d\nroot %s\ntime %s\n", MarkFormat, m.Origin, m.Size, m.Root, m.Time.UTC().Format(time.RFC3339Nano))
	if m.Scrubbed != 0 {
		t += fmt.Sprintf("scrubbed %d\n", m.Scrubbed)
	}
	return t
}

// SignMark returns the signed note of m; the origin is the signer's name.
func SignMark(m Mark, s note.Signer) ([]byte, error) {
	m.Origin = s.Name()
	b, err := note.Sign(&note.Note{Text: m.text()}, s)
	if err != nil {
		return nil, fmt.Errorf("audit: sign mark: %w", err)
	}
	return b, nil
}

// OpenMark verifies a signed mark with v and parses it strictly.
func OpenMark(b []byte, v note.Verifier) (Mark, error) {
	n, err := note.Open(b, note.VerifierList(v))
	if err != nil {
		return Mark{}, fmt.Errorf("audit: mark signature: %w", err)
	}
	var (
		m    Mark
		root string
		ts   string
	)
	const form = MarkFormat + "\norigin %s\nsize %d\nroot %s\ntime %s\n"
	if _, err := fmt.Sscanf(n.Text, form+"scrubbed %d\n", &m.Origin, &m.Size, &root, &ts, &m.Scrubbed); err != nil {
		m.Scrubbed = 0
		if _, err := fmt.Sscanf(n.Text, form, &m.Origin, &m.Size, &root, &ts); err != nil {
			return Mark{}, fmt.Errorf("audit: malformed mark: %w", err)
		}
	}
	if m.Root, err = tlog.ParseHash(root); err != nil {
		return Mark{}, fmt.Errorf("audit: malformed mark root: %w", err)
	}
	if m.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
		return Mark{}, fmt.Errorf("audit: malformed mark time: %w", err)
	}
	if m.text() != n.Text || m.Origin != v.Name() || m.Size < 0 || m.Scrubbed < 0 || m.Scrubbed > m.Size {
		return Mark{}, errors.New("audit: malformed mark: not in canonical form or not this log's")
	}
	return m, nil
}

// StartMark signs the mark a start-up check of size n with root gives,
// keeping the scrubber's place from the previous mark (prev, nil when
// none) when it lies inside the log checked.
func StartMark(prev []byte, v note.Verifier, n int64, root tlog.Hash, s note.Signer) ([]byte, error) {
	m := Mark{Size: n, Root: root, Time: time.Now().UTC()}
	if p, err := OpenMark(prev, v); err == nil && p.Scrubbed <= n {
		m.Scrubbed = p.Scrubbed
	}
	return SignMark(m, s)
}

// MarkStore keeps the latest verified mark outside the event store (etcd:
// state.VerifiedMark, state.PutVerifiedMark).
type MarkStore interface {
	VerifiedMark(ctx context.Context) ([]byte, error) // nil, nil when none
	PutVerifiedMark(ctx context.Context, b []byte) error
	DropVerifiedMark(ctx context.Context) error
}

// VerifyFromMark is VerifyLogAgainst that, given a valid signed mark (nil:
// none), checks only the events after it in full: the stored tree up to
// the mark must give its root, and each checkpoint inside it must be
// consistent with it. Payloads cleared by hand are looked for through the
// pruned-rows index over the whole log. A mark that does not verify or
// covers more than the store is ignored (a full check runs, which names
// what is wrong). It returns the size checked and its root, for the next
// mark.
func VerifyFromMark(ctx context.Context, l Log, v note.Verifier, external, mark []byte, log zerolog.Logger) (int64, tlog.Hash, error) {
	return verifyLog(ctx, l, v, external, markBase(ctx, l, v, mark, log), log)
}

// CheckedFrom is the log index from which VerifyFromMark checks every
// event in full with this mark: 0 when it checks the whole log. What the
// start says it checked must say so.
func CheckedFrom(ctx context.Context, l Log, v note.Verifier, mark []byte) int64 {
	if b := markBase(ctx, l, v, mark, zerolog.Nop()); b != nil {
		return b.Size
	}
	return 0
}

// markBase is the mark VerifyFromMark starts from; nil for none.
func markBase(ctx context.Context, l Log, v note.Verifier, mark []byte, log zerolog.Logger) *Mark {
	var base *Mark
	if mark != nil {
		m, err := OpenMark(mark, v)
		n, _ := l.TreeSize(ctx)
		switch {
		case n < FullCheckBelow:
			// Small enough to read in a few seconds: check it all.
		case err != nil:
			log.Warn().Err(err).Msg("verified mark ignored: checking the whole log")
		case m.Size > n:
			log.Warn().Int64("mark", m.Size).Int64("events", n).Msg("verified mark beyond the store: checking the whole log")
		default:
			base = &m
		}
	}
	return base
}

// FullCheckBelow is the store size under which start-up checks every
// event anyway (a few seconds at most), so on such a store an edited row is
// refused at once rather than found by the scrubber. Tests lower it.
var FullCheckBelow int64 = 1 << 18

// storedPrefix returns the stored hashes of the complete subtrees that
// make up a tree of size n, largest first.
func storedPrefix(l Log, n int64) (rootStack, error) {
	var (
		st    rootStack
		idx   []int64
		start int64
	)
	for level := 62; level >= 0; level-- {
		if n&(1<<level) == 0 {
			continue
		}
		idx = append(idx, tlog.StoredHashIndex(level, start>>level))
		st.sizes = append(st.sizes, 1<<level)
		start += 1 << level
	}
	hs, err := l.ReadHashes(idx)
	if err != nil {
		return rootStack{}, fmt.Errorf("read stored subtrees of %d: %w", n, err)
	}
	st.hashes = hs
	return st, nil
}

// prunedIndex is what checkPrunedIndexed needs beyond Log.
type prunedIndex interface {
	NewestPruned(ctx context.Context) (eventlog.Stored, bool, error)
}

// checkPrunedIndexed is checkPruned for a start from a mark: the newest
// pruned row anywhere (from the pruned-rows index) must have its received
// time signed in its leaf and lie before the cutoff of a whole, valid
// retention record inside the signed log, each record and row proven
// against the newest signed root. A row whose received time was also moved
// back by hand is left to the Scrubber.
func checkPrunedIndexed(ctx context.Context, l Log, segs []segment, anchors []anchor, base *Mark) error {
	pi, ok := l.(prunedIndex)
	if !ok {
		return nil
	}
	newest, found, err := pi.NewestPruned(ctx)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	for k := range segs { // the newer part, read in full
		if p := segs[k].pruned; p != nil && (!found || p.Received.After(newest.Received)) {
			newest, found = *p, true
		}
	}
	if !found {
		return nil
	}
	signed := anchor{size: base.Size, root: base.Root}
	for _, a := range anchors {
		if a.size > signed.size {
			signed = a
		}
	}
	proven := func(idx int64, leaf tlog.Hash) bool {
		if idx >= signed.size {
			return false
		}
		p, err := tlog.ProveRecord(signed.size, idx, l)
		return err == nil && tlog.CheckRecord(p, signed.size, signed.root, idx, leaf) == nil
	}
	var (
		cutoff time.Time
		have   bool
	)
	f := eventlog.Filter{Agent: event.ServerStream, Type: evidence.RetentionType, Limit: eventlog.MaxLimit}
	for {
		p, err := l.Query(ctx, f)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		for _, s := range p.Events {
			c, ok := evidence.RetentionCutoff(&s.Event)
			if !ok || s.Pruned {
				continue
			}
			if h, err := s.Event.ComputeHash(); err != nil || h != s.Hash {
				continue
			}
			leaf, err := evidence.LeafHashAt(s.Hash, s.Received)
			if err != nil || !proven(s.Index, leaf) {
				continue
			}
			if !have || c.After(cutoff) {
				cutoff, have = c, true
			}
		}
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	where := fmt.Sprintf("log index %d (agent %s, seq %d)", newest.Index, newest.Agent, newest.Seq)
	if newest.Index < signed.size {
		leaf, err := evidence.LeafHashAt(newest.Hash, newest.Received)
		old, _ := evidence.LeafHash(newest.Hash)
		if err != nil || !proven(newest.Index, leaf) && !proven(newest.Index, old) {
			return fmt.Errorf("%w: %s: the event's content was cleared and its received time %s is not the one signed: changed by hand",
				ErrTampered, where, newest.Received.Format(time.RFC3339Nano))
		}
	}
	if have && newest.Received.Before(cutoff) {
		return nil
	}
	why := "no signed retention record (retention.pruned) is in the log"
	if have {
		why = fmt.Sprintf("it was received %s, after the latest signed retention cutoff %s",
			newest.Received.Format(time.RFC3339Nano), cutoff.Format(time.RFC3339Nano))
	}
	return fmt.Errorf("%w: %s: the event's content was cleared, but %s: it was cleared by hand. "+
		"Restore the event store from a backup taken before the change", ErrTampered, where, why)
}
