package policies

import (
	"slices"
	"strings"
	"testing"

	"github.com/mamori/mamori/shared/policy"
)

func TestPacksParseAndCarryClauses(t *testing.T) {
	names := Names()
	for _, want := range []string{Baseline, "strict"} {
		if !slices.Contains(names, want) {
			t.Fatalf("pack %s missing from %v", want, names)
		}
	}
	for _, n := range names {
		p, err := Get(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if p.Name != n {
			t.Errorf("%s: document names itself %q", n, p.Name)
		}
		c := p.Controls
		for sec, cl := range map[string]policy.Clauses{
			"screenlock": c.Screenlock.Clauses, "media": c.Media.Clauses, "fileaccess": c.FileAccess.Clauses,
			"backup": c.Backup.Clauses, "posture": c.Posture.Clauses, "agent": c.Agent.Clauses,
		} {
			if len(cl) == 0 {
				t.Errorf("%s: controls.%s has no clause references", n, sec)
			}
		}
		if !strings.Contains(strings.Join(c.FileAccess.Clauses, " "), "§10-3(2)") {
			t.Errorf("%s: fileaccess clauses %v lack §10-3(2)", n, c.FileAccess.Clauses)
		}
	}
	if s, _ := Get("strict"); s.Controls.Media.Default != policy.MediaBlock || s.Controls.Media.Mode != policy.Enforce {
		t.Errorf("strict media = %+v, want enforce/block", s.Controls.Media)
	}
}

func TestBadPackNameAndBrokenDocument(t *testing.T) {
	if _, err := YAML("../etc/passwd"); err == nil {
		t.Fatal("path-like name accepted")
	}
	if _, err := Get("no-such-pack"); err == nil {
		t.Fatal("missing pack accepted")
	}
	// The parser the packs go through reports line and field.
	b, _ := YAML(Baseline)
	broken := strings.Replace(string(b), "max_idle: 10m", "max_idle: 10s", 1)
	_, err := policy.Parse([]byte(broken))
	if err == nil || !strings.Contains(err.Error(), "controls.screenlock.max_idle") || !strings.Contains(err.Error(), "line ") {
		t.Fatalf("error %v does not name line and field", err)
	}
}

// Every control of the catalog has its clause references.
func TestClauses(t *testing.T) {
	c := Clauses()
	for _, n := range []string{"screenlock", "media", "fileaccess", "backup", "posture", "agent"} {
		if len(c[n]) == 0 {
			t.Errorf("%s: no clause references", n)
		}
	}
	if got := c["fileaccess"]; !slices.Contains(got, "PPC 通則編 §10-3(2)") {
		t.Errorf("fileaccess clauses %v", got)
	}
}
