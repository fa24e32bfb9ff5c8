package posture

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
)

// darwinProbe runs Apple's own tools and reads XProtect's bundle.
type darwinProbe struct {
	run func(ctx context.Context, name string, args ...string) ([]byte, error)
}

func newProbe(controls.Env) probe { return darwinProbe{run: runCommand} }

func runCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).Output()
}

func (p darwinProbe) diskEncryption(ctx context.Context) (diskFact, error) {
	out, err := p.run(ctx, "/usr/bin/fdesetup", "status")
	if err != nil {
		return diskFact{}, fmt.Errorf("posture: fdesetup: %w", err)
	}
	return parseFdesetup(out)
}

// xprotectPlist: XProtect is built in and always on; its age is the bundle's.
const xprotectPlist = "/Library/Apple/System/Library/CoreServices/XProtect.bundle/Contents/Info.plist"

func (p darwinProbe) antivirus(ctx context.Context) (avFact, error) {
	b, err := os.ReadFile(xprotectPlist)
	if err != nil {
		return avFact{}, fmt.Errorf("posture: xprotect: %w", err)
	}
	fi, err := os.Stat(xprotectPlist)
	if err != nil {
		return avFact{}, fmt.Errorf("posture: xprotect: %w", err)
	}
	name := "XProtect"
	if v := parseXProtectVersion(b); v != "" {
		name += " " + v
	}
	return avFact{Product: name, Running: true, Signatures: fi.ModTime()}, nil
}

func (p darwinProbe) lastUpdate(ctx context.Context) (updateFact, error) {
	out, err := p.run(ctx, "/usr/sbin/softwareupdate", "--history")
	if err != nil {
		return updateFact{}, fmt.Errorf("posture: softwareupdate: %w", err)
	}
	return updateFact{Last: parseSoftwareUpdateHistory(out, time.Local), Source: "softwareupdate --history"}, nil
}

func (p darwinProbe) firewall(ctx context.Context) (firewallFact, error) {
	out, err := p.run(ctx, "/usr/libexec/ApplicationFirewall/socketfilterfw", "--getglobalstate")
	if err != nil {
		return firewallFact{}, fmt.Errorf("posture: socketfilterfw: %w", err)
	}
	return parseSocketfilterfw(out)
}
