package posture

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The real probe on this machine: whatever it finds, the time it gives is
// an upgrade run's (apt history, unattended-upgrades, dnf/yum history),
// never the mtime of dpkg.log or the rpm database, which any install or a
// log rotation moves. The tester's finding: os_update passed with source
// /var/log/dpkg.log after an unrelated install.
func TestRealProbeUpdateIsAnUpgradeRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := newProbe(controlsEnv())
	f, err := p.lastUpdate(ctx)
	t.Logf("last update: %+v, err %v", f, err)
	for _, bad := range []string{"dpkg.log", "rpmdb", "/var/lib/rpm/Packages", "history.sqlite", "periodic/"} {
		if strings.Contains(f.Source, bad) {
			t.Fatalf("update time taken from %s (%v): a package install or log rotation is no OS update", f.Source, f.Last)
		}
	}
	if err == nil && f.Last.IsZero() && f.NoneSince.IsZero() {
		t.Fatalf("no error and no evidence: %+v", f)
	}
	if err != nil && err.Error() == "" {
		t.Fatal("unknown without a reason")
	}
}

// writeFile writes b at root/rel, making the directories.
func writeFile(t *testing.T, root, rel string, b []byte) {
	t.Helper()
	full := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The Linux probe on scratch roots: a fresh dpkg.log (an install a minute
// ago) next to an apt history whose last upgrade run is weeks old gives
// the upgrade run; a rotated, compressed history is read; no history at
// all is unknown with the reason, not a pass.
func TestLinuxProbeLastUpdate(t *testing.T) {
	ctx := context.Background()
	noCmd := func(context.Context, string, ...string) ([]byte, error) { return nil, os.ErrNotExist }

	root := tempDir(t)
	writeFile(t, root, "var/lib/dpkg/status", []byte("Package: dpkg\n"))
	writeFile(t, root, "var/log/dpkg.log", []byte("2026-12-07 13:30:30 trigproc dbus:amd64 1.14.10-1~deb12u1 <none>\n"))
	writeFile(t, root, "var/log/apt/history.log", read(t, "apt_history_debian12.log"))
	p := &linuxProbe{sys: "/sys", proc: "/proc", root: root, run: noCmd, loc: time.UTC}
	f, err := p.lastUpdate(ctx)
	if err != nil || !f.Last.Equal(time.Date(2025, 6, 24, 14, 36, 25, 0, time.UTC)) || f.Source != "/var/log/apt/history.log" {
		t.Fatalf("debian 12 history: %+v %v", f, err)
	}

	// The current history has no upgrade run; the rotated one has.
	root = tempDir(t)
	writeFile(t, root, "var/lib/dpkg/status", []byte("Package: dpkg\n"))
	writeFile(t, root, "var/log/apt/history.log", []byte("\nStart-Date: 2026-12-01  09:00:00\nCommandline: apt install vim\nInstall: vim:amd64 (2:9.1.0016-1ubuntu7.5)\nEnd-Date: 2026-12-01  09:00:05\n"))
	writeFile(t, root, "var/log/apt/history.log.1.gz", gz(t, read(t, "apt_history_ubuntu.log")))
	p.root = root
	f, err = p.lastUpdate(ctx)
	if err != nil || !f.Last.Equal(time.Date(2026, 11, 18, 12, 42, 3, 0, time.UTC)) || f.Source != "/var/log/apt/history.log.1.gz" {
		t.Fatalf("rotated history: %+v %v", f, err)
	}
	// unattended-upgrades ran later than any apt history entry.
	writeFile(t, root, "var/log/unattended-upgrades/unattended-upgrades.log", read(t, "unattended_upgrades.log"))
	f, err = p.lastUpdate(ctx)
	if err != nil || !f.Last.Equal(time.Date(2026, 11, 20, 6, 12, 47, 0, time.UTC)) || !strings.Contains(f.Source, "unattended-upgrades.log") {
		t.Fatalf("unattended-upgrades: %+v %v", f, err)
	}

	// Only installs on record: no time, but the record's start is evidence.
	root = tempDir(t)
	writeFile(t, root, "var/lib/dpkg/status", []byte("Package: dpkg\n"))
	writeFile(t, root, "var/log/dpkg.log", []byte("2026-12-07 13:30:30 trigproc dbus:amd64 1.14.10-1~deb12u1 <none>\n"))
	writeFile(t, root, "var/log/apt/history.log", []byte("\nStart-Date: 2026-12-01  09:00:00\nCommandline: apt install vim\nInstall: vim:amd64 (2:9.1.0016-1ubuntu7.5)\nEnd-Date: 2026-12-01  09:00:05\n"))
	p.root = root
	f, err = p.lastUpdate(ctx)
	if err != nil || !f.Last.IsZero() || !f.NoneSince.Equal(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)) {
		t.Fatalf("installs only: %+v %v", f, err)
	}

	// A Debian system without apt history: unknown with the reason.
	root = tempDir(t)
	writeFile(t, root, "var/lib/dpkg/status", []byte("Package: dpkg\n"))
	writeFile(t, root, "var/log/dpkg.log", []byte("2026-12-07 13:30:30 trigproc dbus:amd64 1.14.10-1~deb12u1 <none>\n"))
	p.root = root
	if f, err := p.lastUpdate(ctx); err == nil || !strings.Contains(err.Error(), "history.log") {
		t.Fatalf("no history: %+v %v", f, err)
	}

	// An RPM system: dnf history; dnf failing is unknown, not a pass.
	root = tempDir(t)
	writeFile(t, root, "var/lib/rpm/rpmdb.sqlite", []byte("x"))
	p.root = root
	p.run = func(_ context.Context, name string, args ...string) ([]byte, error) {
		if strings.Contains(strings.Join(append([]string{name}, args...), " "), "dnf") {
			return read(t, "dnf_history_list.txt"), nil
		}
		return nil, os.ErrNotExist
	}
	f, err = p.lastUpdate(ctx)
	if err != nil || !f.Last.Equal(time.Date(2026, 11, 18, 3, 15, 0, 0, time.UTC)) || !strings.Contains(f.Source, "dnf history") {
		t.Fatalf("dnf: %+v %v", f, err)
	}
	p.run = noCmd
	if f, err := p.lastUpdate(ctx); err == nil || strings.Contains(f.Source, "rpm") {
		t.Fatalf("rpm without dnf/yum: %+v %v", f, err)
	}
}
