package report

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/notify"
	"github.com/mamori/mamori/server/internal/notify/mailtest"
	"github.com/mamori/mamori/shared/event"
)

// The monthly report reaches a real SMTP server once per month, with the
// HTML and CSV attached.
func TestMonthlyReportMailedOnce(t *testing.T) {
	ctx := context.Background()
	d := newDeps(t)
	store, st, regs, incs := d.store, d.st, d.regs, d.incs
	_, vkey, _ := note.GenerateKey(rand.Reader, "mamori/test")
	v, _ := note.NewVerifier(vkey)
	svc, err := New(Config{Store: store, Registers: regs, Incidents: incs, Verifier: v,
		Agents: func(context.Context) ([]Agent, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ms := mailtest.Start(t, true, "", "")
	n, err := notify.New(notify.Config{Events: store, KV: st, IsNotFound: notFound,
		Agents: func(context.Context) (map[string]notify.AgentInfo, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	set := notify.Settings{SMTP: &notify.SMTP{Host: "127.0.0.1", Port: ms.Addr.Port, Security: notify.SecurityTLS, From: "mamori@example.jp",
		CAPEM: ms.CAPEM}, MonthlyReport: &notify.MonthlyReport{Recipients: []string{"kanri@example.jp"}}}
	if _, err := n.PutSettings(ctx, set, -1); err != nil {
		t.Fatal(err)
	}
	m := &Monthly{S: svc, KV: st, IsNotFound: notFound,
		Recipients: func(ctx context.Context) ([]string, string, bool, error) {
			s, _, err := n.Settings(ctx)
			if err != nil || s.MonthlyReport == nil {
				return nil, "", false, err
			}
			return s.MonthlyReport.Recipients, s.MonthlyReport.Department, true, nil
		},
		Mail: func(ctx context.Context, rcpts []string, subject, text string, html, csv []byte, name string) error {
			return n.Mail(ctx, "monthly_report", rcpts, subject, text,
				notify.Attachment{Name: name + ".html", ContentType: "text/html", Data: html},
				notify.Attachment{Name: name + ".csv", ContentType: "text/csv", Data: csv})
		}}
	dec3 := time.Date(2026, 12, 3, 9, 0, 0, 0, JST)
	// A log that began after November: nothing of November to report. The
	// first report is the first month the server recorded.
	if err := m.Step(ctx, dec3); err != nil || len(ms.Got) != 0 {
		t.Fatalf("a month before the log began: %v, %d mails", err, len(ms.Got))
	}
	if _, err := st.PutJSON(ctx, monthlyKey, map[string]string{"month": "2026-10"}, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := store.AppendServer(ctx, event.Event{Control: "server", Type: "policy.changed", Severity: event.Info, Object: "policy/default",
		Time: time.Date(2026, 11, 15, 10, 0, 0, 0, JST).UTC()}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := m.Step(ctx, dec3); err != nil {
			t.Fatal(err)
		}
	}
	if len(ms.Got) != 1 {
		t.Fatalf("%d mails for November, want 1", len(ms.Got))
	}
	got := <-ms.Got
	raw := string(got.Data)
	if !strings.Contains(raw, `filename="mamori-audit-2026-11.html"`) || !strings.Contains(raw, `filename="mamori-audit-2026-11.csv"`) {
		t.Errorf("attachments missing:\n%.2000s", raw)
	}
	if !strings.Contains(raw, "=?ISO-2022-JP?B?") || got.To[0] != "kanri@example.jp" {
		t.Errorf("subject not ISO-2022-JP or wrong recipient %v", got.To)
	}
	if _, err := store.AppendServer(ctx, event.Event{Control: "server", Type: "policy.changed", Severity: event.Info, Object: "policy/default",
		Time: time.Date(2026, 12, 15, 10, 0, 0, 0, JST).UTC()}); err != nil {
		t.Fatal(err)
	}
	// Late on the last day of December: still nothing new; on Jan 1: December.
	if err := m.Step(ctx, time.Date(2026, 12, 31, 23, 59, 0, 0, JST)); err != nil || len(ms.Got) != 0 {
		t.Fatalf("Dec 31: %v, %d mails", err, len(ms.Got))
	}
	if err := m.Step(ctx, time.Date(2027, 1, 1, 0, 5, 0, 0, JST)); err != nil || len(ms.Got) != 1 {
		t.Fatalf("Jan 1: %v, %d mails", err, len(ms.Got))
	}
	if !strings.Contains(string((<-ms.Got).Data), "mamori-audit-2026-12.html") {
		t.Error("January mail is not December's report")
	}
}
