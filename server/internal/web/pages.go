package web

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/server/internal/notify"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

// hostNames maps agent ids to hostnames for display.
func (u *UI) hostNames(ctx context.Context) (map[string]string, []state.Agent, error) {
	as, err := u.cfg.State.ListAgents(ctx)
	if err != nil {
		return nil, nil, err
	}
	m := make(map[string]string, len(as))
	for _, a := range as {
		m[a.ID] = a.Hostname
	}
	return m, as, nil
}

type rateRow struct {
	Control string
	Rate    compliance.Rate
}

type overviewData struct {
	Total, Online, Silent, Violations, SilentAlerts, AlertsMore int
	Overall                                                     float64
	Rates                                                       []rateRow
	Alerts                                                      []compliance.Alert
	Warnings                                                    []api.Stored
	WarningsMore                                                int
	WarnByControl                                               map[string]int
	Acts                                                        map[string]notify.AlertRow // alert states (alertActs)
	Trend                                                       template.HTML
	Charts                                                      []chart
	week                                                        map[string][]api.Stored // warnings by type, last 7 days
}

// maxAlertRows bounds the violations table; the count above it is exact.
const maxAlertRows = 100

func (u *UI) handleOverview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rep, err := u.cfg.Compliance.Report(ctx, compliance.Filter{})
	if err != nil {
		u.internal(w, r, "compliance report", err)
		return
	}
	alerts, err := u.cfg.Compliance.Alerts(ctx)
	if err != nil {
		u.internal(w, r, "alerts", err)
		return
	}
	d := overviewData{Total: len(rep.Hosts)}
	for _, h := range rep.Hosts {
		if h.Silent {
			d.Silent++
		} else {
			d.Online++
		}
	}
	for _, a := range alerts {
		if a.Kind == compliance.KindViolation {
			d.Violations++
		} else {
			d.SilentAlerts++
		}
	}
	slices.SortStableFunc(alerts, func(a, b compliance.Alert) int { return b.Since.Compare(a.Since) })
	if len(alerts) > maxAlertRows {
		d.AlertsMore = len(alerts) - maxAlertRows
		alerts = alerts[:maxAlertRows]
	}
	d.Alerts = alerts
	d.Acts = u.alertActs(ctx)
	var pass, runs int
	for _, c := range compliance.Controls {
		rt := rep.Fleet[c]
		d.Rates = append(d.Rates, rateRow{Control: c, Rate: rt})
		pass += rt.Pass
		runs += rt.Pass + rt.Fail + rt.Unknown
	}
	if runs > 0 {
		d.Overall = float64(pass) / float64(runs)
	}
	points, err := u.trend.observe(ctx, d.Overall, runs > 0)
	if err != nil {
		u.log.Warn().Err(err).Msg("web: trend not updated") // the page still shows
	}
	p := u.newPage(r, "overview", "nav_overview")
	if err := u.warnings(ctx, &d); err != nil {
		u.internal(w, r, "reading warnings", err)
		return
	}
	p.hosts = make(map[string]string, len(rep.Hosts)) // the report has the names: no second etcd read
	for _, h := range rep.Hosts {
		p.hosts[h.Agent] = h.Hostname
	}
	// The compliance tracker's daily history (recorded whether or not
	// anyone looks) is the trend where the server keeps one.
	if hist, err := u.cfg.Compliance.History(ctx); err == nil && len(hist) > 0 {
		points = points[:0]
		for _, h := range hist {
			points = append(points, TrendPoint{Day: h.Day, Rate: h.Fleet})
		}
	}
	d.Trend = trendSVG(points, u.cfg.Now().In(u.cfg.Location), p.Lang)
	if d.Charts, err = u.overviewCharts(ctx, p, rep, d.week); err != nil {
		u.internal(w, r, "charts", err)
		return
	}
	span := 7
	if r.URL.Query().Get("volume") == "30" {
		span = 30
	}
	vc, err := u.volumeCharts(ctx, p, span)
	if err != nil {
		u.internal(w, r, "charts", err)
		return
	}
	d.Charts = append(d.Charts, vc...)
	p.Data = d
	u.render(w, r, http.StatusOK, "overview", p)
}

type hostsData struct {
	Q, Department, Control, Status, Sort string
	SilentOnly                           bool
	Departments, Controls                []string
	Statuses                             []compliance.Status
	Hosts                                []compliance.Host
	Shown, Matched, Total                int
	Next, Export                         string
	SortLinks                            map[string]string
}

// hostsPerPage bounds one page of the hosts list.
const hostsPerPage = 200

