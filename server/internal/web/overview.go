package web

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/shared/event"
)

// warningTypes are the event types whose warnings and violations a manager
// must see on 概要 even while the control's status still says pass: a bulk
// copy, a write to an unregistered stick, a gap in a PC's record, an
// accepted loss of events or a mismatch found in the stored log.
var warningTypes = []string{
	"fileaccess.bulk", "fileaccess.overflow", "media.blocked", "media.file_written", "media.inserted",
	"media.enforce_failed", "screenlock.drift", "screenlock.enforce_failed", "backup.failed", "backup.corrupt",
	"agent.dropped", "server.gap", "server.unclean_stop", "server.checkpoint_copy_missing", "notify.failed", "incident.overdue",
	// Integrity findings about the log itself.
	"server.event_loss_accepted", "server.scrub_failed", "server.heads_rebuilt",
	// Signs that an agent or its PC was tampered with: a kill or crash
	// (outage as a warning; a clean stop is info), forged or replayed
	// chains, event times run back, an edited policy file.
	"agent.outage", "agent.tamper_suspected", "server.clock_rewound", "agent.policy_tampered",
	// A PC enrolled again under a new identity (a warning only then).
	"agent.enrolled",
}

// warningWindow is how far back 概要 looks for warnings.
const warningWindow = 24 * time.Hour

// maxWarningRows bounds the warnings table; the counts are over all read.
const maxWarningRows = 20

// warnings reads the last day's warning and violation events of
// warningTypes, newest first, and counts them per control, and the week's
// events of those types for the charts. Each type is one walk of its index
// from the log position where the week starts: a time filter would make
// the store weigh each query against the week's time range first (~100k
// index entries at 10M events, 13 times per page).
func (u *UI) warnings(ctx context.Context, d *overviewData) error {
	now := u.cfg.Now()
	today := now.In(u.cfg.Location)
	week := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, today.Location()).AddDate(0, 0, -6)
	from := now.Add(-warningWindow)
	d.WarnByControl = map[string]int{}
	d.week = map[string][]api.Stored{}
	weekAt, found, err := u.firstAt(ctx, week, true)
	if err != nil || !found {
		return err
	}
	var all []api.Stored
	for _, t := range warningTypes {
		wk, err := u.cfg.Events.Query(ctx, api.Filter{Type: t, Cursor: weekAt, Limit: api.MaxQueryLimit})
		if err != nil {
			return err
		}
		inWeek := func(e api.Stored) bool { return !e.Time.Before(week) }
		d.week[t] = slices.DeleteFunc(slices.Clone(wk.Events), func(e api.Stored) bool { return !inWeek(e) })
		day := wk.Events
		if wk.Next != "" {
			// A week too busy for one page: the day gets its own walk so
			// it is not crowded out.
			dayAt, _, err := u.firstAt(ctx, from, false)
			if err != nil {
				return err
			}
			pg, err := u.cfg.Events.Query(ctx, api.Filter{Type: t, Cursor: dayAt, Limit: api.MaxQueryLimit})
			if err != nil {
				return err
			}
			day = pg.Events
		}
		for _, e := range day {
			if e.Severity == event.Info || e.Pruned || e.Time.Before(from) {
				continue
			}
			d.WarnByControl[e.Control]++
			all = append(all, e)
		}
	}
	slices.SortFunc(all, func(a, b api.Stored) int { return b.Time.Compare(a.Time) })
	if len(all) > maxWarningRows {
		d.WarningsMore = len(all) - maxWarningRows
		all = all[:maxWarningRows]
	}
	d.Warnings = all
	return nil
}

// firstAt returns the cursor just before the first event (in log order)
// whose time is at or after t, and false when there is none. Every event of
// that time or later lies after it, whatever order agents delivered them in.
// The position for a time never changes once found (the log only grows), so
// with keep it is remembered (the overview's week start: one lookup a day).
func (u *UI) firstAt(ctx context.Context, t time.Time, keep bool) (cursor string, found bool, err error) {
	u.firstMu.Lock()
	c, ok := u.first[t.UnixNano()]
	u.firstMu.Unlock()
	if ok {
		return c, true, nil
	}
	pg, err := u.cfg.Events.Query(ctx, api.Filter{From: t, Limit: 1})
	if err != nil || len(pg.Events) == 0 {
		return "", false, err
	}
	if idx := pg.Events[0].Index; idx > 0 {
		c = strconv.FormatInt(idx-1, 10)
	}
	if keep {
		u.firstMu.Lock()
		if len(u.first) > 8 {
			clear(u.first)
		}
		u.first[t.UnixNano()] = c
		u.firstMu.Unlock()
	}
	return c, true, nil
}
