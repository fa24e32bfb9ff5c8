package posture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
)

// linuxProbe reads sysfs, procfs and /var; roots are fields for tests.
type linuxProbe struct {
	sys, proc, root string // "/sys", "/proc", "/" (for /var, /usr)
	run             func(ctx context.Context, name string, args ...string) ([]byte, error)
}

func newProbe(controls.Env) probe {
	return &linuxProbe{sys: "/sys", proc: "/proc", root: "/", run: runCommand}
}

func runCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).Output()
}

func (p *linuxProbe) diskEncryption(ctx context.Context) (diskFact, error) {
	mi, err := os.ReadFile(filepath.Join(p.proc, "self", "mountinfo"))
	if err != nil {
		return diskFact{}, fmt.Errorf("posture: %w", err)
	}
	majmin, source, fstype, err := rootDevice(mi)
	if err != nil {
		return diskFact{}, fmt.Errorf("posture: %w", err)
	}
	method, err := luksForRoot(os.DirFS(p.sys), majmin)
	if err != nil {
		return diskFact{}, fmt.Errorf("posture: / is %s on %s: %w", fstype, source, err)
	}
	return diskFact{Encrypted: method != "", Method: method, Volume: "/"}, nil
}

// antivirus looks for ClamAV, the anti-virus packaged by the distributions;
// others (vendor EDR agents) are not recognised and give unknown.
func (p *linuxProbe) antivirus(ctx context.Context) (avFact, error) {
	var f avFact
	for _, b := range []string{"usr/sbin/clamd", "usr/bin/clamd", "usr/bin/clamscan", "usr/bin/clamdscan"} {
		if _, err := os.Stat(filepath.Join(p.root, b)); err == nil {
			f.Product = "ClamAV"
			break
		}
	}
	if f.Product == "" {
		return f, fmt.Errorf("%w (clamav not installed)", errNotDetected)
	}
	f.Running = p.processRunning("clamd")
	for _, pat := range []string{"*.cvd", "*.cld"} {
		ms, _ := filepath.Glob(filepath.Join(p.root, "var/lib/clamav", pat))
		for _, m := range ms {
			if fi, err := os.Stat(m); err == nil && fi.ModTime().After(f.Signatures) {
				f.Signatures = fi.ModTime()
			}
		}
	}
	return f, nil
}

func (p *linuxProbe) processRunning(comm string) bool {
	ents, err := os.ReadDir(p.proc)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.proc, e.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return true
		}
	}
	return false
}

// lastUpdate takes the newest mtime of the package managers' records.
func (p *linuxProbe) lastUpdate(ctx context.Context) (updateFact, error) {
	var f updateFact
	for _, c := range []string{
		"var/lib/apt/periodic/upgrade-stamp", "var/lib/apt/periodic/unattended-upgrades-stamp",
		"var/log/dpkg.log", "var/lib/dnf/history.sqlite", "var/lib/rpm/rpmdb.sqlite", "var/lib/rpm/Packages",
	} {
		if fi, err := os.Stat(filepath.Join(p.root, c)); err == nil && fi.ModTime().After(f.Last) {
			f.Last, f.Source = fi.ModTime(), "/"+c
		}
	}
	if f.Last.IsZero() {
		return f, fmt.Errorf("%w: no dpkg/dnf/rpm records found", errors.ErrUnsupported)
	}
	return f, nil
}

// firewall asks ufw and firewalld (front ends say whether they are on),
// then nftables and iptables (rules on the input hook).
func (p *linuxProbe) firewall(ctx context.Context) (firewallFact, error) {
	if out, err := p.run(ctx, "ufw", "status"); err == nil {
		if on, known := parseUfwStatus(out); known && on {
			return firewallFact{On: true, Detail: "ufw active"}, nil
		}
	}
	if out, err := p.run(ctx, "firewall-cmd", "--state"); err == nil && strings.TrimSpace(string(out)) == "running" {
		return firewallFact{On: true, Detail: "firewalld running"}, nil
	}
	var tried []string
	if out, err := p.run(ctx, "nft", "list", "ruleset"); err == nil {
		if on, d := parseNftRuleset(out); on {
			return firewallFact{On: true, Detail: d}, nil
		}
		tried = append(tried, "nftables")
	}
	if out, err := p.run(ctx, "iptables-save"); err == nil {
		if on, d := parseIptablesSave(out); on {
			return firewallFact{On: true, Detail: d}, nil
		}
		tried = append(tried, "iptables")
	}
	if len(tried) == 0 {
		return firewallFact{}, fmt.Errorf("%w: none of ufw, firewalld, nft, iptables-save could be run", errors.ErrUnsupported)
	}
	return firewallFact{On: false, Detail: "no input filtering in " + strings.Join(tried, ", ")}, nil
}
