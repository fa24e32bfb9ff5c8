package api

import (
	"context"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// TypeAgentOutage is the server-stream event recording one span in which an
// agent did not run: from its last event before it stopped (a heartbeat, or
// agent.stopping after a clean stop) to its next agent.started. Found when
// that agent.started is stored, from the previous_* attributes the agent
// puts in it (its spool's newest event before the start).
const TypeAgentOutage = "agent.outage"

// recordOutages appends an agent.outage to the server stream for each
// agent.started of evs that res says was newly stored (a resent batch
// records nothing twice). A clean stop is info; a stop without
// agent.stopping (killed, crashed, power lost) is a warning.
func (s *Server) recordOutages(ctx context.Context, agent string, evs []event.Event, res AppendResult) {
	if res.Stored == 0 {
		return
	}
	firstNew := res.AckedSeq - uint64(res.Stored) + 1
	for i, e := range evs {
		if e.Type != "agent.started" || e.Control != "agent" || e.Seq < firstNew || e.Seq > res.AckedSeq {
			continue
		}
		prevType, _ := e.Attrs["previous_type"].(string)
		from, _ := time.Parse(time.RFC3339Nano, attrString(e.Attrs["previous_time"]))
		if from.IsZero() && i > 0 { // an agent older than previous_* attrs
			from, prevType = evs[i-1].Time, evs[i-1].Type
		}
		if from.IsZero() {
			continue // the agent's first start: no outage
		}
		clean := prevType == "agent.stopping"
		o := event.Event{Agent: event.ServerStream, Control: "server", Type: TypeAgentOutage,
			Severity: event.Warning, Time: time.Now().UTC(), Object: agent,
			Attrs: event.Attrs{
				"agent":         agent,
				"from":          from.UTC().Format(time.RFC3339Nano),
				"to":            e.Time.UTC().Format(time.RFC3339Nano),
				"duration_s":    e.Time.Sub(from).Seconds(),
				"clean_stop":    clean,
				"previous_type": prevType,
				"started_seq":   e.Seq,
			}}
		if clean {
			o.Severity = event.Info
		}
		// Not the request's context: the batch is stored, its outage must be too.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if _, err := s.cfg.Store.AppendServer(actx, o); err != nil {
			s.log.Error().Err(err).Str("agent", agent).Msg("api: agent outage NOT recorded in the server stream")
		}
		cancel()
	}
}

func attrString(v any) string { s, _ := v.(string); return s }
