package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/policies"
	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/incident"
	"github.com/mamori/mamori/server/internal/notify"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/report"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/server/internal/web"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// alerting holds what takes alerts to people: the notifier, the incident
// record with its overdue-report checks, and the monthly report. Their
// routes serve on every server; their loops, which append to the log and
// send mail, run on the writer only (writerAlerting).
type alerting struct {
	notifier  *notify.Notifier
	incidents *incident.Service
	reports   *report.Service
	monthly   *report.Monthly
}

// startAlerting starts the notifier and the incident checks and returns
// their admin routes.
func (s *Server) startAlerting(ctx context.Context, regs *register.Service, x *audit.Exporter) ([]api.AdminRoute, error) {
	n, err := notify.New(notify.Config{Events: s.records, KV: s.state, Log: s.cfg.Log, Caller: api.Caller, DashboardURL: s.DashboardURL,
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
		},
		Packs: builtinPacksInUse(regs)})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	inc, err := incident.New(incident.Config{KV: s.state, Events: s.records, Registers: regs, Log: s.cfg.Log,
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
	s.alerting = &alerting{notifier: n, incidents: inc}
	s.regs = regs
	rh, err := s.reportHandler(inc, x)
	if err != nil {
		return nil, err
	}
	monthly := &report.Monthly{S: rh.S, KV: s.state, IsNotFound: func(err error) bool { return errors.Is(err, state.ErrNotFound) },
		Recipients: func(ctx context.Context) ([]string, string, bool, error) {
			set, _, err := n.Settings(ctx)
			if err != nil || set.MonthlyReport == nil {
				return nil, "", false, err
			}
			return set.MonthlyReport.Recipients, set.MonthlyReport.Department, true, nil
		},
		Mail: func(ctx context.Context, rcpts []string, subject, text string, html, csv []byte, name string) error {
			return n.Mail(ctx, "monthly_report", rcpts, subject, text,
				notify.Attachment{Name: name + ".html", ContentType: "text/html; charset=utf-8", Data: html},
				notify.Attachment{Name: name + ".csv", ContentType: "text/csv; charset=utf-8", Data: csv})
		}}
	s.alerting.monthly = monthly
	ih := incident.Handlers{S: inc, Caller: api.Caller,
		Bundle: func(ctx context.Context, w io.Writer, idx []int64, q map[string]string) error {
			_, err := x.BundleIndexes(ctx, w, idx, q)
			return err
		}}
	return []api.AdminRoute{
		{Pattern: "GET " + incident.Path, Handler: ih.List},
		{Pattern: "POST " + incident.Path, Write: true, Managers: true, Handler: ih.Open},
		{Pattern: "GET " + incident.Path + "/{id}", Handler: ih.Get},
		{Pattern: "PUT " + incident.Path + "/{id}", Write: true, Managers: true, Handler: ih.Put},
		{Pattern: "GET " + incident.Path + "/{id}/worksheet", Handler: ih.Worksheet},
		{Pattern: "GET " + report.Path, Handler: rh.ServeHTTP},
		{Pattern: "GET " + notify.PathSettings, Handler: n.ServeGetSettings},
		{Pattern: "PUT " + notify.PathSettings, Write: true, Handler: n.ServePutSettings},
		{Pattern: "GET " + notify.PathLog, Handler: n.ServeLog},
		{Pattern: "POST " + notify.PathTest, Write: true, Handler: n.ServeTest},
		{Pattern: "POST /api/v1/alerts/{index}/{action}", Write: true, Managers: true, Handler: n.ServeAlertAction},
	}, nil
}

// writerAlerting runs, until ctx ends, the jobs that raise alerts and take
// them to people: the compliance tracker's alerts and daily history, the
// notifier, the overdue-incident checks and the monthly report. They append
// to the log or send mail, so only the writer runs them (startWriterJobs):
// a standby's appends would fail by the epoch check, and three servers
// would send three mails. The notifier resumes from the cursors the last
// writer saved in etcd.
func (s *Server) writerAlerting(ctx context.Context) {
	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	run(func() { s.tracker.RunAlerts(ctx) })
	if a := s.alerting; a != nil {
		run(func() { a.notifier.Run(ctx) })
		run(func() { a.incidents.Run(ctx, time.Minute) })
		run(func() { a.monthly.Run(ctx, time.Hour) })
	}
	wg.Wait()
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

// reportHandler builds the audit report service and its route.
func (s *Server) reportHandler(inc *incident.Service, x *audit.Exporter) (report.Handler, error) {
	rs, ok := s.store.(report.Store)
	if !ok {
		return report.Handler{}, errors.New("app: the event store cannot aggregate for reports")
	}
	v, err := note.NewVerifier(s.logPub)
	if err != nil {
		return report.Handler{}, fmt.Errorf("app: log key: %w", err)
	}
	svc, err := report.New(report.Config{Store: rs, Registers: s.regs, Incidents: inc, Verifier: v, Log: s.cfg.Log,
		// The PCs as 概要 counts them: when each was enrolled, and which
		// controls its effective policy turns off (not 不明 when silent).
		Agents: func(ctx context.Context) ([]report.Agent, error) {
			inv := compliance.StateInventory{State: s.state, Fallback: api.BuiltinDefault,
				Effective: func(ctx context.Context, id string) (*policy.Policy, error) {
					c, err := s.regs.Shared(ctx, id)
					return c.Policy, err
				}}
			hs, err := inv.Hosts(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]report.Agent, len(hs))
			for i, h := range hs {
				out[i] = report.Agent{ID: h.Agent, Hostname: h.Hostname, Department: h.Department,
					Enrolled: h.Enrolled, Off: compliance.OffControls(h.Policy)}
			}
			return out, nil
		}})
	if err != nil {
		return report.Handler{}, fmt.Errorf("app: %w", err)
	}
	s.alerting.reports = svc
	return report.Handler{S: svc,
		Bundle: func(ctx context.Context, w io.Writer, from, to time.Time, q map[string]string) error {
			_, err := x.Bundle(ctx, w, eventlog.Filter{From: from, To: to}, 0, q)
			return err
		},
		TooLarge: func(err error) bool { return errors.Is(err, audit.ErrTooLarge) },
		Record: func(r *http.Request, format string, attrs map[string]string) {
			a := event.Attrs{"report": "audit", "format": format}
			for k, v := range attrs {
				a[k] = v
			}
			e := event.Event{Control: "server", Type: "export.made", Severity: event.Info, Object: "report/audit",
				User: api.Caller(r), Attrs: a}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
			defer cancel()
			if _, err := s.records.AppendServer(ctx, e); err != nil {
				s.log.Error().Err(err).Msg("app: report export NOT recorded")
			}
		}}, nil
}

// webAlerting gives the web UI the notification, incident and report pages.
func (s *Server) webAlerting() *web.Alerting {
	if s.alerting == nil {
		return nil
	}
	return &web.Alerting{Notifier: s.alerting.notifier, Incidents: s.alerting.incidents, Reports: s.alerting.reports}
}

// builtinPacksInUse lists the built-in packs assigned to an agent or a
// department, for the notifier's default rules (the baseline is always
// among them: every agent without an assignment gets it).
func builtinPacksInUse(regs *register.Service) func(ctx context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		deps, err := regs.DepartmentAssignments(ctx)
		if err != nil {
			return nil, err
		}
		agents, err := regs.AgentAssignments(ctx)
		if err != nil {
			return nil, err
		}
		in := map[string]bool{policies.Baseline: true}
		builtin := policies.Names()
		for _, m := range []map[string]string{deps, agents} {
			for _, name := range m {
				if slices.Contains(builtin, name) {
					in[name] = true
				}
			}
		}
		out := make([]string, 0, len(in))
		for n := range in {
			out = append(out, n)
		}
		slices.Sort(out)
		return out, nil
	}
}
