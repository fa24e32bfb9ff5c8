package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mamori/mamori/server/internal/state"
)

// trendKey is where the daily fleet pass rates are kept in state.
const trendKey = "ui/trend"

// trendDays is the span of the overview chart.
const trendDays = 30

// trendWriteEvery bounds how often a busy overview rewrites today's point.
const trendWriteEvery = 10 * time.Minute

// TrendPoint is one day's fleet pass rate (the last one observed that day).
type TrendPoint struct {
	Day  string  `json:"day"` // YYYY-MM-DD in the UI's zone
	Rate float64 `json:"rate"`
}

// trend keeps one pass-rate point per day in state, so the chart needs no
// scan of the event log and survives restarts.
type trend struct {
	st  *state.State
	now func() time.Time
	loc *time.Location

	mu      sync.Mutex
	points  []TrendPoint
	loaded  bool
	written time.Time
}

// observe records rate as today's point (when valid) and returns the
// points of the last trendDays days.
func (t *trend) observe(ctx context.Context, rate float64, valid bool) ([]TrendPoint, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var err error
	if !t.loaded {
		var stored []TrendPoint
		if _, gerr := t.st.GetJSON(ctx, trendKey, &stored); gerr != nil && !errors.Is(gerr, state.ErrNotFound) {
			err = gerr
		} else {
			t.points, t.loaded = stored, true
		}
	}
	if t.loaded && valid {
		today := now.In(t.loc).Format(time.DateOnly)
		n := len(t.points)
		if n > 0 && t.points[n-1].Day == today {
			t.points[n-1].Rate = rate
		} else {
			t.points = append(t.points, TrendPoint{Day: today, Rate: rate})
		}
		first := now.In(t.loc).AddDate(0, 0, -trendDays+1).Format(time.DateOnly)
		t.points = slices.DeleteFunc(t.points, func(p TrendPoint) bool { return p.Day < first })
		if now.Sub(t.written) >= trendWriteEvery {
			if _, perr := t.st.PutJSON(ctx, trendKey, t.points, -1); perr != nil {
				err = perr
			} else {
				t.written = now
			}
		}
	}
	return slices.Clone(t.points), err
}

// trendSVG draws the points as a line over the last trendDays days ending
// today: plain SVG from the server, no script.
func trendSVG(points []TrendPoint, today time.Time, lang string) template.HTML {
	const w, h, left, right, top, bottom = 560.0, 200.0, 40.0, 10.0, 10.0, 24.0
	pw, ph := w-left-right, h-top-bottom
	start := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, today.Location()).AddDate(0, 0, -trendDays+1)
	x := func(day string) (float64, bool) {
		d, err := time.ParseInLocation(time.DateOnly, day, today.Location())
		if err != nil {
			return 0, false
		}
		i := d.Sub(start).Hours() / 24
		if i < 0 || i > trendDays-1 {
			return 0, false
		}
		return left + pw*i/(trendDays-1), true
	}
	y := func(r float64) float64 { return top + ph*(1-r) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="trend" id="trend" viewBox="0 0 %.0f %.0f" width="100%%" role="img" aria-label="trend">`, w, h)
	for _, g := range []float64{0, .5, 1} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d9e2ec"/>`, left, y(g), w-right, y(g))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%.0f%%</text>`, left-6, y(g)+3, g*100)
	}
	layout := "1/2"
	if lang == "ja" {
		layout = "1月2日"
	}
	for k, i := range []int{0, 10, 20, trendDays - 1} {
		d := start.AddDate(0, 0, i)
		anchor := [...]string{"start", "middle", "middle", "end"}[k]
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`, left+pw*float64(i)/(trendDays-1), h-6, anchor, d.Format(layout))
	}
	var pts []string
	for _, p := range points {
		if px, ok := x(p.Day); ok {
			r := min(max(p.Rate, 0), 1)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, y(r)))
		}
	}
	if len(pts) > 1 {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#0b5394" stroke-width="2" points="%s"/>`, strings.Join(pts, " "))
	}
	for _, p := range pts {
		xy := strings.SplitN(p, ",", 2)
		fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2.5" fill="#0b5394"/>`, xy[0], xy[1])
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and dates only, built here
}
