package app

import (
	"context"
	"fmt"
	"time"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// The log's own record of when it was kept: each term of a writer begins
// with TypeWriterStarted and, when the server stops as it should, ends with
// TypeWriterStopped. A start that finds the log's last server record is not
// a stop records TypeUncleanStop first: the writer before was killed, lost
// power or its network, and nothing of the time since its last record is
// evidence of a quiet office. Agents' events of that time arrive later from
// their spools; the records say when the server itself was not recording.
const (
	TypeWriterStarted = "server.writer_started"
	TypeWriterStopped = "server.writer_stopped"
	TypeUncleanStop   = "server.unclean_stop"
)

// Values of TypeWriterStarted's previous_stop.
const (
	stopNone       = "none"         // the log's first start
	stopClean      = "clean"        // the last server record is a TypeWriterStopped
	stopUnclean    = "unclean"      // it is not: TypeUncleanStop was recorded
	stopUnrecorded = "not_recorded" // the log predates these records
)

// recordStart appends the records of a term's start. Called by a writer
// that has just claimed the store.
func (s *Server) recordStart(ctx context.Context, epoch int64) error {
	prev, err := s.previousStop(ctx)
	if err != nil {
		return err
	}
	if prev.kind == stopUnclean {
		e := event.Event{Control: "server", Type: TypeUncleanStop, Severity: event.Warning, Object: "server",
			Attrs: event.Attrs{"last_record_seq": prev.head.Seq,
				"last_record_time": prev.head.LastSeen.UTC().Format(time.RFC3339Nano),
				// The term that ended unrecorded: which server to look at.
				"node": prev.term["node"], "epoch": prev.term["epoch"]}}
		if _, err := s.store.AppendServer(ctx, e); err != nil {
			return fmt.Errorf("app: recording the unclean stop: %w", err)
		}
	}
	n, err := s.store.TreeSize(ctx)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	e := event.Event{Control: "server", Type: TypeWriterStarted, Severity: event.Info, Object: "server",
		Attrs: event.Attrs{"node": s.NodeURL(), "epoch": epoch, "version": s.cfg.Version,
			"previous_stop": prev.kind, "log_events": n}}
	if _, err := s.store.AppendServer(ctx, e); err != nil {
		return fmt.Errorf("app: recording the writer's start: %w", err)
	}
	return nil
}

// recordStop appends the record of a term's end, as the writer's last.
func (s *Server) recordStop(ctx context.Context, epoch int64) error {
	e := event.Event{Control: "server", Type: TypeWriterStopped, Severity: event.Info, Object: "server",
		Attrs: event.Attrs{"node": s.NodeURL(), "epoch": epoch}}
	if _, err := s.store.AppendServer(ctx, e); err != nil {
		return fmt.Errorf("app: recording the writer's stop: %w", err)
	}
	return nil
}

type previousStop struct {
	kind string
	head eventlog.Head // the server stream's last record
	term event.Attrs   // the last TypeWriterStarted's: its node and epoch
}

// previousStop says how the last term ended, from the server stream's last
// record.
func (s *Server) previousStop(ctx context.Context) (previousStop, error) {
	head, err := s.store.Head(ctx, event.ServerStream)
	if err != nil {
		return previousStop{}, fmt.Errorf("app: %w", err)
	}
	p := previousStop{kind: stopNone, head: head}
	if head.Seq == 0 {
		return p, nil
	}
	// The last term's start names its node and epoch. Starts are few (one
	// a restart or failover), so paging through them is cheap.
	f := eventlog.Filter{Agent: event.ServerStream, Type: TypeWriterStarted, Limit: eventlog.MaxLimit}
	for {
		page, err := s.store.Query(ctx, f)
		if err != nil {
			return previousStop{}, fmt.Errorf("app: %w", err)
		}
		if n := len(page.Events); n > 0 {
			p.term = page.Events[n-1].Attrs
		}
		if page.Next == "" {
			break
		}
		f.Cursor = page.Next
	}
	if p.term == nil {
		p.kind = stopUnrecorded
		return p, nil
	}
	// A stop is the store's own append, timed at its commit: within the
	// window before the head's commit time if it is the last record.
	f = eventlog.Filter{Agent: event.ServerStream, Type: TypeWriterStopped,
		From: head.LastSeen.Add(-time.Minute), Limit: eventlog.MaxLimit}
	for {
		page, err := s.store.Query(ctx, f)
		if err != nil {
			return previousStop{}, fmt.Errorf("app: %w", err)
		}
		for _, e := range page.Events {
			if e.Seq == head.Seq {
				p.kind = stopClean
				return p, nil
			}
		}
		if page.Next == "" {
			p.kind = stopUnclean
			return p, nil
		}
		f.Cursor = page.Next
	}
}
