package posture

import (
	"context"
	"errors"
	"fmt"
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