// hostSorts are the hosts list's orders: by name, department, last
// contact (oldest first finds silent PCs), most failing controls first.
var hostSorts = map[string]func(a, b compliance.Host) int{
	"name":  func(a, b compliance.Host) int { return cmp.Compare(a.Hostname, b.Hostname) },
	"dept":  func(a, b compliance.Host) int { return cmp.Compare(a.Department, b.Department) },
	"seen":  func(a, b compliance.Host) int { return compareSeen(a.LastSeen, b.LastSeen) },
	"fails": func(a, b compliance.Host) int { return cmp.Compare(fails(b), fails(a)) },
}

func compareSeen(a, b *time.Time) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return a.Compare(*b)
}

func fails(h compliance.Host) int {
	n := 0
	for _, c := range h.Controls {
		if c.Status == compliance.Fail {
			n++
		}
	}
	return n
}

// selectHosts applies the hosts list's filters and order; an error is the
// user's (a bad filter value).
func (u *UI) selectHosts(r *http.Request) (hostsData, []compliance.Host, error) {
	q := r.URL.Query()
	d := hostsData{Q: q.Get("q"), Department: q.Get("department"), Control: labels.Code(labels.Control, q.Get("control")),
		Status: labels.Code(labels.Verdict, q.Get("status")), SilentOnly: q.Get("silent") == "1", Controls: compliance.Controls,
		Statuses: []compliance.Status{compliance.Pass, compliance.Fail, compliance.Unknown, compliance.Off}, Sort: cmp.Or(q.Get("sort"), "name")}
	if d.Control != "" && !slices.Contains(compliance.Controls, d.Control) {
		return d, nil, errors.New("control")
	}
	if d.Status != "" && !slices.Contains(d.Statuses, compliance.Status(d.Status)) {
		return d, nil, errors.New("status")
	}
	if _, ok := hostSorts[strings.TrimPrefix(d.Sort, "-")]; !ok {
		return d, nil, errors.New("sort")
	}
	all, err := u.cfg.Compliance.Report(r.Context(), compliance.Filter{})
	if err != nil {
		return d, nil, fmt.Errorf("web: %w: %w", errInternal, err)
	}
	d.Total = len(all.Hosts)
	depts := map[string]bool{}
	for _, h := range all.Hosts {
		if h.Department != "" {
			depts[h.Department] = true
		}
	}
	for k := range depts {
		d.Departments = append(d.Departments, k)
	}
	slices.Sort(d.Departments)
	needle := strings.ToLower(d.Q)
	var sel []compliance.Host
	for _, h := range all.Hosts {
		if d.Department != "" && h.Department != d.Department || d.SilentOnly && !h.Silent ||
			needle != "" && !strings.Contains(strings.ToLower(h.Hostname), needle) {
			continue
		}
		if d.Status != "" {
			hit := false
			for c, cs := range h.Controls {
				if (d.Control == "" || c == d.Control) && string(cs.Status) == d.Status {
					hit = true
				}
			}
			if !hit {
				continue
			}
		}
		sel = append(sel, h)
	}
	by, desc := hostSorts[strings.TrimPrefix(d.Sort, "-")], strings.HasPrefix(d.Sort, "-")
	slices.SortFunc(sel, func(a, b compliance.Host) int {
		c := by(a, b)
		if desc {
			c = -c
		}
		return cmp.Or(c, cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.Agent, b.Agent))
	})
	d.Matched = len(sel)
	keep := url.Values{}
	for k, v := range q {
		if k != "offset" && k != "ok" && k != "sort" {
			keep[k] = v
		}
	}
	d.SortLinks = map[string]string{}
	for k := range hostSorts {
		nq := url.Values{}
		for kk, v := range keep {
			nq[kk] = v
		}
		s := k
		if d.Sort == k {
			s = "-" + k
		}
		nq.Set("sort", s)
		d.SortLinks[k] = "/hosts?" + nq.Encode()
	}
	keep.Set("sort", d.Sort)
	d.Export = "/hosts/export?" + keep.Encode()
	return d, sel, nil
}

var errInternal = errors.New("internal")

func (u *UI) handleHosts(w http.ResponseWriter, r *http.Request) {
	d, sel, err := u.selectHosts(r)
	if errors.Is(err, errInternal) {
		u.internal(w, r, "compliance report", err)
		return
	}
	if err != nil {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", err.Error())
		return
	}
	q := r.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	offset = max(offset, 0)
	if offset < len(sel) {
		sel = sel[offset:]
	} else {
		sel = nil
	}
	if len(sel) > hostsPerPage {
		sel = sel[:hostsPerPage]
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("offset", strconv.Itoa(offset+hostsPerPage))
		d.Next = "/hosts?" + nq.Encode()
	}
	d.Hosts, d.Shown = sel, len(sel)
	p := u.newPage(r, "hosts", "nav_hosts")
	p.Data = d
	u.render(w, r, http.StatusOK, "hosts", p)
}

