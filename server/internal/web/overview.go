package web

import (
	"context"
	"slices"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/shared/event"
)

// warningTypes are the event types whose warnings and violations a manager
// must see on 概要 even while the control's status still says pass: a bulk
// copy, a write to an unregistered stick, a gap in a PC's record.
var warningTypes = []string{
	"fileaccess.bulk", "fileaccess.overflow", "media.blocked", "media.file_written", "media.inserted",
	"media.enforce_failed", "screenlock.drift", "screenlock.enforce_failed", "backup.failed", "backup.corrupt",
	"agent.dropped", "server.gap", "notify.failed",
}

// warningWindow is how far back 概要 looks for warnings.
const warningWindow = 24 * time.Hour

// maxWarningRows bounds the warnings table; the counts are over all read.
const maxWarningRows = 20

// warnings reads the last day's warning and violation events of
// warningTypes, newest first, and counts them per control. Each type is
// one indexed query, bounded to one page.
func (u *UI) warnings(ctx context.Context, d *overviewData) error {
	now := u.cfg.Now()
	today := now.In(u.cfg.Location)
	week := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, today.Location()).AddDate(0, 0, -6)
	from := now.Add(-warningWindow)
	d.WarnByControl = map[string]int{}
	d.week = map[string][]api.Stored{}
	var all []api.Stored
	for _, t := range warningTypes {
		// The last day for the table (its own query, so a busy week does
		// not crowd it out), the week for the chart; media.inserted's
		// week also feeds the media chart, info events included.
		pg, err := u.cfg.Events.Query(ctx, api.Filter{Type: t, From: from, Limit: api.MaxQueryLimit})
		if err != nil {
			return err
		}
		for _, e := range pg.Events {
			if e.Severity == event.Info || e.Pruned {
				continue
			}
			d.WarnByControl[e.Control]++
			all = append(all, e)
		}
		wk, err := u.cfg.Events.Query(ctx, api.Filter{Type: t, From: week, Limit: api.MaxQueryLimit})
		if err != nil {
			return err
		}
		d.week[t] = wk.Events
	}
	slices.SortFunc(all, func(a, b api.Stored) int { return b.Time.Compare(a.Time) })
	if len(all) > maxWarningRows {
		d.WarningsMore = len(all) - maxWarningRows
		all = all[:maxWarningRows]
	}
	d.Warnings = all
	return nil
}
