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
// today is counted again at most every volumeTTL. The counting runs in the
// background: a page waits for it at most volumeWait and otherwise shows
// what is counted so far (saying so), so a large log's first count of the
// day (a day of 1,000 busy PCs is some 300,000 rows) never holds a page.
const (
	// volumeTTL bounds how old today's counts are (plus the counting):
	// a manager who opens 概要 right after a bulk copy should see it.
	// Count reads some 800,000 rows/s (measured on the benchmark's store),
	// so a day of 1,000 busy PCs (300,000 events) costs about 0.4 s per
	// 15 s, a few percent of a core, and only while someone looks.
	volumeTTL     = 15 * time.Second
	volumeWait    = 50 * time.Millisecond
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
	want int                   // the longest span asked for
	busy bool                  // a refresh is running
	done chan struct{}         // closed when it ends
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

// volumeSpan is one day of a span: its key and bounds.
type volumeSpan struct {
	key      string
	from, to time.Time
}

// volumeDays lists the last days days, today first.
func (u *UI) volumeDays(now time.Time, days int) []volumeSpan {
	today := now.In(u.cfg.Location)
	start := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, today.Location())
	out := make([]volumeSpan, days)
	for i := range out {
		from := start.AddDate(0, 0, -i)
		out[i] = volumeSpan{key: from.Format(time.DateOnly), from: from, to: from.AddDate(0, 0, 1)}
	}
	return out
}

// staleLocked reports whether a day needs counting (u.vol.mu held).
func (u *UI) staleLocked(d volumeSpan, now time.Time) bool {
	v := u.vol.days[d.key]
	return v == nil || (!v.complete && now.Sub(v.at) > volumeTTL)
}

// refreshVolumes counts the stale days of the longest span asked for,
// newest first, until none is left; one runs at a time.
func (u *UI) refreshVolumes(c counter) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	u.vol.mu.Lock()
	done := u.vol.done
	defer func() {
		u.vol.busy = false
		close(done)
		u.vol.mu.Unlock()
	}()
	for {
		now := u.cfg.Now()
		var next *volumeSpan
		for _, d := range u.volumeDays(now, u.vol.want) {
			if u.staleLocked(d, now) {
				next = &d
				break
			}
		}
		if next == nil {
			return
		}
		u.vol.mu.Unlock() // count without holding pages up
		gs, err := c.Count(ctx, eventlog.CountQuery{From: next.from, To: next.to, Controls: []string{"fileaccess"}, GroupBy: []string{"user", "object"}})
		u.vol.mu.Lock()
		if err != nil {
			u.log.Error().Err(err).Str("day", next.key).Msg("web: counting access volume")
			return
		}
		d := &volumeDay{users: map[string]int64{}, folders: map[string]int64{}, at: now, complete: !now.Before(next.to)}
		for _, g := range gs {
			if g.Keys[0] != "" {
				d.users[g.Keys[0]] += g.Events
			}
			if g.Keys[1] != "" {
				d.folders[folderOf(g.Keys[1])] += g.Events
			}
		}
		d.users, d.folders = topN(d.users, maxVolumeKeys), topN(d.folders, maxVolumeKeys)
		u.vol.days[next.key] = d
		oldest := u.volumeDays(now, maxVolumeDays)[maxVolumeDays-1].key
		for k := range u.vol.days {
			if k < oldest {
				delete(u.vol.days, k)
			}
		}
	}
}

// accessVolume returns the per-user and per-folder fileaccess counts of the
// last days days (today included) as far as they are counted (partial when
// some day is not yet), or ok false when the store cannot count.
func (u *UI) accessVolume(ctx context.Context, days int) (users, folders map[string]int64, partial, ok bool) {
	c, ok := u.cfg.Events.(counter)
	if !ok {
		return nil, nil, false, false
	}
	now := u.cfg.Now()
	span := u.volumeDays(now, days)
	u.vol.mu.Lock()
	if u.vol.days == nil {
		u.vol.days = map[string]*volumeDay{}
	}
	u.vol.want = max(u.vol.want, days)
	stale := slices.ContainsFunc(span, func(d volumeSpan) bool { return u.staleLocked(d, now) })
	if stale && !u.vol.busy {
		u.vol.busy, u.vol.done = true, make(chan struct{})
		go u.refreshVolumes(c)
	}
	done := u.vol.done
	u.vol.mu.Unlock()
	if stale {
		t := time.NewTimer(volumeWait)
		select {
		case <-done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	users, folders = map[string]int64{}, map[string]int64{}
	u.vol.mu.Lock()
	defer u.vol.mu.Unlock()
	for _, d := range span {
		v := u.vol.days[d.key]
		if v == nil {
			partial = true
			continue
		}
		for k, n := range v.users {
			users[k] += n
		}
		for k, n := range v.folders {
			folders[k] += n
		}
	}
	return users, folders, partial, true
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
	users, folders, partial, ok := u.accessVolume(ctx, span)
	if !ok {
		return nil, nil
	}
	today := u.cfg.Now().In(u.cfg.Location)
	from := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, today.Location()).AddDate(0, 0, -span+1).Format(uiTime)
	other, otherLabel := 30, p.L["span_30"]
	if span == 30 {
		other, otherLabel = 7, p.L["span_7"]
	}
	note := ""
	if partial {
		note = ` <span id="volume-partial">` + esc(p.L["volume_partial"]) + `</span>`
	}
	sw := fmt.Sprintf(`<p class="muted"><a id="volume-span" href="/?volume=%d">%s</a>%s</p>`, other, esc(otherLabel), note)
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
	users, _, _, ok := u.accessVolume(ctx, 7)
	if !ok {
		return nil, nil
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
