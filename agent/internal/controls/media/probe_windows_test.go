package media

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/controlstest"
	"github.com/mamori/mamori/shared/policy"
)

// underWine reports whether the test runs under Wine, where writing the
// real HKLM policy key touches only the Wine prefix.
func underWine() bool {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SOFTWARE\Wine`, registry.QUERY_VALUE)
	if err != nil {
		return false
	}
	k.Close()
	return true
}

func TestWindowsDriveEnumeration(t *testing.T) {
	mask, err := windows.GetLogicalDrives()
	if err != nil {
		t.Fatal(err)
	}
	letters := driveLetters(mask)
	if len(letters) == 0 {
		t.Fatal("no drives at all")
	}
	sys, _ := windows.GetWindowsDirectory()
	if !contains(letters, strings.ToUpper(sys[:2])) {
		t.Fatalf("system drive %s not among %v", sys[:2], letters)
	}
	// The probe's list must run on whatever drives exist, reporting only
	// removable or USB ones (Wine's C: and Z: are neither).
	devs, err := (&winProbe{}).list(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if d.Key == strings.ToUpper(sys[:2]) {
			t.Errorf("system drive reported as removable: %+v", d)
		}
	}
	t.Logf("drives %v, removable %+v", letters, devs)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestWindowsUSBStorEnumeration calls SetupAPI the way list does; Wine
// has no USB sticks, so the list is empty but the calls must work.
func TestWindowsUSBStorEnumeration(t *testing.T) {
	ids, err := usbstorDevices()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ids {
		if u.ID.Serial == "" {
			t.Errorf("instance %s without serial", u.InstanceID)
		}
	}
	t.Logf("%d USBSTOR devices", len(ids))
}

func TestWindowsClassPolicyRegistry(t *testing.T) {
	if !underWine() {
		t.Skip("writes HKLM removable-storage policy: run under Wine only")
	}
	p := &winProbe{root: registry.LOCAL_MACHINE, policyKey: removableDisksKey, markerKey: markerKey + `Test`}
	ctx := context.Background()
	t.Cleanup(func() {
		_ = p.classPolicy(ctx, false, false)
		_ = registry.DeleteKey(registry.LOCAL_MACHINE, p.markerKey)
	})
	check := func(wr, ww uint64) {
		t.Helper()
		r, w, err := p.readClassPolicy()
		if err != nil || r != wr || w != ww {
			t.Fatalf("Deny_Read=%d Deny_Write=%d (%v), want %d %d", r, w, err, wr, ww)
		}
	}
	if err := p.classPolicy(ctx, true, true); err != nil {
		t.Fatal(err)
	}
	check(1, 1)
	if err := p.classPolicy(ctx, false, true); err != nil {
		t.Fatal(err)
	}
	check(0, 1)
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, removableDisksKey, registry.QUERY_VALUE)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.GetIntegerValue("Deny_Read"); !errors.Is(err, registry.ErrNotExist) {
		t.Errorf("Deny_Read should be deleted, got %v", err)
	}
	k.Close()
	if err := p.classPolicy(ctx, false, false); err != nil {
		t.Fatal(err)
	}
	check(0, 0)

	// An admin's own Deny_Write (no marker) survives the agent clearing.
	k, _, err = registry.CreateKey(registry.LOCAL_MACHINE, removableDisksKey, registry.SET_VALUE)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.SetDWordValue("Deny_Write", 1); err != nil {
		t.Fatal(err)
	}
	k.Close()
	if err := p.classPolicy(ctx, false, false); err != nil {
		t.Fatal(err)
	}
	check(0, 1)
	k, _ = registry.OpenKey(registry.LOCAL_MACHINE, removableDisksKey, registry.SET_VALUE)
	_ = k.DeleteValue("Deny_Write")
	k.Close()
}

// TestWindowsControlSetsClassPolicy goes through the control as the agent
// builds it: an enforce/block policy with nothing allowed sets both deny
// values, a policy that allows registered media clears them again.
func TestWindowsControlSetsClassPolicy(t *testing.T) {
	if !underWine() {
		t.Skip("writes HKLM removable-storage policy: run under Wine only")
	}
	rec := &controlstest.Recorder{}
	c := New(controls.Env{Emit: rec, Clock: controlstest.NewFakeClock(t0), Log: zerolog.Nop()}).(*Control)
	p := c.probe.(*winProbe)
	ctx := context.Background()
	t.Cleanup(func() { _ = p.classPolicy(ctx, false, false) })
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock})); err != nil {
		t.Fatal(err)
	}
	if r, w, err := p.readClassPolicy(); err != nil || r != 1 || w != 1 {
		t.Fatalf("after block: %d %d %v", r, w, err)
	}
	c.tick(ctx) // Wine has no removable drives: a pass status, no device events
	if st := c.Status(); st.State != controls.Pass {
		t.Fatalf("status %+v", st)
	}
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock, AllowRegistered: true,
		Registered: []policy.RegisteredMed{{RegisterID: "MED-1", Serial: serial}}})); err != nil {
		t.Fatal(err)
	}
	if r, w, err := p.readClassPolicy(); err != nil || r != 0 || w != 0 {
		t.Fatalf("after allowing registered media: %d %d %v", r, w, err)
	}
	if n := len(rec.OfType(TypeEnforceFailed)); n != 0 {
		t.Fatalf("%d enforce_failed events", n)
	}
}

// TestWindowsEnforceOnMissingVolumeFails: a failure to enforce is an error
// (the control turns it into media.enforce_failed), never silence.
func TestWindowsEnforceOnMissingVolumeFails(t *testing.T) {
	p := &winProbe{}
	mask, _ := windows.GetLogicalDrives()
	free := ""
	for i := 25; i >= 3; i-- {
		if mask&(1<<i) == 0 {
			free = string(rune('A'+i)) + ":"
			break
		}
	}
	if free == "" {
		t.Skip("no free drive letter")
	}
	for _, action := range []string{"block", "read_only"} {
		if _, err := p.enforce(context.Background(), Device{Key: free, Path: `\\.\` + free}, action); err == nil {
			t.Errorf("%s on missing %s succeeded", action, free)
		}
	}
}
