// Package policies holds Mamori's built-in policy packs (YAML, embedded):
// pmark-baseline, the Privacy Mark baseline for office PCs that every agent
// gets when no policy is assigned, and strict, for rooms that handle
// sensitive (要配慮) personal data. Each control section carries the clause
// references of docs/controls.md that it proves.
package policies

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"

	"github.com/mamori/mamori/shared/policy"
)

//go:embed *.yaml
var packs embed.FS

// Baseline is the pack served when an agent has no assignment and no
// policy named "default" exists.
const Baseline = "pmark-baseline"

// Names lists the built-in packs, sorted.
func Names() []string {
	ents, _ := fs.ReadDir(packs, ".")
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// YAML returns the document of a built-in pack.
func YAML(name string) ([]byte, error) {
	if !policy.ValidName(name) {
		return nil, fmt.Errorf("policies: %q is not a policy name", name)
	}
	b, err := packs.ReadFile(name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("policies: no built-in pack %q: %w", name, err)
	}
	return b, nil
}

// Get parses a built-in pack with shared/policy.
func Get(name string) (*policy.Policy, error) {
	b, err := YAML(name)
	if err != nil {
		return nil, err
	}
	p, err := policy.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("policies: %s: %w", name, err)
	}
	return p, nil
}

// Clauses is the clause catalog of docs/controls.md as the baseline pack states
// it: for each control (and "agent"), the PPC / JIS Q 15001 references its
// records prove. Reports and alerts carry them so every status can be
// traced to the clause an auditor asks about. Callers must not modify it.
var Clauses = sync.OnceValue(func() map[string][]string {
	p, err := Get(Baseline)
	if err != nil {
		panic(err) // the embedded pack is checked by the package's tests
	}
	c := p.Controls
	return map[string][]string{
		"screenlock": c.Screenlock.Clauses, "media": c.Media.Clauses, "fileaccess": c.FileAccess.Clauses,
		"backup": c.Backup.Clauses, "posture": c.Posture.Clauses, "agent": c.Agent.Clauses,
	}
})
