package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/incident"
	"github.com/mamori/mamori/server/internal/notify"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/state"
)

// alerting runs what takes alerts to people: the notifier, and the
// incident record with its overdue-report checks.
type alerting struct {
	notifier  *notify.Notifier
	incidents *incident.Service
	stop      context.CancelFunc
	done      chan struct{}
}

// startAlerting starts the notifier and the incident checks and returns
// their admin routes.
func (s *Server) startAlerting(ctx context.Context, regs *register.Service, x *audit.Exporter) ([]api.AdminRoute, error) {
	n, err := notify.New(notify.Config{Events: s.store, KV: s.state, Log: s.cfg.Log, Caller: api.Caller,
		IsNotFound: func(err error) bool { return errors.Is(err, state.ErrNotFound) },
		IsConflict: func(err error) bool { return errors.Is(err, state.ErrConflict) },
		Agents: func(ctx context.Context) (map[string]notify.AgentInfo, error) {
			as, err := s.state.ListAgents(ctx)
			if err != nil {
				return nil, err
			}
			out := make(map[string]notify.AgentInfo, len(as))
			for _, a := range as {
				out[a.ID] = notify.AgentInfo{Hostname: a.Hostname, Department: a.Department}
			}
			return out, nil
		}})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	inc, err := incident.New(incident.Config{KV: s.state, Events: s.store, Registers: regs, Log: s.cfg.Log,
		IsNotFound: func(err error) bool { return errors.Is(err, state.ErrNotFound) },
		IsConflict: func(err error) bool { return errors.Is(err, state.ErrConflict) },
		Hostname: func(ctx context.Context, agent string) string {
			a, err := s.state.GetAgent(ctx, agent)
			if err != nil {
				return ""
			}
			return a.Hostname
		}})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.alerting = &alerting{notifier: n, incidents: inc, stop: stop, done: make(chan struct{})}
	go func() {
		done := make(chan struct{})
		go func() { inc.Run(runCtx, time.Minute); close(done) }()
		n.Run(runCtx)
		<-done
		close(s.alerting.done)
	}()
	ih := incident.Handlers{S: inc, Caller: api.Caller,
		Bundle: func(ctx context.Context, w io.Writer, idx []int64, q map[string]string) error {
			_, err := x.BundleIndexes(ctx, w, idx, q)
			return err
		}}
	return []api.AdminRoute{
		{Pattern: "GET " + incident.Path, Handler: ih.List},
		{Pattern: "POST " + incident.Path, Write: true, Handler: ih.Open},
		{Pattern: "GET " + incident.Path + "/{id}", Handler: ih.Get},
		{Pattern: "PUT " + incident.Path + "/{id}", Write: true, Handler: ih.Put},
		{Pattern: "GET " + incident.Path + "/{id}/worksheet", Handler: ih.Worksheet},
		{Pattern: "GET " + notify.PathSettings, Handler: n.ServeGetSettings},
		{Pattern: "PUT " + notify.PathSettings, Write: true, Handler: n.ServePutSettings},
		{Pattern: "GET " + notify.PathLog, Handler: n.ServeLog},
		{Pattern: "POST /api/v1/alerts/{index}/{action}", Write: true, Handler: n.ServeAlertAction},
	}, nil
}

// stopAlerting stops the notifier; deliveries in flight end with it.
func (s *Server) stopAlerting() {
	if s.alerting != nil {
		s.alerting.stop()
		<-s.alerting.done
	}
}

// Notifier is the alert notifier, for in-process users such as the web UI.
func (s *Server) Notifier() *notify.Notifier {
	if s.alerting == nil {
		return nil
	}
	return s.alerting.notifier
}

// Incidents is the incident record, for in-process users such as the web UI.
func (s *Server) Incidents() *incident.Service {
	if s.alerting == nil {
		return nil
	}
	return s.alerting.incidents
}
