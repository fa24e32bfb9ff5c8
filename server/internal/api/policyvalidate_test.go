package api

import (
	"strings"
	"testing"

	"github.com/mamori/mamori/shared/wire"
)

// A policy an agent would refuse as a whole (and keep its old one for every
// control) is refused at the PUT, with the line, and not stored.
func TestPutPolicyRefusesWhatAgentsRefuse(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	const head = "apiVersion: mamori/v1\nkind: Policy\nname: default\ncontrols:\n"
	for _, tc := range []struct{ name, body, want string }{
		{"backup overlap", `  backup: {mode: enforce, sources: ["/tmp/lin/顧客データ"], destination: /tmp/lin/顧客データ/bk}` + "\n",
			`line 5: controls.backup.sources[0]: "/tmp/lin/顧客データ" and destination "/tmp/lin/顧客データ/bk" overlap`},
		{"windows overlap", "  backup:\n    mode: enforce\n    sources: ['C:\\Users\\顧客']\n    destination: 'c:\\users\\顧客\\bk'\n",
			"line 7: controls.backup.sources[0]"},
		{"explicit zero", "  screenlock: {mode: enforce, max_idle: 0s}\n", "line 5: controls.screenlock.max_idle"},
		{"tiny max_age", "  backup:\n    mode: off\n    max_age: 1s\n", "line 7: controls.backup.max_age"},
	} {
		var out wire.Error
		if st := e.doJSON(c, "PUT", "/api/v1/policies/default", e.admin, []byte(head+tc.body), &out); st != 400 || !strings.Contains(out.Error, tc.want) {
			t.Errorf("%s: %d %q, want 400 %q", tc.name, st, out.Error, tc.want)
		}
	}
	var out wire.Error
	if st := e.doJSON(c, "GET", "/api/v1/policies/default", e.admin, nil, &out); st != 404 {
		t.Fatalf("a refused policy was stored: %d", st)
	}
	ok := head + `  backup: {mode: enforce, sources: ["/tmp/lin/顧客データ"], destination: /tmp/lin/顧客データ-bk}` + "\n"
	if st := e.doJSON(c, "PUT", "/api/v1/policies/default", e.admin, []byte(ok), &out); st != 200 {
		t.Fatalf("sibling destination: %d %q", st, out.Error)
	}
}
