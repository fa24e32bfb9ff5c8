package notify

import (
	"fmt"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// Every rule kind the issue lists is raised by the events behind it, and
// only by those: each tailed event type is classified as the kinds below.
func TestEveryKindFromItsEvents(t *testing.T) {
	night := time.Date(2026, 11, 26, 23, 0, 0, 0, JST) // a Thursday, after hours
	noon := time.Date(2026, 11, 26, 12, 0, 0, 0, JST)
	alert := func(kind, control string) eventlog.Stored {
		return eventlog.Stored{Event: event.Event{Agent: event.ServerStream, Control: "compliance", Type: "compliance.alert",
			Severity: event.Violation, Time: noon, Attrs: event.Attrs{"kind": kind, "agent": "a1", "hostname": "PC-1",
				"department": "総務部", "control": control, "reason_ja": "理由"}}}
	}
	ev := func(agent, control, typ string, sev event.Severity, at time.Time, reg string) eventlog.Stored {
		return eventlog.Stored{Event: event.Event{Agent: agent, Control: control, Type: typ, Severity: sev, Time: at, RegisterID: reg}}
	}
	set := Settings{Hours: Hours{Start: "09:00", End: "18:00", Days: []int{1, 2, 3, 4, 5}}}
	agents := map[string]AgentInfo{"a1": {Hostname: "PC-1", Department: "総務部"}}
	for _, tc := range []struct {
		name string
		st   eventlog.Stored
		want []string
	}{
		{"control violation", alert("violation", "screenlock"), []string{KindViolation}},
		{"silent agent", alert("silent", ""), []string{KindSilent}},
		{"backup failing is a violation and backup overdue", alert("violation", "backup"), []string{KindViolation, KindBackup}},
		{"backup.overdue event", ev("a1", "backup", "backup.overdue", event.Warning, noon, ""), []string{KindBackup}},
		{"bulk copy out of a registered folder", ev("a1", "fileaccess", "fileaccess.bulk", event.Warning, noon, "PI-1"), []string{KindBulkCopy}},
		{"blocked medium", ev("a1", "media", "media.blocked", event.Violation, noon, ""), []string{KindMedia}},
		{"write to an unapproved medium", ev("a1", "media", "media.file_written", event.Violation, noon, ""), []string{KindMedia}},
		{"write to an approved medium", ev("a1", "media", "media.file_written", event.Info, noon, ""), nil},
		{"registered folder at night", ev("a1", "fileaccess", "file.read", event.Info, night, "PI-1"), []string{KindOutOfHours}},
		{"registered folder at noon", ev("a1", "fileaccess", "file.read", event.Info, noon, "PI-1"), nil},
		{"unregistered folder at night", ev("a1", "fileaccess", "file.modified", event.Info, night, ""), nil},
		{"chain gap", ev(event.ServerStream, eventlog.GapControl, eventlog.GapType, event.Violation, noon, ""), []string{KindIntegrity}},
		{"accepted event loss", ev(event.ServerStream, "server", "server.event_loss_accepted", event.Violation, noon, ""), []string{KindIntegrity}},
		{"scrubber finding", ev(event.ServerStream, "server", "server.scrub_failed", event.Violation, noon, ""), []string{KindIntegrity}},
		{"failed login", ev(event.ServerStream, "server", "ui.login_failed", event.Warning, noon, ""), []string{KindLoginFailures}},
		{"overdue report", ev(event.ServerStream, "incident", "incident.overdue", event.Violation, noon, ""), []string{KindIncidentOverdue}},
	} {
		var got []string
		for _, c := range classify(set, agents, &tc.st) {
			got = append(got, c.kind)
			if tc.st.Agent == "a1" && (c.item.Hostname != "PC-1" || c.item.Department != "総務部") {
				t.Errorf("%s: item %+v lacks the PC's name and department", tc.name, c.item)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: kinds %v, want %v", tc.name, got, tc.want)
		}
	}
	// Every kind a rule may name is covered above.
	covered := map[string]bool{}
	for _, k := range []string{KindViolation, KindSilent, KindBackup, KindBulkCopy, KindMedia, KindOutOfHours, KindIntegrity, KindLoginFailures, KindIncidentOverdue} {
		covered[k] = true
	}
	for _, k := range Kinds {
		if !covered[k] {
			t.Errorf("kind %s has no case", k)
		}
	}
}
