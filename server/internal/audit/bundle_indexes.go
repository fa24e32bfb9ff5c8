package audit

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/mamori/mamori/server/internal/eventlog"
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
	return x.writeBundle(ctx, w, cp, matched, spans, 0, query)
}
