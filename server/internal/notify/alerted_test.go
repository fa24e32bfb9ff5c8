package notify

import (
	"context"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// A default rule has no recipients: its alerts are delivered nowhere, yet
// the 通知 page lists them, 「通知の記録なし」 as the audit report says.
func TestAlertedListsAlertsNobodyWasNotified(t *testing.T) {
	r := newRig(t, map[string]AgentInfo{"k": {Hostname: "PC-KEIRI-01", Department: "経理部"}})
	ctx := context.Background()
	now := time.Now().UTC().Add(-time.Hour)
	e := event.Event{Agent: "k", Seq: 1, Time: now, Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning,
		Object: `D:\経理`, RegisterID: "PI-001", Attrs: event.Attrs{"suppressed": 300}}
	if err := e.Seal(""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Append(ctx, "k", []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	rows, err := r.n.Alerted(ctx, now.Add(-24*time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("rows %+v", rows)
	}
	if a := rows[0]; !a.Alerted || a.Kind != KindBulkCopy || a.Host != "PC-KEIRI-01" || a.Department != "経理部" || a.Outcome != "" ||
		a.OutcomeJA() != "通知の記録なし" || a.Type != "fileaccess.bulk" {
		t.Errorf("row %+v", a)
	}
}
