package report

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// Monthly mails last month's audit report once, on or after the first day
// of each month (Japan time). The month sent last is kept in KV, so a
// restart neither skips nor repeats a month.
type Monthly struct {
	S  *Service
	KV interface {
		GetJSON(ctx context.Context, key string, v any) (int64, error)
		PutJSON(ctx context.Context, key string, v any, ifRev int64) (int64, error)
	}
	IsNotFound func(error) bool
	// Recipients returns who gets the report and for which department;
	// ok false when monthly reports are off.
	Recipients func(ctx context.Context) (rcpts []string, dept string, ok bool, err error)
	// Mail sends the report with its HTML and CSV attached.
	Mail func(ctx context.Context, rcpts []string, subject, text string, html, csv []byte, name string) error
}

const monthlyKey = "reports/monthly-sent"

// Due returns the month to send at now ("2026-11"), or "" if it was sent.
func (m *Monthly) Due(ctx context.Context, now time.Time) (string, time.Time, error) {
	j := now.In(JST)
	first := time.Date(j.Year(), j.Month(), 1, 0, 0, 0, 0, JST)
	prev := first.AddDate(0, -1, 0)
	month := prev.Format("2006-01")
	var sent struct {
		Month string `json:"month"`
	}
	if _, err := m.KV.GetJSON(ctx, monthlyKey, &sent); err != nil && !m.IsNotFound(err) {
		return "", time.Time{}, fmt.Errorf("report: reading %s: %w", monthlyKey, err)
	}
	if sent.Month >= month {
		return "", time.Time{}, nil
	}
	return month, prev, nil
}

// Step sends the due month's report, if any.
func (m *Monthly) Step(ctx context.Context, now time.Time) error {
	rcpts, dept, ok, err := m.Recipients(ctx)
	if err != nil || !ok {
		return err
	}
	month, start, err := m.Due(ctx, now)
	if err != nil || month == "" {
		return err
	}
	last := start.AddDate(0, 1, -1)
	r, err := m.S.Build(ctx, Params{From: start, To: last, Department: dept})
	if err != nil {
		return err
	}
	if r.TotalEvents == 0 && r.Integrity.EndSize == 0 {
		// Nothing recorded and no checkpoint signed by the month's end: the
		// server was not keeping the log then (installed since). A report
		// of it would read as an unverifiable empty month.
		m.S.cfg.Log.Info().Str("month", month).Msg("report: no monthly report for a month before the log began")
		return m.markSent(ctx, month)
	}
	var html, csv bytes.Buffer
	if err := r.HTML(&html); err != nil {
		return err
	}
	if err := r.CSV(&csv); err != nil {
		return err
	}
	scope := "全部署"
	if dept != "" {
		scope = dept
	}
	alerted, open := r.Alerts.Totals()
	subject := fmt.Sprintf("[Mamori] 月次監査報告書 %s (%s)", month, scope)
	text := fmt.Sprintf("Mamori の月次監査報告書 (%s、%s) を添付します。\n\n期間中のイベント数: %d 件\n例外: %d 件\n事故: %d 件\nアラート: %d 件 (期間末で未解決 %d 件)\nログの完全性: %s\n",
		r.Period, scope, r.TotalEvents, len(r.Exceptions), len(r.Incidents), alerted, open, r.Integrity.Statement)
	if err := m.Mail(ctx, rcpts, subject, text, html.Bytes(), csv.Bytes(), "mamori-audit-"+month); err != nil {
		return err
	}
	return m.markSent(ctx, month)
}

func (m *Monthly) markSent(ctx context.Context, month string) error {
	if _, err := m.KV.PutJSON(ctx, monthlyKey, map[string]string{"month": month}, -1); err != nil {
		return fmt.Errorf("report: storing %s: %w", monthlyKey, err)
	}
	return nil
}

// Run calls Step every interval until ctx ends.
func (m *Monthly) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := m.Step(ctx, m.S.cfg.Now()); err != nil && ctx.Err() == nil {
			m.S.cfg.Log.Warn().Err(err).Msg("report: monthly report not sent; will retry")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
