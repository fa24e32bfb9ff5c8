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
		{"forged server event or chain conflict", ev(event.ServerStream, "server", "agent.tamper_suspected", event.Violation, noon, ""), []string{KindIntegrity}},
		{"event time run back", ev(event.ServerStream, eventlog.GapControl, eventlog.ClockRewoundType, event.Warning, noon, ""), []string{KindIntegrity}},
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

// A bulk summary of changes found when the agent started again says so and
// when they could have happened: its own time is only when they were found.
// One that does not count by type (an older agent's) does not guess.
func TestBulkDetailSaysWhileAgentStopped(t *testing.T) {
	st := &eventlog.Stored{Event: event.Event{Type: "fileaccess.bulk", Process: `C:\Windows\explorer.exe`,
		Attrs: event.Attrs{"total": 6}}}
	if d := detailOf(st); d != "ファイル操作 計 6 件 (種類の内訳なし。最も多いプログラム: explorer.exe)" {
		t.Errorf("live bulk: %q", d)
	}
	st = &eventlog.Stored{Event: event.Event{Type: "fileaccess.bulk", Attrs: event.Attrs{"total": 6,
		"attribution_source": "while_agent_stopped", "window_from": "2026-12-04T10:00:00Z", "window_to": "2026-12-06T23:30:00.5Z"}}}
	if d, want := detailOf(st), "ファイル操作 計 6 件 (種類の内訳なし。エージェント停止中: 2026-12-04 19:00:00 JST から 2026-12-07 08:30:00 JST まで)"; d != want {
		t.Errorf("catch-up bulk: %q, want %q", d, want)
	}
	// Seen while the agent's spool refused events (a full disk), found
	// once it could record again.
	st.Attrs["attribution_source"] = "not_recorded"
	if d, want := detailOf(st), "ファイル操作 計 6 件 (種類の内訳なし。記録できなかった間: 2026-12-04 19:00:00 JST から 2026-12-07 08:30:00 JST まで)"; d != want {
		t.Errorf("not recorded bulk: %q, want %q", d, want)
	}
	// Counted by type, and by program past the top five the agent names.
	live := &eventlog.Stored{Event: event.Event{Type: "fileaccess.bulk", Attrs: event.Attrs{"total": 115, "individually": 100,
		"counts": map[string]any{"created": 10, "deleted": 5}, "from": "2026-12-04T10:00:00Z", "to": "2026-12-04T10:00:30Z",
		"processes": map[string]any{`C:\Windows\explorer.exe`: 5, "robocopy.exe": 4, "a.exe": 2, "b.exe": 1, "c.exe": 1, "(others)": 2}}}}
	if d, want := detailOf(live), "ファイル操作 計 115 件 (最初の 100 件は個別に記録、残り 15 件の内訳: ファイル作成 10 件、ファイル削除 5 件。"+
		"プログラム別 (まとめた分): explorer.exe 5 件、robocopy.exe 4 件、a.exe 2 件、b.exe 1 件、c.exe 1 件、ほか 2 個のプログラムなど 2 件。"+
		"2026-12-04 19:00:00 JST から 2026-12-04 19:00:30 JST まで)"; d != want {
		t.Errorf("typed bulk:\n%q, want\n%q", d, want)
	}
	// Its time (here 0001-01-01, a Monday at midnight) is when it was
	// found: the window is what is judged.
	st.Attrs["window_from"], st.Attrs["window_to"] = "2026-12-03T00:00:00Z", "2026-12-04T03:00:00Z"
	if changedOutOfHours(Hours{Start: "09:00", End: "18:00", Days: []int{1, 2, 3, 4, 5}}, st) {
		t.Error("a not-recorded window over working hours judged out of hours by its finding time")
	}
}

// A change found when the agent started again happened at an unknown time
// within the agent's outage, not when it was found: it is out of hours only
// if the whole outage was (a weekend), else the Monday-morning start of
// every PC would report the week's changes as made at 07:55.
func TestFoundAtStartOutOfHoursOnlyIfTheWholeOutageWas(t *testing.T) {
	set := Settings{Hours: Hours{Start: "09:00", End: "18:00", Days: []int{1, 2, 3, 4, 5}}}
	monday := time.Date(2026, 11, 30, 7, 55, 0, 0, JST)
	found := func(from time.Time) *eventlog.Stored {
		return &eventlog.Stored{Event: event.Event{Agent: "a1", Control: "fileaccess", Type: "file.modified", Time: monday,
			RegisterID: "PI-1", Attrs: event.Attrs{"attribution_source": "while_agent_stopped",
				"window_from": from.UTC().Format(time.RFC3339Nano), "window_to": monday.UTC().Format(time.RFC3339Nano)}}}
	}
	for _, tc := range []struct {
		name string
		st   *eventlog.Stored
		want bool
	}{
		{"seen live at 07:55", &eventlog.Stored{Event: event.Event{Agent: "a1", Control: "fileaccess", Type: "file.modified",
			Time: monday, RegisterID: "PI-1"}}, true},
		{"stopped from Friday 20:00", found(time.Date(2026, 11, 27, 20, 0, 0, 0, JST)), true},
		{"stopped from Friday 17:00", found(time.Date(2026, 11, 27, 17, 0, 0, 0, JST)), false},
		{"stopped for 40 days", found(monday.AddDate(0, 0, -40)), false},
		{"stopped from Friday 17:59", found(time.Date(2026, 11, 27, 17, 59, 0, 0, JST)), false},
		{"stopped from Friday 18:00", found(time.Date(2026, 11, 27, 18, 0, 0, 0, JST)), true},
		{"stopped from Sunday 08:00", found(time.Date(2026, 11, 29, 8, 0, 0, 0, JST)), true},
		{"stopped from Thursday 23:00", found(time.Date(2026, 11, 26, 23, 0, 0, 0, JST)), false},
	} {
		got := len(classify(set, nil, tc.st)) == 1
		if got != tc.want {
			t.Errorf("%s: out of hours %v, want %v", tc.name, got, tc.want)
		}
	}
}
