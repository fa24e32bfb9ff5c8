package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

// uiTime is how datetime-local inputs send times (in the configured zone).
const uiTime = "2006-01-02T15:04"

// eventFilter reads the access-log filters of the UI: the API's names,
// with from/to as datetime-local in the configured zone, the PC by agent
// id or by its name, control and type by code or by label (so a link or a
// typed 「ファイルアクセス」 works). It also returns the filter in the API's
// form (for exports and the bundle's query).
func (u *UI) eventFilter(q url.Values, hosts map[string]string) (api.Filter, url.Values, error) {
	apiQ := url.Values{}
	for _, k := range []string{"agent", "control", "type", "user", "object_prefix", "register_id", "cursor"} {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			apiQ.Set(k, v)
		}
	}
	if a := apiQ.Get("agent"); a != "" {
		apiQ.Set("agent", agentByName(hosts, a))
	}
	if c := apiQ.Get("control"); c != "" {
		apiQ.Set("control", labels.Code(labels.Control, c))
	}
	if t := apiQ.Get("type"); t != "" {
		apiQ.Set("type", labels.Code(labels.EventType, t))
	}
	for _, k := range []string{"from", "to"} {
		v := strings.TrimSpace(q.Get(k))
		if v == "" {
			continue
		}
		t, ok := parseUITime(v, u.cfg.Location)
		if !ok {
			name := map[string]string{"from": "開始", "to": "終了"}[k]
			return api.Filter{}, nil, uiError{ja: name + "日時は 2026-11-01 09:00 (秒まで書くなら 09:00:30) の形で入力してください。",
				en: k + ": give a date and time such as 2026-11-01 09:00 (or 09:00:30)"}
		}
		apiQ.Set(k, t.UTC().Format(time.RFC3339Nano))
	}
	f, err := api.ParseFilter(apiQ)
	return f, apiQ, err
}

// uiTimeLayouts are what people type or paste into a time filter: the
// browser's datetime-local (with seconds where they were given), a space
// instead of the T, Excel's slashes, a date alone.
var uiTimeLayouts = []string{uiTime, "2006-01-02T15:04:05", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04",
	"2006-01-02 15:04:05", "2006-01-02 15:04:05.999999999", "2006/1/2 15:04", "2006/1/2 15:04:05", time.DateOnly, "2006/1/2"}

