package web

import (
	"io/fs"
	"regexp"
	"testing"

	"github.com/mamori/mamori/dashboards"
	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/labels"
)

// TestMessagesComplete: both languages have the same keys, and every key a
// template or a handler looks up exists (a missing one renders as nothing).
func TestMessagesComplete(t *testing.T) {
	ja, en := messages["ja"], messages["en"]
	for k := range ja {
		if en[k] == "" {
			t.Errorf("%q has no English text", k)
		}
	}
	for k := range en {
		if ja[k] == "" {
			t.Errorf("%q has no Japanese text", k)
		}
	}
	used := map[string]bool{"err_internal": true, "err_etcd_unavailable": true, "err_forbidden": true, "err_csrf": true, "err_not_found": true,
		"err_invalid": true, "err_conflict": true, "err_login": true, "err_throttled": true, "saved": true, "unchanged": true,
		"approved_msg": true, "denied_msg": true, "assigned_msg": true, "user_created": true, "user_changed": true}
	keyRE := regexp.MustCompile(`\.L\.([a-z0-9_]+)`)
	files, _ := fs.Glob(dashboards.Templates, "templates/*.html")
	for _, f := range files {
		b, _ := fs.ReadFile(dashboards.Templates, f)
		for _, m := range keyRE.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
	}
	for _, k := range register.Kinds {
		used["reg_"+string(k)] = true
	}
	// Codes are labelled by the shared catalog, not by this table.
	for _, c := range compliance.Controls {
		checkLabel(t, labels.Control, c)
	}
	for _, s := range []compliance.Status{compliance.Pass, compliance.Fail, compliance.Unknown, compliance.Off} {
		checkLabel(t, labels.Verdict, string(s))
	}
	for _, r := range []string{state.RoleAdmin, state.RoleAuditor, state.RoleManager} {
		checkLabel(t, labels.Role, r)
	}
	for _, k := range register.Kinds {
		checkLabel(t, labels.Register, string(k))
	}
	for _, s := range []string{register.StatusActive, register.StatusLost, register.StatusDisposed, register.StatusRequested,
		register.StatusApproved, register.StatusDenied, register.StatusReturned, register.StatusRetired} {
		checkLabel(t, labels.Status, s)
	}
	used["alert_"+compliance.KindViolation], used["alert_"+compliance.KindSilent] = true, true
	for k := range used {
		if ja[k] == "" {
			t.Errorf("key %q is used but has no text", k)
		}
	}
}

func checkLabel(t *testing.T, s labels.Set, code string) {
	t.Helper()
	if !labels.Known(s, code) {
		t.Errorf("catalog %s has no label for %q", s, code)
	}
}

// A control no host runs shows a dash, not a 0% pass rate.
func TestRateFunc(t *testing.T) {
	rate := funcs["rate"].(func(compliance.Rate) string)
	for r, want := range map[compliance.Rate]string{
		{Off: 3}:                     "—",
		{}:                           "—",
		{Pass: 1, Fail: 1, Rate: .5}: "50.0%",
		{Fail: 2, Off: 1}:            "0.0%",
	} {
		if got := rate(r); got != want {
			t.Errorf("rate(%+v) = %q, want %q", r, got, want)
		}
	}
}
