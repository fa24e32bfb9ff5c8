package all

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/controlstest"
	"github.com/mamori/mamori/shared/policy"
)

// Every control section of the policy has exactly one registered control
// of that name (a control missing here silently never runs), and every
// control starts with a verdict instead of panicking on an empty status.
func TestEveryPolicyControlIsRegistered(t *testing.T) {
	want := map[string]bool{}
	ct := reflect.TypeOf(policy.Controls{})
	for i := 0; i < ct.NumField(); i++ {
		name, _, _ := strings.Cut(ct.Field(i).Tag.Get("json"), ",")
		if name != "agent" { // the agent's own settings, not a control
			want[name] = true
		}
	}
	rec := &controlstest.Recorder{}
	env := controls.Env{Emit: rec, Clock: controlstest.NewFakeClock(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)), Log: zerolog.Nop(), StateDir: t.TempDir()}
	seen := map[string]bool{}
	for _, f := range Factories {
		c := f(env)
		n := c.Name()
		if seen[n] {
			t.Errorf("control %q registered twice", n)
		}
		seen[n] = true
		if !want[n] {
			t.Errorf("control %q has no section in policy.Controls", n)
		}
		if st := c.Status(); st.State == "" {
			t.Errorf("control %q: empty initial state %+v", n, st)
		}
	}
	for n := range want {
		if !seen[n] {
			t.Errorf("policy section %q has no registered control", n)
		}
	}
}
