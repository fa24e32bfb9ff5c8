package posture

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/yusufpapurcu/wmi"
	"golang.org/x/sys/windows/registry"

	"github.com/mamori/mamori/agent/internal/controls"
)

// wmiQuerier is the one WMI call the probe makes; tests replace it.
type wmiQuerier interface {
	query(ctx context.Context, q string, dst any, namespace string) error
}

type realWMI struct{}

// query runs a WQL query; a property the class lacks on this build (older
// Windows) is not an error, the field stays zero.
func (realWMI) query(ctx context.Context, q string, dst any, namespace string) error {
	done := make(chan error, 1)
	go func() { done <- wmi.QueryNamespace(q, dst, namespace) }() // wmi takes no context
	select {
	case err := <-done:
		var mismatch *wmi.ErrFieldMismatch
		if errors.As(err, &mismatch) {
			return nil
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// windowsProbe reads WMI and the registry.
type windowsProbe struct {
	wmi         wmiQuerier
	fwKey       registry.Key // HKLM
	fwPath      string       // local firewall policy
	fwGPOPath   string       // Group Policy firewall settings, which win
	systemDrive string
}

func newProbe(controls.Env) probe {
	sd := os.Getenv("SystemDrive")
	if sd == "" {
		sd = "C:"
	}
	return &windowsProbe{wmi: realWMI{}, fwKey: registry.LOCAL_MACHINE,
		fwPath:    `SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy`,
		fwGPOPath: `SOFTWARE\Policies\Microsoft\WindowsFirewall`, systemDrive: sd}
}

func (p *windowsProbe) diskEncryption(ctx context.Context) (diskFact, error) {
	const ns = `root\CIMV2\Security\MicrosoftVolumeEncryption`
	var vols []encryptableVolume
	err := p.wmi.query(ctx, "SELECT DriveLetter, ProtectionStatus, VolumeType FROM Win32_EncryptableVolume", &vols, ns)
	if err != nil && ctx.Err() == nil {
		// VolumeType came with Windows 8: before it, a WQL error.
		vols = nil
		err = p.wmi.query(ctx, "SELECT DriveLetter, ProtectionStatus FROM Win32_EncryptableVolume", &vols, ns)
	}
	if err != nil {
		// Home editions have no BitLocker namespace at all.
		return diskFact{}, fmt.Errorf("posture: bitlocker wmi: %w", err)
	}
	return bitlockerVolumes(vols, p.systemDrive)
}

func (p *windowsProbe) antivirus(ctx context.Context) (avFact, error) {
	var products []antiVirusProduct
	scErr := p.wmi.query(ctx, "SELECT displayName, productState, timestamp FROM AntiVirusProduct", &products, `root\SecurityCenter2`)
	if scErr != nil {
		products = nil // Server SKUs have no Security Center
	} else if products == nil {
		products = []antiVirusProduct{}
	}
	var mps []mpComputerStatus
	var mp *mpComputerStatus
	mpErr := p.wmi.query(ctx, "SELECT AMServiceEnabled, AntivirusEnabled, RealTimeProtectionEnabled, AntivirusSignatureLastUpdated FROM MSFT_MpComputerStatus",
		&mps, `root\Microsoft\Windows\Defender`)
	if mpErr == nil && len(mps) > 0 {
		mp = &mps[0]
	}
	if scErr != nil && mpErr != nil {
		return avFact{}, fmt.Errorf("posture: security center: %v; defender: %w", scErr, mpErr)
	}
	return antivirusFrom(products, mp)
}

func (p *windowsProbe) lastUpdate(ctx context.Context) (updateFact, error) {
	var fixes []quickFix
	if err := p.wmi.query(ctx, "SELECT HotFixID, InstalledOn FROM Win32_QuickFixEngineering", &fixes, `root\CIMV2`); err != nil {
		return updateFact{}, fmt.Errorf("posture: hotfix wmi: %w", err)
	}
	t, id := newestHotfix(fixes)
	return updateFact{Last: t, Source: "Win32_QuickFixEngineering " + id}, nil
}

// firewall reads EnableFirewall per profile from the local policy and from
// Group Policy; on domain PCs the GPO value is what Windows applies.
func (p *windowsProbe) firewall(ctx context.Context) (firewallFact, error) {
	local, gpo := map[string]uint32{}, map[string]uint32{}
	for _, prof := range firewallProfileNames {
		v, ok, err := dwordValue(p.fwKey, p.fwPath+`\`+prof.local, "EnableFirewall")
		if err != nil {
			return firewallFact{}, err
		}
		if ok {
			local[prof.local] = v
		}
		if p.fwGPOPath == "" {
			continue
		}
		for _, g := range prof.gpo {
			v, ok, err := dwordValue(p.fwKey, p.fwGPOPath+`\`+g, "EnableFirewall")
			if err != nil {
				return firewallFact{}, err
			}
			if ok {
				gpo[prof.local] = v
				break
			}
		}
	}
	if len(local) == 0 && len(gpo) == 0 {
		return firewallFact{}, fmt.Errorf("posture: %w: no firewall policy in the registry", errors.ErrUnsupported)
	}
	return firewallEffective(local, gpo), nil
}

// dwordValue reads an integer value; a missing key or value is not an
// error (profile never configured, no GPO), ok is false.
func dwordValue(root registry.Key, path, name string) (v uint32, ok bool, err error) {
	k, err := registry.OpenKey(root, path, registry.QUERY_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("posture: open %s: %w", path, err)
	}
	defer k.Close()
	n, _, err := k.GetIntegerValue(name)
	if err != nil {
		return 0, false, nil // absent or not a DWORD: not configured
	}
	return uint32(n), true, nil
}
