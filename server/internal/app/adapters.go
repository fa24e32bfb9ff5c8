package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// EventStoreAPI is the API's (and the web UI's) view of an event store, for
// tests and tools that build those handlers without a whole Server.
func EventStoreAPI(s eventlog.Store) api.EventStore { return storeAdapter{s: s} }

// storeAdapter gives the API its view of the event store. The struct types
// have identical fields, so the conversions are free.
type storeAdapter struct {
	s eventlog.Store
	// records, when set, takes AppendServer: on a standby it sends the
	// record to the writer (records.go).
	records eventlog.Store
}

func (a storeAdapter) Append(ctx context.Context, agent string, evs []event.Event) (api.AppendResult, error) {
	r, err := a.s.Append(ctx, agent, evs)
	return api.AppendResult(r), notWriter(err)
}

func (a storeAdapter) AppendServer(ctx context.Context, e event.Event) (event.Event, error) {
	if a.records != nil {
		return a.records.AppendServer(ctx, e) // errors already mapped
	}
	e, err := a.s.AppendServer(ctx, e)
	return e, notWriter(err)
}

// notWriter marks a commit refused by the writer epoch (this node was
// deposed, or a newer writer claimed the store) for the API's 503.
func notWriter(err error) error {
	if errors.Is(err, eventlog.ErrFenced) {
		return fmt.Errorf("%w: %w", api.ErrNotWriter, err)
	}
	return err
}

func (a storeAdapter) Query(ctx context.Context, f api.Filter) (api.Page, error) {
	p, err := a.s.Query(ctx, eventlog.Filter(f))
	switch {
	case errors.Is(err, eventlog.ErrBadCursor):
		return api.Page{}, fmt.Errorf("%w: %w", api.ErrBadCursor, err)
	case errors.Is(err, eventlog.ErrBadFilter):
		return api.Page{}, fmt.Errorf("%w: %w", api.ErrBadFilter, err)
	case err != nil:
		return api.Page{}, err
	}
	out := api.Page{Next: p.Next, Events: make([]api.Stored, len(p.Events))}
	for i, e := range p.Events {
		out.Events[i] = api.Stored(e)
	}
	return out, nil
}

func (a storeAdapter) Agents(ctx context.Context) ([]api.Head, error) {
	hs, err := a.s.Agents(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Head, len(hs))
	for i, h := range hs {
		out[i] = api.Head(h)
	}
	return out, nil
}

func (a storeAdapter) TreeSize(ctx context.Context) (int64, error) { return a.s.TreeSize(ctx) }

// IndexLag is the SQLite store's; PostgreSQL indexes at commit: no lag.
func (a storeAdapter) IndexLag() (int64, int) {
	if il, ok := a.s.(interface{ IndexLag() (int64, int) }); ok {
		return il.IndexLag()
	}
	return 0, 0
}

// stateAdapter gives the API its view of the control plane and maps
// state's sentinel errors to the API's.
type stateAdapter struct{ s *state.State }

func mapStateErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, state.ErrNotFound):
		return fmt.Errorf("%w: %w", api.ErrNotFound, err)
	case errors.Is(err, state.ErrTokenInvalid):
		return fmt.Errorf("%w: %w", api.ErrTokenInvalid, err)
	}
	return err
}

func (a stateAdapter) CreateEnrollToken(ctx context.Context, ttl time.Duration, uses int, by string) (string, api.EnrollToken, error) {
	p, t, err := a.s.CreateEnrollToken(ctx, ttl, uses, by)
	return p, api.EnrollToken(t), mapStateErr(err)
}

func (a stateAdapter) ConsumeEnrollToken(ctx context.Context, plaintext string) (api.EnrollToken, error) {
	t, err := a.s.ConsumeEnrollToken(ctx, plaintext)
	return api.EnrollToken(t), mapStateErr(err)
}

func (a stateAdapter) LookupAPIToken(ctx context.Context, plaintext string) (api.APIToken, error) {
	t, err := a.s.LookupAPIToken(ctx, plaintext)
	return api.APIToken(t), mapStateErr(err)
}

func (a stateAdapter) PutAgent(ctx context.Context, ag api.Agent) error {
	return mapStateErr(a.s.PutAgent(ctx, state.Agent(ag)))
}

func (a stateAdapter) GetAgent(ctx context.Context, id string) (api.Agent, error) {
	ag, err := a.s.GetAgent(ctx, id)
	return api.Agent(ag), mapStateErr(err)
}

