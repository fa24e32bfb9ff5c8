package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/wire"
)

// readyTimeout bounds each readiness probe, so that a hung etcd or store
// answers 503 quickly instead of hanging the load balancer's check.
const readyTimeout = 2 * time.Second

// readyView is the body of GET /readyz.
type readyView struct {
	Status string            `json:"status"`           // ready | not ready
	Role   string            `json:"role"`             // writer | standby
	Writer string            `json:"writer,omitempty"` // the writer's URL, as this node knows it
	Checks map[string]string `json:"checks"`           // "ok" or what failed
}

// handleReadyz says whether this node can serve its role: the event store
// answers and etcd answers (a read of one key), and a standby knows a
// writer to send batches to. With ?role=writer it is ready only as the
// writer: the check a load balancer that sends agents to the writer alone
// uses. /healthz stays a cheap liveness answer that touches neither.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	v := readyView{Status: "ready", Role: "writer", Checks: map[string]string{}}
	if s.cfg.Role != nil {
		v.Role = s.cfg.Role()
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	check := func(name string, err error) {
		if err == nil {
			v.Checks[name] = "ok"
			return
		}
		v.Status = "not ready"
		v.Checks[name] = "failed"
		s.log.Warn().Err(err).Str("check", name).Msg("api: not ready")
	}
	var lastWriter string // a standby's writer, as etcd last said
	if s.cfg.Writer != nil {
		self, url := s.cfg.Writer()
		switch {
		case self:
			v.Role, v.Writer = "writer", url
			v.Checks["writer"] = "ok"
		case r.URL.Query().Get("role") == "writer":
			v.Role, v.Status, v.Checks["writer"], v.Writer = "standby", "not ready", "standby", url
		case url == "":
			v.Role = "standby"
			check("writer", errors.New("no writer elected"))
		default:
			v.Role, v.Writer = "standby", url
			v.Checks["writer"] = "ok"
			lastWriter = url
		}
	}
	_, err := s.cfg.Store.TreeSize(ctx)
	check("store", err)
	if s.cfg.Health != nil && err == nil {
		// A store that stopped taking writes (rolled back under the
		// writer) still answers reads: name why it is not ready.
		if err := s.cfg.Health(); err != nil {
			check("store", err)
			v.Checks["store"] = "stopped: " + err.Error()
		}
	}
	_, err = s.cfg.State.GetAgent(ctx, "readyz-probe")
	switch {
	case errors.Is(err, ErrNotFound):
		check("etcd", nil)
	case errors.Is(err, state.ErrUnavailable):
		// Both roles go on without etcd: the writer acks batches under its
		// epoch, reads come from the cache; only changes wait for it.
		v.Checks["etcd"] = "unavailable: reads from cache, changes refused"
		if lastWriter != "" {
			// The writer may be the node whose loss took the quorum: only
			// etcd can say it lives.
			v.Checks["writer"] = "unconfirmed: etcd unavailable, last known " + lastWriter
		}
	default:
		check("etcd", err)
	}
	status := http.StatusOK
	if v.Status != "ready" {
		status = http.StatusServiceUnavailable
	}
	if v.Checks["writer"] == "standby" {
		// The designed answer to a load balancer probing each standby
		// every second: not an error to log.
		wire.WriteJSON(w, status, v)
		return
	}
	s.writeJSON(w, r, status, v)
}
