// Package audit turns the server's event store into evidence: it signs
// checkpoints of the Merkle log (kept in the store and mirrored to etcd),
// checks on start that the stored log still matches its last signed
// checkpoint and etcd's copy, and exports evidence bundles (shared/evidence,
// each ending with a signed manifest) and CSV files for auditors.
package audit

import (
	"context"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
)

// Log is what audit needs of the event store (eventlog.SQLite has it).
type Log interface {
	TreeSize(ctx context.Context) (int64, error)
	TreeHash(ctx context.Context, n int64) (tlog.Hash, error)
	ReadHashes(indexes []int64) ([]tlog.Hash, error)
	Query(ctx context.Context, f eventlog.Filter) (eventlog.Page, error)
	PutCheckpoint(ctx context.Context, c eventlog.Checkpoint) error
	LatestCheckpoint(ctx context.Context) (eventlog.Checkpoint, error)
	CheckpointAt(ctx context.Context, size int64) (eventlog.Checkpoint, error)
}

// scanPages calls fn with the stored events with index in [from, to), in
// order, a page at a time.
func scanPages(ctx context.Context, l Log, from, to int64, fn func([]eventlog.Stored) error) error {
	// The next page is read while fn works on this one: on a large store
	// reading and checking each take about half the time, on two cores.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type page struct {
		evs []eventlog.Stored
		err error
	}
	pages := make(chan page, 1)
	go func() {
		defer close(pages)
		f := eventlog.Filter{Limit: eventlog.MaxLimit, Cursor: eventlog.CursorAfter(from - 1)}
		for {
			p, err := l.Query(ctx, f)
			if err != nil {
				pages <- page{err: err}
				return
			}
			evs, done := p.Events, p.Next == ""
			for i := range evs {
				if evs[i].Index >= to {
					evs, done = evs[:i], true
					break
				}
			}
			if len(evs) > 0 {
				select {
				case pages <- page{evs: evs}:
				case <-ctx.Done():
					return
				}
			}
			if done {
				return
			}
			f.Cursor = p.Next
		}
	}()
	for p := range pages {
		if p.err != nil {
			return p.err
		}
		if err := fn(p.evs); err != nil {
			return err
		}
	}
	return ctx.Err()
}