// handleHostsExport writes the filtered hosts list as Excel CSV (UTF-8 with
// a BOM), labels in the UI's language, times in its zone.
func (u *UI) handleHostsExport(w http.ResponseWriter, r *http.Request) {
	d, sel, err := u.selectHosts(r)
	if errors.Is(err, errInternal) {
		u.internal(w, r, "compliance report", err)
		return
	}
	if err != nil {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", err.Error())
		return
	}
	lang := langOf(r)
	L := messages[lang]
	var buf bytes.Buffer
	buf.WriteString("\ufeff")
	cw := csv.NewWriter(&buf)
	cw.UseCRLF = true
	hdr := []string{L["host"], L["department"], L["last_seen"], L["silent"]}
	for _, c := range d.Controls {
		hdr = append(hdr, labels.Of(labels.Control, lang, c))
	}
	hdr = append(hdr, labels.Of(labels.Field, lang, "agent_id"))
	_ = cw.Write(hdr)
	for _, h := range sel {
		seen := ""
		if h.LastSeen != nil {
			seen = h.LastSeen.In(u.cfg.Location).Format("2006-01-02 15:04:05")
		}
		row := []string{h.Hostname, h.Department, seen, yesNo(lang, h.Silent)}
		for _, c := range d.Controls {
			if cs, ok := h.Controls[c]; ok {
				row = append(row, labels.Of(labels.Verdict, lang, string(cs.Status)))
			} else {
				row = append(row, "")
			}
		}
		_ = cw.Write(append(row, h.Agent))
	}
	cw.Flush()
	stamp := u.cfg.Now().In(u.cfg.Location).Format("20060102-150405")
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="mamori-hosts-`+stamp+`.csv"`)
	_, _ = w.Write(buf.Bytes())
	u.record(r, sessionFrom(r.Context()).Name, event.Event{Type: "export.made", Object: "hosts",
		Attrs: event.Attrs{"format": "csv", "hosts": len(sel), "query": r.URL.RawQuery}})
}

type controlRow struct {
	Name  string
	State compliance.ControlState
	// Checks are a control's own checks from its status event (posture:
	// disk encryption, anti-virus, OS updates, firewall), each a row.
	Checks []checkRow
}

// checkRow is one check of a control's status.
type checkRow struct {
	Name, Status, ReasonJA, ReasonEN, Reason string
	Required                                 bool
}

// postureChecks is the order posture's checks are shown in.
var postureChecks = []string{"disk_encryption", "antivirus", "os_update", "firewall"}

// statusChecks reads the "checks" attribute of the status event at idx.
func (u *UI) statusChecks(ctx context.Context, idx int64) ([]checkRow, error) {
	f := api.Filter{Limit: 1}
	if idx > 0 {
		f.Cursor = strconv.FormatInt(idx-1, 10)
	}
	pg, err := u.cfg.Events.Query(ctx, f)
	if err != nil || len(pg.Events) == 0 || pg.Events[0].Index != idx {
		return nil, err
	}
	checks, _ := pg.Events[0].Attrs["checks"].(map[string]any)
	var out []checkRow
	for _, name := range postureChecks {
		c, ok := checks[name].(map[string]any)
		if !ok {
			continue
		}
		str := func(k string) string { s, _ := c[k].(string); return s }
		req, _ := c["required"].(bool)
		out = append(out, checkRow{Name: name, Status: str("state"), ReasonJA: str("reason_ja"), ReasonEN: str("reason_en"),
			Reason: str("reason"), Required: req})
	}
	return out, nil
}

type hostData struct {
	Host     compliance.Host
	Agent    state.Agent
	Policy   string
	Controls []controlRow
	Events   []api.Stored
}

// recentEvents is how many of a host's latest events its page shows.
const recentEvents = 50

func (u *UI) handleHost(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	ag, err := u.cfg.State.GetAgent(ctx, id)
	if errors.Is(err, state.ErrNotFound) || errors.Is(err, state.ErrInvalid) {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	if err != nil {
		u.internal(w, r, "agent lookup", err)
		return
	}
	rep, err := u.cfg.Compliance.Report(ctx, compliance.Filter{Agent: id})
	if err != nil {
		u.internal(w, r, "compliance report", err)
		return
	}
	d := hostData{Agent: ag, Host: compliance.Host{Agent: id, Hostname: ag.Hostname, Department: ag.Department}}
	if len(rep.Hosts) == 1 {
		d.Host = rep.Hosts[0]
	}
	for _, c := range compliance.Controls {
		if cs, ok := d.Host.Controls[c]; ok {
			row := controlRow{Name: c, State: cs}
			if c == "posture" && cs.Index != nil {
				if row.Checks, err = u.statusChecks(ctx, *cs.Index); err != nil {
					u.internal(w, r, "posture checks", err)
					return
				}
			}
			d.Controls = append(d.Controls, row)
		}
	}
	if u.cfg.Registers != nil {
		if eff, err := u.cfg.Registers.Effective(ctx, id); err == nil {
			d.Policy = eff.Source
		}
	}
	// The store pages in ascending order: read the hour before the host's
	// last event, keep the newest.
	if d.Host.LastSeen != nil {
		var evs []api.Stored
		f := api.Filter{Agent: id, From: d.Host.LastSeen.Add(-time.Hour), Limit: api.MaxQueryLimit}
		for range 10 {
			pg, err := u.cfg.Events.Query(ctx, f)
			if err != nil {
				u.internal(w, r, "querying events", err)
				return
			}
			evs = append(evs, pg.Events...)
			if len(evs) > recentEvents {
				evs = evs[len(evs)-recentEvents:]
			}
			if pg.Next == "" {
				break
			}
			f.Cursor = pg.Next
		}
		slices.Reverse(evs)
		d.Events = evs
	}
	p := u.newPage(r, "hosts", "nav_hosts")
	p.Title = ag.Hostname
	p.hosts = map[string]string{id: ag.Hostname}
	p.Data = d
	u.render(w, r, http.StatusOK, "host", p)
}

// handleExport streams the evidence bundle or CSV of the filtered events,
// like GET /api/v1/export, and records who exported what.
func (u *UI) handleExport(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Evidence == nil {
		http.Error(w, "export is not enabled on this server", http.StatusNotImplemented)
		return
	}
	q := r.URL.Query()
	format := q.Get("format")
	q.Del("format")
	// since: a checkpoint size the auditor kept, for the bundle's proof.
	var since int64
	if v := q.Get("since"); v != "" && format == "bundle" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			u.fail(w, r, http.StatusBadRequest, "err_invalid", fmt.Sprintf("since: %q is not a tree size (a whole number, 0 or more)", v))
			return
		}
		since = n
	}
	q.Del("since")
	hosts, _, err := u.hostNames(r.Context())
	if err != nil {
		u.internal(w, r, "listing agents", err)
		return
	}
	f, apiQ, err := u.eventFilter(q, hosts)
	if err == nil && f.Cursor != "" {
		err = errors.New("cursor: an export takes every matching event")
	}
	if err != nil {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", errIn(err, langOf(r)))
		return
	}
	f.Limit = 0
	s := sessionFrom(r.Context())
	stamp := u.cfg.Now().In(u.cfg.Location).Format("20060102-150405")
	cw := &countingWriter{w: w}
	attrs := event.Attrs{"format": format, "query": apiQ.Encode()}
	switch format {
	case "csv":
		lang := langOf(r)
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="mamori-events-`+stamp+`.csv"`)
		n, err := u.cfg.Evidence.CSV(r.Context(), cw, f, lang, u.cfg.Location)
		if err != nil {
			u.exportFailed(w, r, err, cw.n > 0)
			return
		}
		attrs["events"] = n
	case "bundle":
		query := map[string]string{}
		for k := range apiQ {
			query[k] = apiQ.Get(k)
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", `attachment; filename="mamori-evidence-`+stamp+`.jsonl"`)
		sum, err := u.cfg.Evidence.Bundle(r.Context(), cw, f, since, query)
		if err != nil {
			u.exportFailed(w, r, err, cw.n > 0)
			return
		}
		attrs["events"], attrs["links"], attrs["tree_size"] = sum.Events, sum.Links, sum.TreeSize
		if since > 0 {
			attrs["since"] = since
		}
	default:
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "format: csv | bundle")
		return
	}
	u.record(r, s.Name, event.Event{Type: "export.made", Object: format, Attrs: attrs})
}

func (u *UI) exportFailed(w http.ResponseWriter, r *http.Request, err error, started bool) {
	switch {
	case started:
		u.log.Error().Err(err).Msg("web: export broke off after it started")
	case errors.Is(err, api.ErrExportTooLarge):
		u.fail(w, r, http.StatusRequestEntityTooLarge, "err_invalid", err.Error())
	case errors.Is(err, api.ErrNoSuchCheckpoint):
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "since: "+err.Error()+"; "+api.NoSuchCheckpointMeaning)
	default:
		u.internal(w, r, "exporting", err)
	}
}

type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
