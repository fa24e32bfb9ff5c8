package posture

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
)

// linuxProbe reads sysfs, procfs and /var; roots are fields for tests.
type linuxProbe struct {
	sys, proc, root string         // "/sys", "/proc", "/" (for /var, /usr)
	loc             *time.Location // of the logs' dates; nil = time.Local
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
		return f, why(fmt.Errorf("%w (clamav not installed)", errNotDetected),
			"ClamAVがインストールされていません。ほかの製品はLinuxでは判別できません", "ClamAV not installed; other products are not recognised on Linux")
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

// lastUpdate finds the last run of the system's upgrade, not any package
// activity: dpkg.log and the rpm database change on every install (and
// dpkg.log on every log rotation), so their mtimes prove nothing.
// Debian/Ubuntu: apt's history (history.log and its rotated copies, .gz
// included) and unattended-upgrades' log; RPM systems: `dnf history list`
// (else `yum history list`). Evidence that cannot be read is an error
// (unknown), never a pass.
func (p *linuxProbe) lastUpdate(ctx context.Context) (updateFact, error) {
	switch {
	case p.exists("var/lib/dpkg/status"):
		return p.aptLastUpdate()
	case p.exists("var/lib/rpm") || p.exists("usr/lib/sysimage/rpm"):
		return p.rpmLastUpdate(ctx)
	}
	return updateFact{}, why(fmt.Errorf("%w: neither dpkg nor rpm found", errors.ErrUnsupported),
		"dpkg・rpm のどちらも見つかりません", "neither dpkg nor rpm found")
}

func (p *linuxProbe) exists(rel string) bool {
	_, err := os.Stat(filepath.Join(p.root, rel))
	return err == nil
}

func (p *linuxProbe) location() *time.Location {
	if p.loc != nil {
		return p.loc
	}
	return time.Local
}

// maxLogBytes bounds what is read of one (decompressed) log file.
const maxLogBytes = 64 << 20

// rotated lists a log and its rotated copies, newest first: name, name.1,
// name.1.gz, name.2.gz, ... (logrotate's numbering).
func (p *linuxProbe) rotated(rel string) []string {
	full := filepath.Join(p.root, rel)
	ms, _ := filepath.Glob(full + ".*")
	num := func(m string) int {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(m, full+"."), ".gz"))
		if err != nil {
			return -1
		}
		return n
	}
	var out []string
	for _, m := range ms {
		if num(m) > 0 {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return num(out[i]) < num(out[j]) })
	return append([]string{full}, out...)
}

func readLog(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		z, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		defer z.Close()
		r = z
	}
	return io.ReadAll(io.LimitReader(r, maxLogBytes))
}

func (p *linuxProbe) aptLastUpdate() (updateFact, error) {
	loc := p.location()
	var best updateFact
	var oldest time.Time
	var readErr error
	read := 0
	for _, name := range p.rotated("var/log/apt/history.log") {
		b, err := readLog(name)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) && readErr == nil {
				readErr = err
			}
			continue
		}
		read++
		run, old, _ := parseAptHistory(b, loc)
		if !old.IsZero() && (oldest.IsZero() || old.Before(oldest)) {
			oldest = old
		}
		if !run.End.IsZero() {
			best = updateFact{Last: run.End, Source: p.display(name),
				Detail: fmt.Sprintf("%s (%d packages upgraded)", run.Command, run.Upgraded)}
			break // older files hold older runs
		}
	}
	for _, name := range p.rotated("var/log/unattended-upgrades/unattended-upgrades.log") {
		b, err := readLog(name)
		if err != nil {
			continue
		}
		read++
		if last, d := parseUnattendedUpgradesLog(b, loc); !last.IsZero() {
			if last.After(best.Last) {
				best = updateFact{Last: last, Source: p.display(name), Detail: d}
			}
			break
		}
	}
	switch {
	case !best.Last.IsZero():
		return best, nil
	case read == 0 && readErr != nil:
		return updateFact{}, why(fmt.Errorf("posture: apt history: %w", readErr),
			"aptの履歴(/var/log/apt/history.log)を読めません", "apt history (/var/log/apt/history.log) cannot be read")
	case read == 0:
		return updateFact{}, why(errors.New("posture: no apt history (/var/log/apt/history.log) or unattended-upgrades log"),
			"aptの履歴(/var/log/apt/history.log)がありません", "no apt history (/var/log/apt/history.log)")
	case oldest.IsZero():
		return updateFact{}, why(errors.New("posture: apt history holds no entry"),
			"aptの履歴に記録がありません", "apt history holds no entry")
	}
	return updateFact{NoneSince: oldest, Source: "/var/log/apt/history.log",
		Detail: "no upgrade run since " + oldest.Format("2006-01-02")}, nil
}

// display is a path as the host names it (without a test root).
func (p *linuxProbe) display(name string) string {
	rel, err := filepath.Rel(p.root, name)
	if err != nil {
		return name
	}
	return "/" + filepath.ToSlash(rel)
}

func (p *linuxProbe) rpmLastUpdate(ctx context.Context) (updateFact, error) {
	var errs []string
	for _, tool := range []string{"dnf", "yum"} {
		// The C locale: dnf translates the table's headers.
		out, err := p.run(ctx, "env", "LC_ALL=C", tool, "history", "list")
		if err != nil {
			errs = append(errs, tool+": "+err.Error())
			continue
		}
		last, detail, rows := parseDnfHistory(out, p.location())
		switch {
		case !last.IsZero():
			return updateFact{Last: last, Source: tool + " history", Detail: detail}, nil
		case rows == 0:
			errs = append(errs, tool+": no transaction in its history list")
			continue
		}
		return updateFact{}, why(fmt.Errorf("posture: no upgrade among the %d transactions of %s history list", rows, tool),
			tool+"の履歴に更新(upgrade)の記録がありません", "no upgrade in "+tool+" history")
	}
	return updateFact{}, why(fmt.Errorf("posture: dnf/yum history cannot be read: %s", strings.Join(errs, "; ")),
		"dnf・yumの履歴を読めません", "dnf/yum history cannot be read")
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
		return firewallFact{}, why(fmt.Errorf("%w: none of ufw, firewalld, nft, iptables-save could be run", errors.ErrUnsupported),
			"ufw・firewalld・nft・iptables-saveのいずれも実行できません", "none of ufw, firewalld, nft, iptables-save could be run")
	}
	return firewallFact{On: false, Detail: "no input filtering in " + strings.Join(tried, ", ")}, nil
}
