package main

import (
	"bytes"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestServiceConfigDependencies: only systemd gets the network-online unit
// lines; on Windows the SCM would take them as names of services to start
// first, fail to find them, and refuse to start mamori-server.
func TestServiceConfigDependencies(t *testing.T) {
	args := []string{"serve", "--data-dir", `C:\ProgramData\Mamori\server`}
	for _, platform := range []string{"windows-service", "linux-openrc", "linux-sysv", "linux-upstart", "darwin-launchd"} {
		c := serviceConfigFor(platform, args)
		if len(c.Dependencies) != 0 {
			t.Errorf("%s: Dependencies = %q, want none", platform, c.Dependencies)
		}
		if !slices.Equal(c.Arguments, args) || c.Name != serviceName {
			t.Errorf("%s: name %q args %q", platform, c.Name, c.Arguments)
		}
	}
	c := serviceConfigFor("linux-systemd", args)
	for _, want := range []string{"After=network-online.target", "Wants=network-online.target"} {
		if !slices.Contains(c.Dependencies, want) {
			t.Errorf("linux-systemd: Dependencies %q lack %q", c.Dependencies, want)
		}
	}
	for _, d := range c.Dependencies {
		if !strings.Contains(d, "=") {
			t.Errorf("linux-systemd: %q is not a unit line", d)
		}
	}
}

// harden-service takes one service name at most, and off Windows says it
// is for the Windows service instead of pretending to do something.
func TestHardenServiceUsage(t *testing.T) {
	for _, args := range [][]string{
		{"harden-service", "MamoriServer", "extra"},
		{"harden-service", "--name"},
		{"harden-service", ""},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 || !strings.Contains(errb.String(), "harden-service") {
			t.Errorf("%q: exit %d, want 2 naming harden-service: %s", args, code, errb.String())
		}
	}
	if runtime.GOOS == "windows" {
		return // the Windows run is installers/test.sh's, on the installed service
	}
	var out, errb bytes.Buffer
	if code := run([]string{"harden-service"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "Windows services only") {
		t.Errorf("harden-service on %s: exit %d: %s", runtime.GOOS, code, errb.String())
	}
	if out.Len() != 0 {
		t.Errorf("harden-service on %s claims success: %s", runtime.GOOS, out.String())
	}
}
