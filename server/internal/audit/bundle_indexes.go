package audit

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/evidence"
)

// BundleIndexes writes the events at the given log indexes (an incident's
// events, a report's sample) as an evidence bundle against a checkpoint
// signed now, in the same form as Bundle: each agent's events between its
// first and last listed one go in as links, so the chain is provably whole.
func (x *Exporter) BundleIndexes(ctx context.Context, w io.Writer, indexes []int64, query map[string]string) (Summary, error) {
	cp, err := x.Checkpointer.SignNow(ctx)
	if err != nil {
		return Summary{}, err
	}
	n := cp.Size
	matched := slices.Clone(indexes)
	slices.Sort(matched)
	matched = slices.Compact(matched)
	if len(matched) > x.max() {
		return Summary{}, fmt.Errorf("%w (more than %d events)", ErrTooLarge, x.max())
	}
	type span struct{ first, last int64 }
	spans := map[string]*span{}
	for _, i := range matched {
		if i < 0 || i >= n {
			return Summary{}, fmt.Errorf("audit: export: index %d outside the signed log of %d", i, n)
		}
		p, err := x.Log.Query(ctx, eventlog.Filter{Cursor: eventlog.CursorAfter(i - 1), Limit: 1})
		if err != nil {
			return Summary{}, fmt.Errorf("audit: export: %w", err)
		}
		if len(p.Events) == 0 || p.Events[0].Index != i {
			return Summary{}, fmt.Errorf("audit: export: no event at %d", i)
		}
		a := p.Events[0].Agent
		if sp := spans[a]; sp == nil {
			spans[a] = &span{i, i}
		} else {
			sp.last = i
		}
	}
	h := evidence.Header{Origin: x.Checkpointer.Signer.Name(), PublicKey: x.PublicKey, Checkpoint: cp.Note,
		Created: time.Now().UTC(), Query: query}
	bw, err := evidence.NewWriter(w, h, x.Checkpointer.Signer)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{TreeSize: n}
	if len(matched) == 0 {
		return sum, bw.Close()
	}
	next := 0
	err = scanPages(ctx, x.Log, matched[0], matched[len(matched)-1]+1, func(page []eventlog.Stored) error {
		for i := range page {
			s := &page[i]
			en := evidence.Entry{Index: s.Index}
			switch sp := spans[s.Agent]; {
			case next < len(matched) && matched[next] == s.Index && !s.Pruned:
				next++
				en.Event = &s.Event
				sum.Events++
			case next < len(matched) && matched[next] == s.Index:
				next++
				en.Link = evidence.LinkOf(&s.Event)
				sum.Links++
			case sp != nil && sp.first < s.Index && s.Index < sp.last:
				en.Link = evidence.LinkOf(&s.Event)
				sum.Links++
			default:
				continue
			}
			proof, err := tlog.ProveRecord(n, s.Index, x.Log)
			if err != nil {
				return fmt.Errorf("audit: inclusion proof %d: %w", s.Index, err)
			}
			en.Proof = proof
			if err := bw.Add(&en); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return sum, err
	}
	return sum, bw.Close()
}
