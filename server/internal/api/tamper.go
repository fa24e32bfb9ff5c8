package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// Suspected tampering with an agent, recorded in the server stream: what
// an agent's own key cannot hide, since the server sees it.
const (
	TypeTamperSuspected = "agent.tamper_suspected"
	// ReasonServerType: a batch signed with the agent's key held an event
	// only the server writes (an outage, a gap, an alert), forged to look
	// like the server's finding in the PC's evidence.
	ReasonServerType = "server_type_forged"
	// ReasonChainConflict: the agent sent events whose seq is stored with
	// another hash (its spool deleted, replaced or edited).
	ReasonChainConflict = "chain_conflict"
)

// tamperEvery bounds the records of one agent and reason: an agent stuck
// on a conflict retries every few seconds.
const tamperEvery = time.Hour

var errServerOnly = errors.New("the server's own event")

// serverOnlyTypes are the agent.* types the server writes about agents;
// the agent's own are started, stopping, heartbeat, inventory and the like.
var serverOnlyTypes = map[string]bool{
	TypeAgentOutage: true, TypeTamperSuspected: true, "agent.enrolled": true, "agent.cert_renewed": true,
	"agent.department": true, "agent.disabled": true, "agent.enabled": true, "agent.silent": true,
}

// serverOnlyPrefixes are the families of the server stream's types.
var serverOnlyPrefixes = []string{"server.", "compliance.", "notify.", "alert.", "incident.", "register.",
	"policy.", "token.", "export.", "ui.", "user.", "api.", "evidence."}

// serverOnlyControls are the controls of the server stream.
var serverOnlyControls = map[string]bool{"server": true, "compliance": true, "notify": true, "incident": true,
	"register": true, "admin": true}

// checkNotServerOnly refuses an agent's event that claims to be one the
// server writes.
func checkNotServerOnly(e *event.Event) error {
	bad := serverOnlyControls[e.Control] || serverOnlyTypes[e.Type]
	for _, p := range serverOnlyPrefixes {
		bad = bad || strings.HasPrefix(e.Type, p)
	}
	if bad {
		return fmt.Errorf("%w: seq %d is %s/%s, which only the server writes (an agent's batch may not hold it)", errServerOnly, e.Seq, e.Control, e.Type)
	}
	return nil
}

// tamperLog remembers when each (agent, reason) was last recorded.
type tamperLog struct {
	mu   sync.Mutex
	last map[[2]string]time.Time
}

func (l *tamperLog) due(agent, reason string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[[2]string]time.Time{}
	}
	k := [2]string{agent, reason}
	if t, ok := l.last[k]; ok && now.Sub(t) < tamperEvery {
		return false
	}
	l.last[k] = now
	return true
}

var tamperText = map[string][2]string{
	ReasonServerType: {"エージェントの鍵で、サーバーだけが記録するイベント（停止・欠落・アラートなど）を送ろうとしました。端末での偽装の疑いがあります（受け付けていません）",
		"a batch signed with the agent's key held an event only the server writes (an outage, a gap, an alert): suspected forgery on the PC (refused)"},
	ReasonChainConflict: {"エージェントの記録が、保存済みの記録と食い違う連番で送られてきました。端末の送信待ちデータ（spool）が削除・差し替え・編集された疑いがあります（受け付けていません）",
		"the agent sent events whose sequence numbers are already stored with other content: its spool was deleted, replaced or edited (refused)"},
}

// noteTamper records a suspected tampering with agent's evidence in the
// server stream, at most once an hour per agent and reason.
func (s *Server) noteTamper(r *http.Request, agent, reason string, cause error) {
	if !s.tamper.due(agent, reason, time.Now()) {
		return
	}
	txt := tamperText[reason]
	e := event.Event{Agent: event.ServerStream, Control: "server", Type: TypeTamperSuspected, Severity: event.Violation,
		Time: time.Now().UTC(), Object: agent, Attrs: event.Attrs{"agent": agent, "reason": reason,
			"reason_ja": txt[0], "reason_en": txt[1], "error": cause.Error()}}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	if _, err := s.cfg.Store.AppendServer(ctx, e); err != nil {
		s.log.Error().Err(err).Str("agent", agent).Msg("api: suspected tampering NOT recorded in the server stream")
		return
	}
	s.log.Warn().Str("agent", agent).Str("reason", reason).Err(cause).Msg("api: suspected tampering with an agent's evidence")
}
