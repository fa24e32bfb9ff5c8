package compliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mamori/mamori/server/internal/state"
)

// HistoryDays is how many days of pass rates the history keeps.
const HistoryDays = 400

// Day is one day's pass rates (the last ones observed that day): the
// fleet's per control, and each department's over all its controls. A
// rate is present only where some host runs the control.
type Day struct {
	Day         string             `json:"day"` // YYYY-MM-DD in the tracker's zone
	Fleet       float64            `json:"fleet"`
	Controls    map[string]float64 `json:"controls"`
	Departments map[string]float64 `json:"departments"`
}

// HistoryStore keeps the daily history.
type HistoryStore interface {
	LoadHistory(ctx context.Context) ([]Day, error)
	SaveHistory(ctx context.Context, days []Day) error
}

// historyKey is the history's key in the control-plane state.
const historyKey = "compliance/history"

// StateHistory keeps the history in the control-plane state (etcd), so
// every server node sees the same trend and it survives restarts.
type StateHistory struct{ State *state.State }

// LoadHistory implements HistoryStore.
func (s StateHistory) LoadHistory(ctx context.Context) ([]Day, error) {
	var days []Day
	if _, err := s.State.GetJSON(ctx, historyKey, &days); err != nil && !errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("compliance: history: %w", err)
	}
	return days, nil
}

// SaveHistory implements HistoryStore.
func (s StateHistory) SaveHistory(ctx context.Context, days []Day) error {
	if _, err := s.State.PutJSON(ctx, historyKey, days, -1); err != nil {
		return fmt.Errorf("compliance: history: %w", err)
	}
	return nil
}

// history records today's rates into a HistoryStore on the tracker's
// schedule, independent of anyone opening a page.
type history struct {
	mu    sync.Mutex
	store HistoryStore
	loc   *time.Location
	days  []Day
	ok    bool // days loaded
}

// DayOf computes a Day from a report (false when no host runs a control).
func DayOf(r Report, day string) (Day, bool) {
	d := Day{Day: day, Controls: map[string]float64{}, Departments: map[string]float64{}}
	var pass, runs int
	for c, rt := range r.Fleet {
		n := rt.Pass + rt.Fail + rt.Unknown
		if n == 0 {
			continue
		}
		d.Controls[c] = rt.Rate
		pass, runs = pass+rt.Pass, runs+n
	}
	if runs == 0 {
		return d, false
	}
	d.Fleet = float64(pass) / float64(runs)
	for dep, rates := range r.Departments {
		var p, n int
		for _, rt := range rates {
			p, n = p+rt.Pass, n+rt.Pass+rt.Fail+rt.Unknown
		}
		if n > 0 {
			d.Departments[dep] = float64(p) / float64(n)
		}
	}
	return d, true
}

// RecordDay stores today's rates (replacing today's earlier ones); the
// tracker's Run calls it every HistoryEvery.
func (t *Tracker) RecordDay(ctx context.Context) error {
	h := t.hist
	if h == nil {
		return nil
	}
	r, err := t.Report(ctx, Filter{})
	if err != nil {
		return err
	}
	now := t.cfg.Now().In(h.loc)
	d, ok := DayOf(r, now.Format(time.DateOnly))
	if !ok {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ok {
		days, err := h.store.LoadHistory(ctx)
		if err != nil {
			return err
		}
		h.days, h.ok = days, true
	}
	if n := len(h.days); n > 0 && h.days[n-1].Day == d.Day {
		h.days[n-1] = d
	} else {
		h.days = append(h.days, d)
	}
	first := now.AddDate(0, 0, -HistoryDays+1).Format(time.DateOnly)
	h.days = slices.DeleteFunc(h.days, func(x Day) bool { return x.Day < first })
	return h.store.SaveHistory(ctx, h.days)
}

// missingToday reports whether today has no row yet (a new server, or
// the first hosts just reported), so Run records one without waiting for
// HistoryEvery.
func (t *Tracker) missingToday() bool {
	h := t.hist
	if h == nil {
		return false
	}
	today := t.cfg.Now().In(h.loc).Format(time.DateOnly)
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.ok || len(h.days) == 0 || h.days[len(h.days)-1].Day != today
}

// History returns the stored daily rates, oldest first (nil without a
// HistoryStore).
func (t *Tracker) History(ctx context.Context) ([]Day, error) {
	h := t.hist
	if h == nil {
		return nil, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ok {
		days, err := h.store.LoadHistory(ctx)
		if err != nil {
			return nil, err
		}
		h.days, h.ok = days, true
	}
	return slices.Clone(h.days), nil
}
