// Package policies holds Mamori's built-in policy packs (YAML, embedded):
// pmark-baseline, the Privacy Mark baseline for office PCs that every agent
// gets when no policy is assigned, and strict, for rooms that handle
// sensitive (要配慮) personal data. Each control section carries the clause
// references of ../../shared/CONTROLS.md that it proves.
package policies

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

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
