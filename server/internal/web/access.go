package web

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/eventlog"
)

// counter is the store's aggregate (eventlog's Count), which the access
// volume chart and the user choices need; the UI leaves them out when the
// store it is given has none.
type counter interface {
	Count(ctx context.Context, q eventlog.CountQuery) ([]eventlog.Group, error)
}

// Access volume: events of the fileaccess control per user and per folder,
// counted by the store one day at a time. A finished day never changes
// (events only arrive late by minutes), so it is counted once and kept;
// today is counted again at most every volumeTTL. A page thus costs at
// most one day's count, the first of the day up to 30.
const (
	volumeTTL     = 5 * time.Minute
	maxVolumeKeys = 500 // per day and kind: the busiest are kept
	maxVolumeDays = 31
)

type volumeDay struct {
	users, folders map[string]int64
	at             time.Time // when counted
	complete       bool      // the day had ended when counted
}

type volumes struct {
	mu   sync.Mutex
	days map[string]*volumeDay // YYYY-MM-DD in the UI's zone
}

// folderOf is the folder of a file path (Windows or POSIX separators),
// ending in its separator so it works as an object_prefix.
func folderOf(p string) string {
	if i := strings.LastIndexAny(p, `\/`); i >= 0 {
		return p[:i+1]
	}
	return p
}

// topN keeps the n largest entries of m.
func topN(m map[string]int64, n int) map[string]int64 {
	if len(m) <= n {
		return m
	}
	type kv struct {
		k string
		v int64
	}
	all := make([]kv, 0, len(m))
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Or(cmp.Compare(b.v, a.v), cmp.Compare(a.k, b.k)) })
	out := make(map[string]int64, n)
	for _, e := range all[:n] {
		out[e.k] = e.v
	}
	return out
}

// accessVolume returns the per-user and per-folder fileaccess counts of the
// last days days (today included), or ok false when the store cannot count.
func (u *UI) accessVolume(ctx context.Context, days int) (users, folders map[string]int64, ok bool, err error) {
	c, ok := u.cfg.Events.(counter)
	if !ok {
		return nil, nil, false, nil
	}
	now := u.cfg.Now()
	today := now.In(u.cfg.Location)
	start := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, today.Location())
	u.vol.mu.Lock()
	defer u.vol.mu.Unlock() // one count at a time: concurrent pages share it
	if u.vol.days == nil {
		u.vol.days = map[string]*volumeDay{}
	}
	users, folders = map[string]int64{}, map[string]int64{}
	for i := range days {
		from := start.AddDate(0, 0, -i)
		to := from.AddDate(0, 0, 1)
		key := from.Format(time.DateOnly)
		d := u.vol.days[key]
		if d == nil || (!d.complete && now.Sub(d.at) > volumeTTL) {
			gs, err := c.Count(ctx, eventlog.CountQuery{From: from, To: to, Controls: []string{"fileaccess"}, GroupBy: []string{"user", "object"}})
			if err != nil {
				return nil, nil, true, fmt.Errorf("web: access volume: %w", err)
			}
			d = &volumeDay{users: map[string]int64{}, folders: map[string]int64{}, at: now, complete: !now.Before(to)}
			for _, g := range gs {
				if g.Keys[0] != "" {
					d.users[g.Keys[0]] += g.Events
				}
				if g.Keys[1] != "" {
					d.folders[folderOf(g.Keys[1])] += g.Events
				}
			}
			d.users, d.folders = topN(d.users, maxVolumeKeys), topN(d.folders, maxVolumeKeys)
			u.vol.days[key] = d
		}
		for k, v := range d.users {
			users[k] += v
		}
		for k, v := range d.folders {
			folders[k] += v
		}
	}
	oldest := start.AddDate(0, 0, -maxVolumeDays).Format(time.DateOnly)
	for k := range u.vol.days {
		if k < oldest {
			delete(u.vol.days, k)
		}
	}
	return users, folders, true, nil
}

// volumeBars turns counts into the top bars, each linking to its events.
func volumeBars(m map[string]int64, link func(string) string) ([]bar, float64) {
	var out []bar
	top := 0.0
	for k, v := range m {
		out = append(out, bar{Label: k, Value: float64(v), Text: strconv.FormatInt(v, 10), Link: link(k)})
		top = max(top, float64(v))
	}
	slices.SortFunc(out, func(a, b bar) int { return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(a.Label, b.Label)) })
	if len(out) > 8 {
		out = out[:8]
	}
	return out, top
}

