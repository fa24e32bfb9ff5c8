package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/notify"
	"github.com/mamori/mamori/server/internal/state"
)

// alerting runs what takes alerts to people: the notifier.
type alerting struct {
	notifier *notify.Notifier
	stop     context.CancelFunc
	done     chan struct{}
}

// startAlerting starts the notifier and returns its admin routes.
func (s *Server) startAlerting(ctx context.Context) ([]api.AdminRoute, error) {
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
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.alerting = &alerting{notifier: n, stop: stop, done: make(chan struct{})}
	go func() { n.Run(runCtx); close(s.alerting.done) }()
	return []api.AdminRoute{
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
