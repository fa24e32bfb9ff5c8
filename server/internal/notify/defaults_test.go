package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

func getSettings(t *testing.T, n *Notifier) Settings {
	t.Helper()
	w := httptest.NewRecorder()
	n.ServeGetSettings(w, httptest.NewRequest(http.MethodGet, PathSettings, nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET: %d %s", w.Code, w.Body)
	}
	var s Settings
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func ruleOf(s Settings, kind string) (Rule, bool) {
	for _, r := range s.Rules {
		if r.Kind == kind {
			return r, true
		}
	}
	return Rule{}, false
}

// With nothing stored, the rules the assigned packs imply are in force and
// GET shows them marked as defaults, without recipients; an admin who
// adds a webhook to one and PUTs them back gets its alerts (the evidence
// scrubber's finding included).
func TestDefaultRulesPerPackInForceUntilAdminSetsThem(t *testing.T) {
	r := newRig(t, nil)
	packs := []string{PackBaseline}
	r.n.cfg.Packs = func(context.Context) ([]string, error) { return packs, nil }

	base := getSettings(t, r.n)
	if !base.AreDefaults {
		t.Fatal("GET without stored settings does not say defaults")
	}
	for _, k := range []string{KindViolation, KindSilent, KindMedia, KindBulkCopy, KindBackup, KindIntegrity, KindLoginFailures, KindIncidentOverdue} {
		ru, ok := ruleOf(base, k)
		if !ok || !ru.Default || len(ru.Recipients) > 0 || len(ru.Webhooks) > 0 {
			t.Errorf("baseline default rule %s: %+v (present %v)", k, ru, ok)
		}
	}
	if _, ok := ruleOf(base, KindOutOfHours); ok {
		t.Error("baseline implies an out-of-hours rule")
	}

	// An agent assigned strict: its rules join at the next settings read.
	packs = []string{PackBaseline, PackStrict}
	r.n.mu.Lock()
	r.n.loadedAt, r.n.rev = time.Time{}, -1
	r.n.mu.Unlock()
	strict := getSettings(t, r.n)
	if ru, ok := ruleOf(strict, KindOutOfHours); !ok || !ru.Default {
		t.Errorf("strict implies no out-of-hours rule: %+v", strict.Rules)
	}
	if ru, _ := ruleOf(strict, KindLoginFailures); ru.Threshold != 3 {
		t.Errorf("strict login threshold %d, want 3", ru.Threshold)
	}

	// In force: a scrubber finding is grouped under the default rule.
	ctx := context.Background()
	if err := r.n.Step(ctx); err != nil {
		t.Fatal(err)
	}
	scrub := func() {
		if _, err := r.store.AppendServer(ctx, event.Event{Control: "server", Type: "server.scrub_failed", Severity: event.Violation,
			Object: "log", Attrs: event.Attrs{"problem": "leaf 7 does not match", "size": 9}}); err != nil {
			t.Fatal(err)
		}
	}
	scrub()
	if err := r.n.Step(ctx); err != nil {
		t.Fatal(err)
	}
	r.n.mu.Lock()
	g := r.n.groups["rule/default-log-integrity"]
	r.n.mu.Unlock()
	if g == nil || g.count != 1 || g.items[0].Type != "server.scrub_failed" {
		t.Fatalf("scrub finding not under the default rule: %+v", g)
	}

	// The admin adds a webhook to that rule and saves what GET showed.
	h := newHook(t, 0)
	base.Webhooks = []Webhook{{Name: "g", URL: h.srv.URL, Format: FormatGeneric}}
	for i := range base.Rules {
		if base.Rules[i].Kind == KindIntegrity {
			base.Rules[i].Webhooks, base.Rules[i].Delay = []string{"g"}, Duration(200*time.Millisecond)
		}
	}
	b, _ := json.Marshal(base)
	w := httptest.NewRecorder()
	r.n.ServePutSettings(w, httptest.NewRequest(http.MethodPut, PathSettings, bytes.NewReader(b)))
	if w.Code != http.StatusOK {
		t.Fatalf("PUT of the defaults with a webhook: %d %s", w.Code, w.Body)
	}
	saved := getSettings(t, r.n)
	if saved.AreDefaults || !slices.ContainsFunc(saved.Rules, func(ru Rule) bool { return ru.Default && len(ru.Webhooks) == 1 }) {
		t.Fatalf("after PUT: %+v", saved)
	}
	r.n.mu.Lock()
	r.n.groups = map[string]*group{} // the group of the old rule set
	r.n.mu.Unlock()
	r.run(t)
	scrub()
	waitFor(t, 5*time.Second, "the scrub alert", func() bool { return len(h.got()) == 1 })
	var m Message
	if err := json.Unmarshal(h.got()[0], &m); err != nil {
		t.Fatal(err)
	}
	if m.Rule != "default-log-integrity" || m.Items[0].Type != "server.scrub_failed" {
		t.Fatalf("message: %+v", m)
	}
}

// A rule's delay reads as people write it on the pages.
func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{5 * time.Minute: "5m", time.Hour: "1h", 90 * time.Minute: "1h30m",
		90 * time.Second: "1m30s", 45 * time.Second: "45s", 0: "0s"} {
		if got := Duration(d).String(); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