func (a stateAdapter) SetAgentOSVersion(ctx context.Context, id, v string) error {
	return mapStateErr(a.s.SetAgentOSVersion(ctx, id, v))
}

func (a stateAdapter) ListAgents(ctx context.Context) ([]api.Agent, error) {
	as, err := a.s.ListAgents(ctx)
	if err != nil {
		return nil, mapStateErr(err)
	}
	out := make([]api.Agent, len(as))
	for i, ag := range as {
		out[i] = api.Agent(ag)
	}
	return out, nil
}

func (a stateAdapter) PutPolicy(ctx context.Context, name string, yaml []byte) error {
	return mapStateErr(a.s.PutPolicy(ctx, name, yaml))
}

func (a stateAdapter) GetPolicy(ctx context.Context, name string) ([]byte, int64, error) {
	b, rev, err := a.s.GetPolicy(ctx, name)
	return b, rev, mapStateErr(err)
}

func (a stateAdapter) ListPolicies(ctx context.Context) ([]string, error) {
	ns, err := a.s.ListPolicies(ctx)
	return ns, mapStateErr(err)
}

func (a stateAdapter) Assignment(ctx context.Context, agentID string) (string, error) {
	n, err := a.s.Assignment(ctx, agentID)
	return n, mapStateErr(err)
}

func (a stateAdapter) WatchPolicies(ctx context.Context) <-chan struct{} {
	return a.s.WatchPolicies(ctx)
}

// evidenceAdapter gives the API checkpoints and exports.
type evidenceAdapter struct{ x *audit.Exporter }

func (a evidenceAdapter) Checkpoint(ctx context.Context) (api.CheckpointView, error) {
	cp, err := a.x.Checkpointer.Latest(ctx)
	if errors.Is(err, eventlog.ErrNoCheckpoint) {
		cp, err = a.x.Checkpointer.SignNow(ctx)
	}
	if err != nil {
		return api.CheckpointView{}, err
	}
	return api.CheckpointView{Size: cp.Size, Root: cp.Root.String(), Note: cp.Note, Created: cp.Created, PublicKey: a.x.PublicKey}, nil
}

// ConsistencyProof implements api.ConsistencyProver over the store.
func (a evidenceAdapter) ConsistencyProof(ctx context.Context, from, to int64) ([]string, error) {
	proof, err := tlog.ProveTree(to, from, a.x.Log)
	if err != nil {
		return nil, fmt.Errorf("app: consistency proof %d..%d: %w", from, to, err)
	}
	out := make([]string, len(proof))
	for i, h := range proof {
		out[i] = h.String()
	}
	return out, nil
}

func (a evidenceAdapter) Bundle(ctx context.Context, w io.Writer, f api.Filter, since int64, q map[string]string) (api.ExportSummary, error) {
	sum, err := a.x.Bundle(ctx, w, eventlog.Filter(f), since, q)
	return api.ExportSummary(sum), mapAuditErr(err)
}

func (a evidenceAdapter) CSV(ctx context.Context, w io.Writer, f api.Filter, lang string, loc *time.Location) (int, error) {
	n, err := a.x.CSV(ctx, w, eventlog.Filter(f), lang, loc)
	return n, mapAuditErr(err)
}

func mapAuditErr(err error) error {
	switch {
	case errors.Is(err, audit.ErrTooLarge):
		return fmt.Errorf("%w: %w", api.ErrExportTooLarge, err)
	case errors.Is(err, audit.ErrNoSuchCheckpoint):
		return fmt.Errorf("%w: %w", api.ErrNoSuchCheckpoint, err)
	}
	return err
}

// hostNames maps agent ids to the hostnames they reported, for exports
// people read.
func (s *Server) hostNames(ctx context.Context) (map[string]string, error) {
	as, err := s.state.ListAgents(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(as))
	for _, a := range as {
		m[a.ID] = a.Hostname
	}
	return m, nil
}

// Count gives the web UI the store's aggregate (its access-volume chart);
// both stores (SQLite, PostgreSQL) have it.
func (a storeAdapter) Count(ctx context.Context, q eventlog.CountQuery) ([]eventlog.Group, error) {
	c, ok := a.s.(interface {
		Count(context.Context, eventlog.CountQuery) ([]eventlog.Group, error)
	})
	if !ok {
		return nil, fmt.Errorf("app: count: %w", errors.ErrUnsupported)
	}
	return c.Count(ctx, q)
}
