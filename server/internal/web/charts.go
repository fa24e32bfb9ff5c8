package web

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/shared/labels"
)

// Charts are plain SVG drawn on the server (no script, no CDN); every mark
// links to the filtered list behind it.

// chart is one titled chart of the overview.
type chart struct {
	ID, Title string
	SVG       template.HTML
}

// bar is one bar of a horizontal bar chart.
type bar struct {
	Label string
	Value float64 // 0..1 for rates, counts otherwise
	Text  string  // shown at the bar's end
	Link  string
	Color string
}

// palette for series, colour-blind safe (Okabe-Ito).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"}

func esc(s string) string { return template.HTMLEscapeString(s) }

// barsSVG draws horizontal bars scaled to max (1 for rates).
func barsSVG(id string, bars []bar, max float64, empty string) template.HTML {
	if len(bars) == 0 {
		return template.HTML(`<p class="muted">` + esc(empty) + `</p>`)
	}
	const w, row, left, right = 560.0, 24.0, 150.0, 70.0
	h := row*float64(len(bars)) + 8
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="%s" viewBox="0 0 %.0f %.0f" width="100%%" role="img">`, esc(id), w, h)
	for i, br := range bars {
		y := 4 + row*float64(i)
		bw := 0.0
		if max > 0 {
			bw = (w - left - right) * min(br.Value/max, 1)
		}
		fmt.Fprintf(&b, `<a href="%s"><text x="%.1f" y="%.1f" text-anchor="end" style="font-size:12px;fill:#1f2933">%s</text>`+
			`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="3" fill="%s"><title>%s: %s</title></rect>`+
			`<text x="%.1f" y="%.1f" style="font-size:12px;fill:#334e68">%s</text></a>`,
			esc(br.Link), left-8, y+15, esc(fitLabel(br.Label, left-12)), left, y+3, max0(bw, 1), row-8, cmp.Or(br.Color, palette[0]), esc(br.Label), esc(br.Text),
			left+bw+6, y+15, esc(br.Text))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text escaped above
}

// fitLabel shortens s to about px pixels at 12px (CJK characters a full
// em, others about 0.6), keeping the end, which for a folder path is the
// part that tells folders apart; the bar's tooltip keeps the whole text.
func fitLabel(s string, px float64) string {
	width := func(r rune) float64 {
		if r >= 0x1100 {
			return 12
		}
		return 7
	}
	total := 0.0
	for _, r := range s {
		total += width(r)
	}
	if total <= px {
		return s
	}
	rs := []rune(s)
	w := width('…')
	i := len(rs)
	for i > 0 && w+width(rs[i-1]) <= px {
		i--
		w += width(rs[i])
	}
	// Start at a path separator when one is near, not mid-name.
	for j := i; j < i+(len(rs)-i)/2; j++ {
		if rs[j] == '/' || rs[j] == '\\' {
			i = j
			break
		}
	}
	return "…" + string(rs[i:])
}

func max0(a, b float64) float64 {
	if a < b {
		return b
	}
	return a
}

// series is one line of a line chart: a value per day (NaN-free; missing
// days are left out).
type series struct {
	Name, Link, Color string
	Points            map[string]float64 // YYYY-MM-DD -> 0..1
}

// linesSVG draws rate lines over the days ending today, with a legend
// whose entries link to the series' list.
func linesSVG(id string, ss []series, today time.Time, days int, lang string) template.HTML {
	const w, h, left, right, top, bottom = 560.0, 230.0, 40.0, 10.0, 10.0, 54.0
	pw, ph := w-left-right, h-top-bottom
	start := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, today.Location()).AddDate(0, 0, -days+1)
	x := func(i int) float64 { return left + pw*float64(i)/float64(days-1) }
	y := func(r float64) float64 { return top + ph*(1-min(max(r, 0), 1)) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="%s" viewBox="0 0 %.0f %.0f" width="100%%" role="img">`, esc(id), w, h)
	for _, g := range []float64{0, .5, 1} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d9e2ec"/><text x="%.1f" y="%.1f" text-anchor="end">%.0f%%</text>`,
			left, y(g), w-right, y(g), left-6, y(g)+3, g*100)
	}
	layout := "1/2"
	if lang == "ja" {
		layout = "1月2日"
	}
	for k, i := range []int{0, days / 3, 2 * days / 3, days - 1} {
		anchor := [...]string{"start", "middle", "middle", "end"}[k] // the ends stay inside the chart
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`, x(i), h-bottom+14, anchor, start.AddDate(0, 0, i).Format(layout))
	}
	for k, s := range ss {
		col := cmp.Or(s.Color, palette[k%len(palette)])
		var pts []string
		for i := range days {
			if r, ok := s.Points[start.AddDate(0, 0, i).Format(time.DateOnly)]; ok {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(r)))
			}
		}
		fmt.Fprintf(&b, `<a href="%s">`, esc(s.Link))
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s</title></polyline>`, col, strings.Join(pts, " "), esc(s.Name))
		}
		for _, p := range pts {
			xy := strings.SplitN(p, ",", 2)
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2.5" fill="%s"/>`, xy[0], xy[1], col)
		}
		lx, ly := left+float64(k%4)*130, h-bottom+30+float64(k/4)*14
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f" style="font-size:11px;fill:#1f2933">%s</text></a>`,
			lx, ly-9, col, lx+14, ly, esc(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// stackSVG draws one stacked column per day of counts per key, the keys in
// the legend; each segment links to that day's events of that key.
func stackSVG(id string, days []string, keys []string, counts map[string]map[string]int, label func(string) string,
	link func(day, key string) string, empty string) template.HTML {
	total := 0
	maxDay := 0
	for _, d := range days {
		n := 0
		for _, c := range counts[d] {
			n += c
		}
		total += n
		maxDay = max(maxDay, n)
	}
	if total == 0 {
		return template.HTML(`<p class="muted">` + esc(empty) + `</p>`)
	}
	const w, h, left, right, top, bottom = 560.0, 230.0, 40.0, 10.0, 10.0, 54.0
	pw, ph := w-left-right, h-top-bottom
	colW := pw / float64(len(days))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="%s" viewBox="0 0 %.0f %.0f" width="100%%" role="img">`, esc(id), w, h)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d9e2ec"/><text x="%.1f" y="%.1f" text-anchor="end">%d</text><text x="%.1f" y="%.1f" text-anchor="end">0</text>`,
		left, top, w-right, top, left-6, top+4, maxDay, left-6, top+ph)
	for i, d := range days {
		y := top + ph
		for k, key := range keys {
			n := counts[d][key]
			if n == 0 {
				continue
			}
			hh := ph * float64(n) / float64(maxDay)
			y -= hh
			fmt.Fprintf(&b, `<a href="%s"><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %d</title></rect></a>`,
				esc(link(d, key)), left+colW*float64(i)+3, y, colW-6, hh, palette[k%len(palette)], esc(d), esc(label(key)), n)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, left+colW*(float64(i)+.5), h-bottom+14, esc(d[5:]))
	}
	for k, key := range keys {
		lx, ly := left+float64(k%3)*170, h-bottom+30+float64(k/3)*14
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f" style="font-size:11px;fill:#1f2933">%s</text>`,
			lx, ly-9, palette[k%len(palette)], lx+14, ly, esc(label(key)))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// chartDays is the span of the overview's trend charts.
const chartDays = 30

// overviewCharts builds the overview's charts: pass-rate trend per control
// and per department from the stored daily history, department pass rates
// now, warnings per day by type and removable media use by device over the
// last week (both bounded indexed queries by type).
func (u *UI) overviewCharts(ctx context.Context, p *page, rep compliance.Report, week map[string][]api.Stored) ([]chart, error) {
	lang := p.Lang
	today := u.cfg.Now().In(u.cfg.Location)
	hist, err := u.cfg.Compliance.History(ctx)
	if err != nil {
		return nil, err
	}
	// Today's point is the live report (the stored one is today's last
	// sample so far): a new install's trend charts are not empty beside its
	// overall one, and a department whose first PC came after the sample is
	// not missing.
	if d, ok := compliance.DayOf(rep, today.Format(time.DateOnly)); ok {
		if n := len(hist); n > 0 && hist[n-1].Day == d.Day {
			hist[n-1] = d
		} else {
			hist = append(hist, d)
		}
	}
	var ctl, dep []series
	deps := map[string]bool{}
	for _, d := range hist {
		for k := range d.Departments {
			deps[k] = true
		}
	}
	for _, c := range compliance.Controls {
		s := series{Name: labels.Of(labels.Control, lang, c), Link: "/hosts?status=fail&control=" + c, Points: map[string]float64{}}
		for _, d := range hist {
			if r, ok := d.Controls[c]; ok {
				s.Points[d.Day] = r
			}
		}
		ctl = append(ctl, s)
	}
	depNames := make([]string, 0, len(deps))
	for k := range deps {
		depNames = append(depNames, k)
	}
	slices.Sort(depNames)
	chartStart := today.AddDate(0, 0, -chartDays+1).Format(time.DateOnly)
	first := map[string]string{} // department -> its first day on the chart
	earliest := ""
	for _, dn := range depNames {
		s := series{Name: deptLabel(dn, p), Link: "/hosts?" + url.Values{"department": {dn}}.Encode(), Points: map[string]float64{}}
		for _, d := range hist {
			if r, ok := d.Departments[dn]; ok {
				s.Points[d.Day] = r
				if d.Day >= chartStart && (first[dn] == "" || d.Day < first[dn]) {
					first[dn] = d.Day
				}
			}
		}
		if f := first[dn]; f != "" && (earliest == "" || f < earliest) {
			earliest = f
		}
		dep = append(dep, s)
	}
	out := []chart{
		{ID: "chart-trend-control", Title: p.L["chart_trend_control"], SVG: linesSVG("svg-trend-control", ctl, today, chartDays, lang)},
		{ID: "chart-trend-dept", Title: p.L["chart_trend_dept"], SVG: linesSVG("svg-trend-dept", dep, today, chartDays, lang) + laterStarts(depNames, first, earliest, p)},
	}
	// Department pass rates now.
	var dbars []bar
	for dn, rates := range rep.Departments {
		var pass, n int
		for _, r := range rates {
			pass, n = pass+r.Pass, n+r.Pass+r.Fail+r.Unknown
		}
		if n == 0 {
			continue
		}
		r := float64(pass) / float64(n)
		col := "#1e8e3e"
		if r < .8 {
			col = "#b06000"
		}
		if r < .5 {
			col = "#c5221f"
		}
		dbars = append(dbars, bar{Label: deptLabel(dn, p), Value: r, Text: fmt.Sprintf("%.0f%%", r*100), Color: col,
			Link: "/hosts?" + url.Values{"department": {dn}, "sort": {"fails"}}.Encode()})
	}
	slices.SortFunc(dbars, func(a, b bar) int { return cmp.Or(cmp.Compare(a.Value, b.Value), cmp.Compare(a.Label, b.Label)) })
	out = append(out, chart{ID: "chart-dept", Title: p.L["chart_dept"], SVG: barsSVG("svg-dept", dbars, 1, p.L["none"])})

	// The last week's warnings by type and media use by device.
	from := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, today.Location()).AddDate(0, 0, -6)
	var days []string
	for i := range 7 {
		days = append(days, from.AddDate(0, 0, i).Format(time.DateOnly))
	}
	counts := map[string]map[string]int{}
	var keys []string
	for _, t := range warningTypes {
		for _, e := range week[t] {
			if e.Severity == "info" || e.Pruned {
				continue
			}
			d := e.Time.In(u.cfg.Location).Format(time.DateOnly)
			if counts[d] == nil {
				counts[d] = map[string]int{}
			}
			if counts[d][t] == 0 && !slices.Contains(keys, t) {
				keys = append(keys, t)
			}
			counts[d][t]++
		}
	}
	slices.Sort(keys)
	dayLink := func(day, key string) string {
		d, _ := time.ParseInLocation(time.DateOnly, day, u.cfg.Location)
		return "/events?" + url.Values{"type": {key}, "from": {d.Format(uiTime)}, "to": {d.AddDate(0, 0, 1).Format(uiTime)}}.Encode()
	}
	out = append(out, chart{ID: "chart-warnings", Title: p.L["chart_warnings"],
		SVG: stackSVG("svg-warnings", days, keys, counts, func(k string) string { return labels.Of(labels.EventType, lang, k) }, dayLink, p.L["none"])})

	byDev := map[string]int{}
	names := map[string]string{}
	unreg := map[string]bool{} // not in 媒体管理台帳: its latest event has no register id
	for _, e := range week["media.inserted"] {
		serial := fmt.Sprint(e.Attrs["serial"])
		byDev[serial]++
		names[serial] = strings.TrimSpace(fmt.Sprint(e.Attrs["product"]) + " " + serial)
		unreg[serial] = unregisteredMedia(e.Event)
	}
	var mbars []bar
	top := 0
	for s, n := range byDev {
		b := bar{Label: names[s], Value: float64(n), Text: fmt.Sprintf("%d", n),
			Link: "/events?" + url.Values{"type": {"media.inserted"}, "from": {from.Format(uiTime)}}.Encode()}
		if unreg[s] {
			b.Text += " " + p.L["unregistered_short"]
			b.Color = "#c5221f"
		}
		mbars = append(mbars, b)
		top = max(top, n)
	}
	slices.SortFunc(mbars, func(a, b bar) int { return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(a.Label, b.Label)) })
	if len(mbars) > 8 {
		mbars = mbars[:8]
	}
	out = append(out, chart{ID: "chart-media", Title: p.L["chart_media"], SVG: barsSVG("svg-media", mbars, float64(top), p.L["none"])})
	return out, nil
}

// deptLabel names a department on a chart; PCs without one are 部署未設定.
func deptLabel(dn string, p *page) string {
	if dn == "" {
		return p.L["no_department"]
	}
	return dn
}

// laterStarts says under the department trend which departments' lines
// start later than the others' (their first PC was counted then), so a
// short line is not read as missing history.
func laterStarts(depNames []string, first map[string]string, earliest string, p *page) template.HTML {
	byDay := map[string][]string{}
	for _, dn := range depNames {
		if f := first[dn]; f != "" && f > earliest {
			byDay[f] = append(byDay[f], deptLabel(dn, p))
		}
	}
	if len(byDay) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(`<p class="muted" id="trend-dept-starts">`)
	for i, day := range slices.Sorted(maps.Keys(byDay)) {
		if i > 0 {
			b.WriteString("<br>")
		}
		d, _ := time.Parse(time.DateOnly, day)
		layout := "1/2"
		if p.Lang == "ja" {
			layout = "1月2日"
		}
		b.WriteString(esc(fmt.Sprintf(p.L["trend_starts_fmt"], strings.Join(byDay[day], "、"), d.Format(layout))))
	}
	b.WriteString(`</p>`)
	return template.HTML(b.String()) // escaped above
}
