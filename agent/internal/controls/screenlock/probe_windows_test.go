package screenlock

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/windows/registry"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// scratch makes HKCU\Software\MamoriTest\<name> standing in for HKLM and
// HKU, and removes it afterwards.
func scratch(t *testing.T) *winProbe {
	t.Helper()
	base := fmt.Sprintf(`Software\MamoriTest\%s-%d`, t.Name(), time.Now().UnixNano())
	t.Cleanup(func() { deleteTree(registry.CURRENT_USER, base) })
	return &winProbe{machineRoot: registry.CURRENT_USER, machinePath: base + `\HKLM\` + machinePath,
		usersRoot: registry.CURRENT_USER, usersPath: base + `\HKU`}
}

func deleteTree(root registry.Key, path string) {
	if k, err := registry.OpenKey(root, path, registry.ENUMERATE_SUB_KEYS); err == nil {
		names, _ := k.ReadSubKeyNames(-1)
		k.Close()
		for _, n := range names {
			deleteTree(root, path+`\`+n)
		}
	}
	registry.DeleteKey(root, path)
}

func mustKey(t *testing.T, root registry.Key, path string) registry.Key {
	t.Helper()
	k, _, err := registry.CreateKey(root, path, registry.ALL_ACCESS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestRegistryReadEnforceDrift(t *testing.T) {
	p := scratch(t)
	const sid = "S-1-5-21-1111111111-2222222222-3333333333-1001"
	// The user's own values: a DWORD where Windows usually writes REG_SZ.
	own := mustKey(t, p.usersRoot, p.userKey(sid, userOwnPath))
	own.SetDWordValue(valActive, 1)
	own.SetStringValue(valSecure, "0")
	own.SetStringValue(valTimeout, "1800")
	// Hives the control must skip.
	mustKey(t, p.usersRoot, p.userKey(sid+"_Classes", userOwnPath))
	mustKey(t, p.usersRoot, p.userKey("S-1-5-18", userOwnPath))

	ctx := context.Background()
	ts, err := p.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Scope != ScopeMachine || ts[0].Timeout != nil || ts[1].ID != sid ||
		*ts[1].Timeout != 30*time.Minute || !*ts[1].Enabled || *ts[1].Secure {
		t.Fatalf("read %+v", ts)
	}

	c, rec, _, _ := newTest(t, p, policy.Enforce)
	c.check(ctx)
	if n := len(rec.OfType(TypeEnforced)); n != 2 {
		t.Fatalf("enforced %d: %+v", n, rec.Events())
	}
	if st := c.Status(); st.State != controls.Pass {
		t.Fatalf("status %+v", st)
	}
	mk, err := registry.OpenKey(p.machineRoot, p.machinePath, registry.QUERY_VALUE)
	if err != nil {
		t.Fatal(err)
	}
	n, typ, err := mk.GetIntegerValue(valMachine)
	mk.Close()
	if err != nil || n != 600 || typ != registry.DWORD {
		t.Fatalf("InactivityTimeoutSecs %d type %d %v", n, typ, err)
	}
	pol := mustKey(t, p.usersRoot, p.userKey(sid, userPolicyPath))
	for name, want := range map[string]string{valActive: "1", valSecure: "1", valTimeout: "600"} {
		if s, _, err := pol.GetStringValue(name); err != nil || s != want {
			t.Fatalf("%s = %q %v", name, s, err)
		}
	}

	// Someone loosens the policy value; the next check sees drift and re-enforces.
	pol.SetStringValue(valTimeout, "3600")
	c.check(ctx)
	drift := rec.OfType(TypeDrift)
	if len(drift) != 1 || drift[0].Attrs["id"] != sid || drift[0].Attrs["found"].(event.Attrs)["policy."+valTimeout] != "3600" {
		t.Fatalf("drift %+v", drift)
	}
	if s, _, _ := pol.GetStringValue(valTimeout); s != "600" {
		t.Fatalf("not re-enforced: %q", s)
	}
	if len(rec.OfType(TypeEnforced)) != 3 || c.Status().State != controls.Pass {
		t.Fatalf("after re-enforce: %+v", c.Status())
	}
}

// TestRealHivesRead reads the real HKLM and HKU (read only).
func TestRealHivesRead(t *testing.T) {
	ts, err := newProbe(controls.Env{}).read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) == 0 || ts[0].Scope != ScopeMachine {
		t.Fatalf("%+v", ts)
	}
	for _, tg := range ts[1:] {
		if !isUserSID(tg.ID) || tg.Enabled == nil {
			t.Fatalf("user target %+v", tg)
		}
	}
	t.Logf("%d targets; users: %d", len(ts), len(ts)-1)
}
