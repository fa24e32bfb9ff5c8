// Package alertkind is the classification the notifier and the audit
// report share: which kinds of alert an event of the log is. It is small
// on purpose (no mail, no settings), so the report can use the very same
// code without the notifier's dependencies.
package alertkind

import (
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// Kinds of alert (and of notification rule).
const (
	Violation       = "violation"          // a control turned fail (compliance alert)
	Silent          = "silent"             // an agent went silent (compliance alert)
	BulkCopy        = "bulk_copy"          // many files copied out of a registered folder
	Media           = "unregistered_media" // unregistered or unapproved media blocked or written to
	OutOfHours      = "out_of_hours"       // a registered folder touched outside working hours
	Backup          = "backup_overdue"     // backup older than the policy allows
	Integrity       = "log_integrity"      // gaps in an agent's chain, accepted event loss, a server stopped unrecorded, suspected tampering, event times run back
	LoginFailures   = "login_failures"     // repeated failed logins to the web UI
	IncidentOverdue = "incident_overdue"   // a 速報/確報 deadline passed
)

// Source is one (control, type) stream of the log.
type Source struct{ Control, Type string }

// Standalone are the streams whose events Of makes alerts by themselves,
// without the notification settings (working hours, login thresholds).
var Standalone = []Source{
	{"compliance", "compliance.alert"},
	{"media", "media.blocked"},
	{"media", "media.file_written"},
	{"fileaccess", "fileaccess.bulk"},
	{"backup", "backup.overdue"},
	{eventlog.GapControl, eventlog.GapType},
	{"server", "server.event_loss_accepted"},
	{"server", "server.scrub_failed"},
	{"server", "server.unclean_stop"},
	{"server", "server.checkpoint_copy_missing"},
	{"server", TypeTamperSuspected},
	{eventlog.GapControl, eventlog.ClockRewoundType},
	{"incident", "incident.overdue"},
}

// TypeTamperSuspected is the server's record of a batch signed with an
// agent's key that held the server's own events, or of a chain already
// stored with other content (api.TypeTamperSuspected; the api package is
// too heavy to import here).
const TypeTamperSuspected = "agent.tamper_suspected"

// Of says which kinds of alert an event is by itself: a compliance
// alert's kind (with backup_overdue for the backup control), blocked media
// and violating writes to media, bulk summaries, overdue backups, the
// server's integrity records, failed logins (each one; the notifier's rule
// judges the threshold) and overdue incident reports. Out-of-hours access
// depends on the working hours and is the notifier's to judge.
func Of(typ string, sev event.Severity, attrs map[string]any) []string {
	str := func(k string) string { s, _ := attrs[k].(string); return s }
	switch typ {
	case "compliance.alert":
		if str("kind") == Silent {
			return []string{Silent}
		}
		if str("control") == "backup" {
			return []string{Violation, Backup}
		}
		return []string{Violation}
	case "media.blocked":
		return []string{Media}
	case "media.file_written":
		if sev == event.Violation {
			return []string{Media}
		}
	case "fileaccess.bulk":
		return []string{BulkCopy}
	case "backup.overdue":
		return []string{Backup}
	case eventlog.GapType, "server.event_loss_accepted", "server.scrub_failed", "server.unclean_stop", "server.checkpoint_copy_missing",
		TypeTamperSuspected, eventlog.ClockRewoundType:
		return []string{Integrity}
	case "ui.login_failed":
		return []string{LoginFailures}
	case "incident.overdue":
		return []string{IncidentOverdue}
	}
	return nil
}

// OutcomeJA says in Japanese how an alert's notification went: "sent",
// "failed", or "" for none recorded (a rule without recipients), in the
// words the 通知 page and the audit report share.
func OutcomeJA(outcome string) string {
	switch outcome {
	case "sent":
		return "通知済み"
	case "failed":
		return "通知失敗"
	}
	return "通知の記録なし"
}
