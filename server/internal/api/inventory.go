package api

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// followInventory keeps the agent list's os_version up to date with the
// newest agent.inventory of evs that res says was newly stored: agents
// enrolled before they sent a version, and OS upgrades, show what the PC
// runs now. A version that is empty, too long or not UTF-8 changes nothing.
func (s *Server) followInventory(ctx context.Context, agent string, evs []event.Event, res AppendResult) {
	if res.Stored == 0 {
		return
	}
	firstNew := res.AckedSeq - uint64(res.Stored) + 1
	v := ""
	for _, e := range evs {
		if e.Type != "agent.inventory" || e.Control != "agent" || e.Seq < firstNew || e.Seq > res.AckedSeq {
			continue
		}
		v = wire.OSVersionLine(attrString(e.Attrs["platform"]), attrString(e.Attrs["platform_version"]),
			attrString(e.Attrs["kernel_version"]))
	}
	if v == "" || len(v) > wire.MaxOSVersion || !utf8.ValidString(v) {
		return
	}
	// Not the request's context: the batch is stored; bounded, as the ack waits.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.cfg.State.SetAgentOSVersion(uctx, agent, v); err != nil {
		s.log.Warn().Err(err).Str("agent", agent).Msg("api: os_version from the inventory not recorded")
	}
}
