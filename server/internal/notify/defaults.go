package notify

import (
	"context"
	"slices"
	"time"
)

// Built-in policy packs (policies/) whose default rules this package knows.
const (
	PackBaseline = "pmark-baseline"
	PackStrict   = "strict"
)

// DefaultRules returns the alert rules the given built-in packs imply, in
// force while no notification settings are stored. They have no
// recipients (Mamori cannot know them): an admin adds them, and until then
// the alerts are on the pages only. The baseline applies whatever packs are
// named, since every agent without an assignment gets it.
func DefaultRules(packs []string) []Rule {
	strict := slices.Contains(packs, PackStrict)
	d := func(m time.Duration) Duration { return Duration(m) }
	violation, logins := d(5*time.Minute), 5
	if strict {
		violation, logins = d(time.Minute), 3
	}
	rules := []Rule{
		{Name: "default-violation", Kind: KindViolation, Delay: violation},
		{Name: "default-silent", Kind: KindSilent, Delay: d(10 * time.Minute)},
		{Name: "default-unregistered-media", Kind: KindMedia, Delay: d(time.Minute)},
		{Name: "default-bulk-copy", Kind: KindBulkCopy, Delay: d(time.Minute)},
		{Name: "default-backup-overdue", Kind: KindBackup, Delay: d(10 * time.Minute)},
		{Name: "default-log-integrity", Kind: KindIntegrity, Delay: d(time.Minute)},
		{Name: "default-login-failures", Kind: KindLoginFailures, Delay: d(10 * time.Minute), Threshold: logins},
		{Name: "default-incident-overdue", Kind: KindIncidentOverdue, Delay: d(time.Minute)},
	}
	if strict {
		// Sensitive data: who opens the registered folders at night matters.
		rules = append(rules, Rule{Name: "default-out-of-hours", Kind: KindOutOfHours, Delay: d(10 * time.Minute)})
	}
	for i := range rules {
		rules[i].Default = true
	}
	return rules
}

// packs returns the built-in packs in use (Config.Packs). It is read with
// the settings (every few seconds, and only while none are stored), so an
// assignment of strict shows in the rules within seconds.
func (n *Notifier) packs(ctx context.Context) []string {
	if n.cfg.Packs == nil {
		return []string{PackBaseline}
	}
	p, err := n.cfg.Packs(ctx)
	if err != nil {
		// The baseline rules still hold; a stricter set waits for the next read.
		n.log.Warn().Err(err).Msg("notify: packs in use not read; using the baseline's rules")
		return []string{PackBaseline}
	}
	if !slices.Contains(p, PackBaseline) {
		p = append([]string{PackBaseline}, p...)
	}
	return p
}