// parseUITime reads a time filter in loc; RFC 3339 keeps its own offset.
func parseUITime(v string, loc *time.Location) (time.Time, bool) {
	for _, l := range uiTimeLayouts {
		if t, err := time.ParseInLocation(l, v, loc); err == nil {
			return t, true
		}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// uiError is a refusal of the page's input, said in both languages.
type uiError struct{ ja, en string }

func (e uiError) Error() string { return e.en }

// in says e in lang; other errors as they are.
func errIn(err error, lang string) string {
	if e, ok := errors.AsType[uiError](err); ok && lang != "en" {
		return e.ja
	}
	return err.Error()
}

// agentByName returns the agent id for a PC named v (case-insensitive), or
// v itself when it is an id or no PC has that name.
func agentByName(hosts map[string]string, v string) string {
	if _, ok := hosts[v]; ok {
		return v
	}
	var hit string
	for id, n := range hosts {
		if strings.EqualFold(n, v) && (hit == "" || id < hit) {
			hit = id
		}
	}
	return cmp.Or(hit, v)
}

// option is one choice of a filter's dropdown.
type option struct{ Value, Label string }

type eventsData struct {
	Asc                          bool
	Other                        string // the same search in the other order
	Q                            map[string]string
	Events                       []api.Stored
	PCs, Controls, Types, Depts  []option
	Users                        []string
	Shown, Page                  int
	Count                        int
	CountExact                   bool
	Next, Prev, First, ExportCSV string
	BundleQuery                  []queryField // the bundle export form's hidden fields
}

type queryField struct{ Name, Value string }

// eventsPerPage is the page size of the access log.
const eventsPerPage = 100

// maxTrail bounds how many earlier pages "previous" can walk back through.
const maxTrail = 50

// hostOptions lists PCs for a dropdown, by name.
func hostOptions(hosts map[string]string) []option {
	out := make([]option, 0, len(hosts)+1)
	for id, n := range hosts {
		out = append(out, option{Value: id, Label: cmp.Or(n, id)})
	}
	slices.SortFunc(out, func(a, b option) int { return cmp.Or(cmp.Compare(a.Label, b.Label), cmp.Compare(a.Value, b.Value)) })
	return out
}

// deptOptions lists the departments of the enrolled PCs.
func deptOptions(agents []state.Agent) []option {
	var out []option
	for _, a := range agents {
		if a.Department != "" && !slices.ContainsFunc(out, func(o option) bool { return o.Value == a.Department }) {
			out = append(out, option{Value: a.Department, Label: a.Department})
		}
	}
	slices.SortFunc(out, func(a, b option) int { return cmp.Compare(a.Value, b.Value) })
	return out
}

// codeOptions lists a catalog set's codes, labelled, in the given order.
func codeOptions(s labels.Set, lang string, codes []string) []option {
	out := make([]option, len(codes))
	for i, c := range codes {
		out[i] = option{Value: c, Label: labels.Of(s, lang, c)}
	}
	return out
}

// eventControls are the controls the access log offers as a choice.
var eventControls = append(slices.Clone(compliance.Controls), "agent", "register", "server")

func (u *UI) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := u.newPage(r, "events", "nav_events")
	hosts, agents, err := u.hostNames(r.Context())
	if err != nil {
		u.internal(w, r, "listing agents", err)
		return
	}
	hosts[event.ServerStream] = labels.Of(labels.Control, p.Lang, "server")
	p.hosts = hosts
	f, apiQ, err := u.eventFilter(q, hosts)
	// A department with no PC chosen searches its PCs' streams together.
	query := queryFunc(u.cfg.Events.Query)
	var deptAgents []string
	share := 1.0 // about the part of the log the query's agents hold
	if dep := strings.TrimSpace(q.Get("department")); dep != "" && err == nil && f.Agent == "" {
		for _, a := range agents {
			if a.Department == dep {
				deptAgents = append(deptAgents, a.ID)
			}
		}
		switch {
		case len(deptAgents) == 0:
			err = uiError{ja: fmt.Sprintf("部署「%s」の PC がありません。", dep), en: fmt.Sprintf("department %q: no PC in it", dep)}
		case len(deptAgents) > maxDeptAgents:
			err = uiError{ja: fmt.Sprintf("部署「%s」には PC が %d 台あります。PC を選んでください (一度に %d 台まで)。", dep, len(deptAgents), maxDeptAgents),
				en: fmt.Sprintf("department %q has %d PCs; choose a PC (at most %d at once)", dep, len(deptAgents), maxDeptAgents)}
		default:
			slices.Sort(deptAgents)
			query = u.unionQuery(deptAgents)
			share = float64(len(deptAgents)) / float64(len(agents))
		}
	}
	users, uerr := u.userChoices(r.Context())
	if uerr != nil {
		u.internal(w, r, "listing users", uerr)
		return
	}
	d := eventsData{Q: map[string]string{}, PCs: hostOptions(hosts), Depts: deptOptions(agents), Users: users,
		Controls: codeOptions(labels.Control, p.Lang, eventControls),
		Types:    codeOptions(labels.EventType, p.Lang, labels.Codes(labels.EventType))}
	slices.SortStableFunc(d.Types, func(a, b option) int { return cmp.Compare(a.Value, b.Value) })
	for k := range q {
		d.Q[k] = q.Get(k)
	}
	// The dropdowns show the resolved codes (a PC typed by name selects it).
	for _, k := range []string{"agent", "control", "type"} {
		if v := apiQ.Get(k); v != "" {
			d.Q[k] = v
		}
	}
	p.Data = &d
	if err != nil {
		p.Err = p.L["err_invalid"] + ": " + errIn(err, p.Lang)
		u.render(w, r, http.StatusBadRequest, "events", p)
		return
	}
	d.Asc = q.Get("order") == "asc"
	if !d.Asc {
		if err := u.newestPage(r, query, share, f, q, &d); err != nil {
			if errors.Is(err, api.ErrBadCursor) || errors.Is(err, api.ErrBadFilter) || errors.Is(err, errBadPage) {
				p.Err = p.L["err_invalid"] + ": " + err.Error()
				u.render(w, r, http.StatusBadRequest, "events", p)
				return
			}
			u.internal(w, r, "querying events", err)
			return
		}
	} else {
		f.Limit = eventsPerPage
		pg, err := query(r.Context(), f)
		if errors.Is(err, api.ErrBadCursor) || errors.Is(err, api.ErrBadFilter) {
			p.Err = p.L["err_invalid"] + ": " + err.Error()
			u.render(w, r, http.StatusBadRequest, "events", p)
			return
		}
		if err != nil {
			u.internal(w, r, "querying events", err)
			return
		}
		d.Events, d.Shown = pg.Events, len(pg.Events)
		// Paging both ways: "trail" keeps the cursors of the pages before this
		// one ("-" for the first), so "previous" needs no reverse query.
		var trail []string
		if t := q.Get("trail"); t != "" && f.Cursor != "" {
			trail = strings.Split(t, ",")
			if len(trail) > maxTrail {
				trail = trail[len(trail)-maxTrail:]
			}
		}
		d.Page = len(trail) + 1
		keep := url.Values{}
		for k, v := range q {
			if k != "cursor" && k != "ok" && k != "trail" {
				keep[k] = v
			}
		}
		link := func(cursor string, tr []string) string {
			nq := url.Values{}
			for k, v := range keep {
				nq[k] = v
			}
			if cursor != "" && cursor != "-" {
				nq.Set("cursor", cursor)
				if len(tr) > 0 {
					nq.Set("trail", strings.Join(tr, ","))
				}
			}
			return "/events?" + nq.Encode()
		}
		if pg.Next != "" {
			d.Next = link(pg.Next, append(slices.Clone(trail), cmp.Or(f.Cursor, "-")))
		}
		if f.Cursor != "" {
			d.First = link("", nil)
			if len(trail) > 0 {
				d.Prev = link(trail[len(trail)-1], trail[:len(trail)-1])
			} else {
				d.Prev = d.First
			}
		}

	}
	if d.Count, d.CountExact, err = u.countMatches(r.Context(), f, deptAgents); err != nil {
		u.internal(w, r, "counting events", err)
		return
	}
	// Whole URLs: html/template would escape a bare query string's & and =
	// inside href, and the export would drop the filters.
	if deptAgents == nil { // the export takes one PC at most: the page says to choose one
		apiQ.Del("cursor")
		apiQ.Set("format", "csv")
		d.ExportCSV = "/events/export?" + apiQ.Encode()
		apiQ.Set("format", "bundle")
		for _, k := range slices.Sorted(maps.Keys(apiQ)) {
			d.BundleQuery = append(d.BundleQuery, queryField{k, apiQ.Get(k)})
		}
	}
	u.render(w, r, http.StatusOK, "events", p)
}

// newestBefore returns up to n events matching f with log index below
// before, newest first. The store pages forward only, so it reads the
// matches after a cursor that steps back from before in doubling windows
// until n are found (or the log's start): the work is bounded by about
// twice the matches shown, however large the log. The first window is
// widened by 1/share, the part of the log the query's PCs are expected to
// hold (a department's union costs one query per PC and window).
func (u *UI) newestBefore(ctx context.Context, query queryFunc, f api.Filter, before int64, n int, share float64) ([]api.Stored, bool, error) {
	var got []api.Stored
	window := int64(2 * n)
	if share > 0 && share < 1 {
		window = int64(float64(window) / share)
	}
	for {
		start := before - window // read indexes (start, before)
		g := f
		g.Limit, g.Cursor = api.MaxQueryLimit, ""
		if start >= 0 {
			g.Cursor = strconv.FormatInt(start, 10)
		}
		got = got[:0]
	pages:
		for range maxWindowPages {
			pg, err := query(ctx, g)
			if err != nil {
				return nil, false, err
			}
			for _, e := range pg.Events {
				if e.Index >= before {
					break pages
				}
				got = append(got, e)
			}
			if pg.Next == "" {
				break
			}
			g.Cursor = pg.Next
		}
		if len(got) >= n || start < 0 {
			more := len(got) > n || start >= 0
			if len(got) > n {
				got = got[len(got)-n:]
			}
			slices.Reverse(got)
			return got, more, nil
		}
		window *= 2
	}
}

// maxWindowPages bounds one window's read (the window holds about n..2n
// matches, a burst more).
const maxWindowPages = 20

type attrRow struct{ Key, Value string }

// attrText writes an attribute's value for people (labels.Value); a
// nested event.Attrs reads as the map it is.
func attrText(v any, lang string, loc *time.Location) string {
	if a, ok := v.(event.Attrs); ok {
		v = map[string]any(a)
	}
	return labels.Value(v, lang, loc)
}

// registerWords says a register change's fields (before, after, changed)
// in the register's own words, 管理責任者 and 紛失 rather than owner and lost.
func registerWords(e api.Stored, key string, v any, lang string) any {
	k, _ := e.Attrs["kind"].(string)
	if e.Control != "register" || k == "" {
		return v
	}
	kind := register.Kind(k)
	switch x := v.(type) {
	case map[string]any:
		if key != "before" && key != "after" {
			return v
		}
		out := make(map[string]any, len(x))
		for f, val := range x {
			if s, ok := val.(string); ok {
				val = register.ValueLabel(f, s, lang)
			}
			out[register.FieldLabel(kind, f, lang)] = val
		}
		return out
	case []any:
		if key != "changed" {
			return v
		}
		out := make([]any, len(x))
		for i, f := range x {
			if s, ok := f.(string); ok {
				out[i] = register.FieldLabel(kind, s, lang)
			} else {
				out[i] = f
			}
		}
		return out
	}
	return v
}

type eventData struct {
	E              api.Stored
	Attrs          []attrRow
	RegisterKind   string
	Around, Stream string
}

// handleEvent shows one stored event in full: every attribute, process,
// where the agent's attribution came from, its place in the agent's hash
// chain and in the server's log, and the register entry it belongs to.
func (u *UI) handleEvent(w http.ResponseWriter, r *http.Request) {
	idx, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	if err != nil || idx < 0 {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	f := api.Filter{Limit: 1}
	if idx > 0 {
		f.Cursor = strconv.FormatInt(idx-1, 10) // the cursor is the last index returned
	}
	pg, err := u.cfg.Events.Query(r.Context(), f)
	if err != nil {
		u.internal(w, r, "reading event", err)
		return
	}
	if len(pg.Events) == 0 || pg.Events[0].Index != idx {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	p := u.newPage(r, "events", "nav_events")
	hosts, _, err := u.hostNames(r.Context())
	if err != nil {
		u.internal(w, r, "listing agents", err)
		return
	}
	hosts[event.ServerStream] = labels.Of(labels.Control, p.Lang, "server")
	p.hosts = hosts
	d := eventData{E: pg.Events[0]}
	for k, v := range d.E.Attrs {
		if src, ok := v.(string); ok && k == "attribution_source" {
			v = labels.Of(labels.Attribution, p.Lang, src)
		}
		if s, ok := attrForPeople(d.E, k, v, p.Lang); ok {
			d.Attrs = append(d.Attrs, attrRow{Key: k, Value: s})
			continue
		}
		d.Attrs = append(d.Attrs, attrRow{Key: k, Value: attrText(registerWords(d.E, k, v, p.Lang), p.Lang, p.loc)})
	}
	slices.SortFunc(d.Attrs, func(a, b attrRow) int { return cmp.Compare(a.Key, b.Key) })
	if id := d.E.RegisterID; id != "" && u.cfg.Registers != nil {
		for _, k := range register.Kinds {
			if _, err := u.cfg.Registers.Get(r.Context(), k, id); err == nil {
				d.RegisterKind = string(k)
				break
			}
		}
	}
	t := d.E.Time.In(u.cfg.Location)
	aq := url.Values{"agent": {d.E.Agent}, "from": {t.Add(-10 * time.Minute).Format(uiTime)}, "to": {t.Add(10 * time.Minute).Format(uiTime)}}
	d.Around = "/events?" + aq.Encode()
	d.Stream = "/events?" + url.Values{"agent": {d.E.Agent}}.Encode()
	p.Title = fmt.Sprintf("%s #%d", p.L["event_detail"], idx)
	p.Data = d
	u.render(w, r, http.StatusOK, "event", p)
}

var errBadPage = errors.New("before/after: want a log index")

// newestPage fills d with the newest-first page the query names: the
// newest matches (no before/after), those below a log index (before=, the
// older page) or the ones right after one (after=, the newer page).
func (u *UI) newestPage(r *http.Request, query queryFunc, share float64, f api.Filter, q url.Values, d *eventsData) error {
	ctx := r.Context()
	f.Cursor = ""
	idx := func(k string) (int64, bool, error) {
		v := q.Get(k)
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, false, errBadPage
		}
		return n, true, nil
	}
	before, hasBefore, err := idx("before")
	if err != nil {
		return err
	}
	after, hasAfter, err := idx("after")
	if err != nil {
		return err
	}
	var evs []api.Stored
	older, newer := false, hasBefore
	switch {
	case hasAfter:
		g := f
		g.Cursor, g.Limit = strconv.FormatInt(after, 10), eventsPerPage
		pg, err := query(ctx, g)
		if err != nil {
			return err
		}
		evs = pg.Events
		slices.Reverse(evs)
		older, newer = true, pg.Next != ""
	default:
		if !hasBefore {
			if before, err = u.cfg.Events.TreeSize(ctx); err != nil {
				return err
			}
		}
		if evs, older, err = u.newestBefore(ctx, query, f, before, eventsPerPage, share); err != nil {
			return err
		}
	}
	d.Events, d.Shown = evs, len(evs)
	keep := url.Values{}
	for k, v := range q {
		switch k {
		case "cursor", "trail", "before", "after", "ok":
		default:
			keep[k] = v
		}
	}
	link := func(k string, v int64) string {
		nq := url.Values{}
		for kk, vv := range keep {
			nq[kk] = vv
		}
		if k != "" {
			nq.Set(k, strconv.FormatInt(v, 10))
		}
		return "/events?" + nq.Encode()
	}
	if len(evs) > 0 && older {
		d.Next = link("before", evs[len(evs)-1].Index)
	}
	if len(evs) > 0 && newer {
		d.Prev = link("after", evs[0].Index)
	}
	if hasBefore || hasAfter {
		d.First = link("", 0)
	}
	asc := url.Values{}
	for k, v := range keep {
		asc[k] = v
	}
	asc.Set("order", "asc")
	d.Other = "/events?" + asc.Encode()
	return nil
}
