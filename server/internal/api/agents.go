package api

import (
	"net/http"
	"sort"
	"strings"
	"time"
)

// agentView is one row of GET /api/v1/agents: the static record from state
// merged with the stream head from the event store.
type agentView struct {
	ID         string     `json:"id"`
	Hostname   string     `json:"hostname"`
	OS         string     `json:"os"`
	Arch       string     `json:"arch"`
	OSVersion  string     `json:"os_version"`
	Department string     `json:"department"`
	Enrolled   time.Time  `json:"enrolled"`
	LastSeen   *time.Time `json:"last_seen"` // null before the first batch
	LastSeq    uint64     `json:"last_seq"`
	Events     int64      `json:"events"`
	Disabled   bool       `json:"disabled"`
	// SameHost lists the other agents enrolled with this hostname, as when
	// a re-installed PC enrolled again: its evidence stays under the old id.
	SameHost []string `json:"same_host,omitempty"`
}

func (s *Server) handleListAgents(w http.ResponseWriter, r *http.Request) {
	agents, err := s.cfg.State.ListAgents(r.Context())
	if err != nil {
		s.internal(w, r, "listing agents", err)
		return
	}
	heads, err := s.cfg.Store.Agents(r.Context())
	if err != nil {
		s.internal(w, r, "reading stream heads", err)
		return
	}
	byID := make(map[string]Head, len(heads))
	for _, h := range heads {
		byID[h.Agent] = h
	}
	byHost := map[string][]string{}
	for _, a := range agents {
		h := strings.ToLower(a.Hostname)
		byHost[h] = append(byHost[h], a.ID)
	}
	out := make([]agentView, 0, len(agents))
	for _, a := range agents {
		v := agentView{ID: a.ID, Hostname: a.Hostname, OS: a.OS, Arch: a.Arch, OSVersion: a.OSVersion,
			Department: a.Department, Enrolled: a.Enrolled.UTC(), Disabled: a.Disabled}
		for _, other := range byHost[strings.ToLower(a.Hostname)] {
			if other != a.ID {
				v.SameHost = append(v.SameHost, other)
			}
		}
		if h, ok := byID[a.ID]; ok {
			t := h.LastSeen.UTC()
			v.LastSeen, v.LastSeq, v.Events = &t, h.Seq, h.Events
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname+out[i].ID < out[j].Hostname+out[j].ID })
	s.writeJSON(w, r, http.StatusOK, map[string][]agentView{"agents": out})
}