// volumeCharts are 概要's top users and folders by access volume over the
// last 7 or 30 days (volume=30), with a switch between the two.
func (u *UI) volumeCharts(ctx context.Context, p *page, span int) ([]chart, error) {
	users, folders, ok, err := u.accessVolume(ctx, span)
	if err != nil || !ok {
		return nil, err
	}
	today := u.cfg.Now().In(u.cfg.Location)
	from := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, today.Location()).AddDate(0, 0, -span+1).Format(uiTime)
	other, otherLabel := 30, p.L["span_30"]
	if span == 30 {
		other, otherLabel = 7, p.L["span_7"]
	}
	sw := fmt.Sprintf(`<p class="muted"><a id="volume-span" href="/?volume=%d">%s</a></p>`, other, esc(otherLabel))
	ub, utop := volumeBars(users, func(k string) string {
		return "/events?" + url.Values{"control": {"fileaccess"}, "user": {k}, "from": {from}}.Encode()
	})
	fb, ftop := volumeBars(folders, func(k string) string {
		return "/events?" + url.Values{"control": {"fileaccess"}, "object_prefix": {k}, "from": {from}}.Encode()
	})
	return []chart{
		{ID: "chart-top-users", Title: fmt.Sprintf(p.L["chart_top_users_fmt"], span),
			SVG: template.HTML(sw) + barsSVG("svg-top-users", ub, utop, p.L["none"])},
		{ID: "chart-top-folders", Title: fmt.Sprintf(p.L["chart_top_folders_fmt"], span),
			SVG: barsSVG("svg-top-folders", fb, ftop, p.L["none"])},
	}, nil
}

// maxUserChoices bounds the access log's user choices.
const maxUserChoices = 200

// userChoices are the users seen in the last week's file access, busiest
// first (from the same daily counts as the chart).
func (u *UI) userChoices(ctx context.Context) ([]string, error) {
	users, _, ok, err := u.accessVolume(ctx, 7)
	if err != nil || !ok {
		return nil, err
	}
	out := make([]string, 0, len(users))
	for k := range users {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Or(cmp.Compare(users[b], users[a]), cmp.Compare(a, b)) })
	if len(out) > maxUserChoices {
		out = out[:maxUserChoices]
	}
	return out, nil
}

// queryFunc reads one page of events in log order.
type queryFunc func(ctx context.Context, f api.Filter) (api.Page, error)

// maxDeptAgents bounds the PCs a department search reads at once.
const maxDeptAgents = 100

// unionQuery reads the events of several agents as one stream in log
// order: the store filters one agent per query, so each agent's page after
// the cursor is read and the pages merged; the first limit of the merge are
// the union's first limit, and the cursor stays the last log index shown.
func (u *UI) unionQuery(agents []string) queryFunc {
	return func(ctx context.Context, f api.Filter) (api.Page, error) {
		limit := cmp.Or(f.Limit, api.DefaultQueryLimit)
		limit = min(limit, api.MaxQueryLimit)
		var all []api.Stored
		more := false
		for _, a := range agents {
			g := f
			g.Agent, g.Limit = a, limit
			pg, err := u.cfg.Events.Query(ctx, g)
			if err != nil {
				return api.Page{}, err
			}
			all = append(all, pg.Events...)
			more = more || pg.Next != ""
		}
		slices.SortFunc(all, func(a, b api.Stored) int { return cmp.Compare(a.Index, b.Index) })
		if len(all) > limit {
			all, more = all[:limit], true
		}
		pg := api.Page{Events: all}
		if more && len(all) > 0 {
			pg.Next = strconv.FormatInt(all[len(all)-1].Index, 10)
		}
		return pg, nil
	}
}

// countCap bounds the access log's result count: up to it the count is
// exact, beyond it the page says "countCap 件以上".
const countCap = 1000

// countMatches counts the events f selects (of agents, when given), up to
// countCap: exact is false when there are more. With no filter it is the
// log's size.
func (u *UI) countMatches(ctx context.Context, f api.Filter, agents []string) (n int, exact bool, err error) {
	if f.Agent == "" && f.Control == "" && f.Type == "" && f.User == "" && f.ObjectPrefix == "" && f.RegisterID == "" &&
		f.From.IsZero() && f.To.IsZero() && agents == nil {
		// The whole log: its size, exact and cheap.
		size, err := u.cfg.Events.TreeSize(ctx)
		return int(size), true, err
	}
	if agents == nil {
		agents = []string{f.Agent}
	}
	for _, a := range agents {
		g := f
		g.Agent, g.Cursor, g.Limit = a, "", min(countCap+1-n, api.MaxQueryLimit)
		pg, err := u.cfg.Events.Query(ctx, g)
		if err != nil {
			return 0, false, err
		}
		n += len(pg.Events)
		if n > countCap || pg.Next != "" {
			return countCap, false, nil
		}
	}
	return n, true, nil
}
