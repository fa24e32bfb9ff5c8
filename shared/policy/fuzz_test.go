package policy

import (
	"encoding/json"
	"testing"
)

// FuzzParse reads arbitrary YAML as a policy: an error or a policy that
// survives its own JSON round trip, never a panic or an unbounded expansion.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"apiVersion: mamori/v1\nkind: Policy\nname: x\ncontrols:\n  screenlock: {mode: enforce, max_idle: 10m}\n",
		"a: &a [*a, *a]\n", "a: &a [x,x]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: [*c,*c]\n", "", "---\n---\n", "name: [\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		j, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("accepted policy does not encode: %v", err)
		}
		if _, err := ParseJSON(j); err != nil {
			t.Fatalf("accepted policy does not read back: %v", err)
		}
	})
}
