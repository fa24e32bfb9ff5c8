package posture

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows/registry"
)

// The firewall check reads the real registry, in a scratch HKCU tree laid
// out like HKLM's FirewallPolicy key.
func TestFirewallRegistry(t *testing.T) {
	base := fmt.Sprintf(`Software\MamoriTest\posture-%d`, time.Now().UnixNano())
	defer deleteTree(registry.CURRENT_USER, base)
	p := &windowsProbe{fwKey: registry.CURRENT_USER, fwPath: base + `\FirewallPolicy`}
	if _, err := p.firewall(context.Background()); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("no policy keys: %v", err)
	}
	set := func(profile string, v uint32) {
		k, _, err := registry.CreateKey(registry.CURRENT_USER, base+`\FirewallPolicy\`+profile, registry.SET_VALUE)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		if err := k.SetDWordValue("EnableFirewall", v); err != nil {
			t.Fatal(err)
		}
	}
	set("DomainProfile", 1)
	set("StandardProfile", 1)
	set("PublicProfile", 0)
	f, err := p.firewall(context.Background())
	if err != nil || f.On || f.Detail != "Domain=on Standard=on Public=off" {
		t.Fatalf("public off: %+v %v", f, err)
	}
	set("PublicProfile", 1)
	if f, err := p.firewall(context.Background()); err != nil || !f.On {
		t.Fatalf("all on: %+v %v", f, err)
	}
}

// Group Policy values win over the local policy, read from HKLM as the
// agent does (under Wine the test process may write HKLM; elsewhere, without
// admin rights, a scratch HKCU tree stands in). Both trees are scratch keys:
// a developer's real firewall policy is never touched.
func TestFirewallGroupPolicyRegistry(t *testing.T) {
	root := registry.LOCAL_MACHINE
	base := fmt.Sprintf(`SOFTWARE\MamoriTest\posture-gpo-%d`, time.Now().UnixNano())
	if k, _, err := registry.CreateKey(root, base, registry.SET_VALUE); err != nil {
		t.Logf("HKLM not writable (%v): using HKCU", err)
		root = registry.CURRENT_USER
	} else {
		k.Close()
	}
	t.Cleanup(func() { deleteTree(root, base) })
	p := &windowsProbe{fwKey: root, fwPath: base + `\FirewallPolicy`, fwGPOPath: base + `\Policies\Microsoft\WindowsFirewall`}
	set := func(path string, v uint32) {
		t.Helper()
		k, _, err := registry.CreateKey(root, base+`\`+path, registry.SET_VALUE)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		if err := k.SetDWordValue("EnableFirewall", v); err != nil {
			t.Fatal(err)
		}
	}
	// Only a GPO, no local policy: still known.
	set(`Policies\Microsoft\WindowsFirewall\DomainProfile`, 1)
	if f, err := p.firewall(context.Background()); err != nil || f.On || f.Detail != "Domain=on(GPO) Standard=off Public=off" {
		t.Fatalf("GPO domain only: %+v %v", f, err)
	}
	for _, prof := range []string{"DomainProfile", "StandardProfile", "PublicProfile"} {
		set(`FirewallPolicy\`+prof, 1)
	}
	// The local policy says on everywhere; a GPO turning Public off wins.
	set(`Policies\Microsoft\WindowsFirewall\PublicProfile`, 0)
	if f, err := p.firewall(context.Background()); err != nil || f.On || f.Detail != "Domain=on(GPO) Standard=on Public=off(GPO)" {
		t.Fatalf("GPO public off: %+v %v", f, err)
	}
	// And the other way: local off, GPO on (the private profile under its
	// legacy StandardProfile name, then WFAS's PrivateProfile, which wins).
	set(`FirewallPolicy\StandardProfile`, 0)
	set(`Policies\Microsoft\WindowsFirewall\PublicProfile`, 1)
	set(`Policies\Microsoft\WindowsFirewall\StandardProfile`, 1)
	if f, err := p.firewall(context.Background()); err != nil || !f.On || f.Detail != "Domain=on(GPO) Standard=on(GPO) Public=on(GPO)" {
		t.Fatalf("GPO standard on: %+v %v", f, err)
	}
	set(`Policies\Microsoft\WindowsFirewall\PrivateProfile`, 0)
	if f, err := p.firewall(context.Background()); err != nil || f.On || f.Detail != "Domain=on(GPO) Standard=off(GPO) Public=on(GPO)" {
		t.Fatalf("WFAS PrivateProfile off: %+v %v", f, err)
	}
}

// cimWMI answers WQL queries with a fixture, as a build without VolumeType
// would when old is set.
type cimWMI struct {
	t       *testing.T
	fixture string
	old     bool
	queries []string
}

func (w *cimWMI) query(_ context.Context, q string, dst any, _ string) error {
	w.queries = append(w.queries, q)
	if w.old && strings.Contains(q, "VolumeType") {
		return errors.New("Exception occurred. (Invalid query)")
	}
	rows, err := decodeCIMJSON[encryptableVolume](read(w.t, w.fixture))
	if err != nil {
		return err
	}
	*dst.(*[]encryptableVolume) = rows
	return nil
}

func TestDiskEncryptionEveryFixedVolume(t *testing.T) {
	w := &cimWMI{t: t, fixture: "encryptable_volume_multi.json"}
	p := &windowsProbe{wmi: w, systemDrive: "C:"}
	f, err := p.diskEncryption(context.Background())
	if err != nil || f.Encrypted || strings.Join(f.Unencrypted, " ") != "D:" || len(w.queries) != 1 {
		t.Fatalf("multi: %+v %v %q", f, err, w.queries)
	}
	// Before Windows 8 the class has no VolumeType: asked again without it.
	w = &cimWMI{t: t, fixture: "encryptable_volume.json", old: true}
	p.wmi = w
	if f, err := p.diskEncryption(context.Background()); err != nil || f.Encrypted || strings.Join(f.Unencrypted, " ") != "D:" || len(w.queries) != 2 {
		t.Fatalf("old build: %+v %v %q", f, err, w.queries)
	}
}

func deleteTree(root registry.Key, path string) {
	k, err := registry.OpenKey(root, path, registry.ENUMERATE_SUB_KEYS)
	if err == nil {
		names, _ := k.ReadSubKeyNames(-1)
		k.Close()
		for _, n := range names {
			deleteTree(root, path+`\`+n)
		}
	}
	registry.DeleteKey(root, path)
}
