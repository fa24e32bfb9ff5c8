package service

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	kservice "github.com/kardianos/service"
)

// ServiceName is the service's name: on Windows the one the MSI installs,
// elsewhere the .deb/.rpm unit's (mamori-agent.service), so install, start,
// stop and uninstall reach the service the package installed.
var ServiceName = serviceNameFor(runtime.GOOS)

func serviceNameFor(goos string) string {
	if goos == "windows" {
		return "MamoriAgent"
	}
	return "mamori-agent"
}

// Service identity on every OS.
const (
	ServiceDisplayName = "Mamori Agent (守り)"
	serviceDescription = "Mamori endpoint agent: checks and enforces safety controls and ships evidence to the Mamori server."
)

// controlOnly satisfies kardianos's Interface. kardianos is used only to
// install, uninstall, start and stop; the service itself runs through
// `mamori-agent run` (with our own SCM loop on Windows), so these are never
// called.
type controlOnly struct{}

func (controlOnly) Start(kservice.Service) error {
	return errors.New("service: not run through kardianos")
}
func (controlOnly) Stop(kservice.Service) error { return nil }

// serviceConfig is the service definition: LocalSystem on Windows (empty
// UserName), root on Linux and macOS.
func serviceConfig(stateDir string) *kservice.Config {
	return &kservice.Config{
		Name:        ServiceName,
		DisplayName: ServiceDisplayName,
		Description: serviceDescription,
		Arguments:   []string{"run", "--state-dir", stateDir},
		Option: kservice.KeyValue{
			"StartType": "automatic",
			"Restart":   "always", // systemd
			"KeepAlive": true,     // launchd
			"RunAtLoad": true,     // launchd
		},
	}
}

func cmdControl(cmd string, args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags(cmd, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return usageError{err}
	}
	cfg := serviceConfig(abs)
	if cmd == "install" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("service: %w", err)
		}
		placed, copied, err := placeExecutable(exe, ProgramDir(), trustedProgramDirs())
		if err != nil {
			return err
		}
		if copied {
			fmt.Fprintf(stdout, "copied %s to %s; the service runs that copy\n", exe, placed)
		}
		cfg.Executable = placed
	}
	s, err := kservice.New(controlOnly{}, cfg)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := kservice.Control(s, cmd); err != nil {
		return fmt.Errorf("service: %w (%s)", err, controlHint(cmd, abs))
	}
	if cmd == "install" {
		// kardianos sets one recovery action at most; ours restarts after
		// 5 s, 30 s and 60 s, also after a clean exit with an error code.
		if err := hardenService(); err != nil {
			return fmt.Errorf("service: installed, but not all settings applied: %w", err)
		}
	}
	fmt.Fprintf(stdout, "%s: %s done\n", ServiceName, cmd)
	return nil
}

// controlHint says what to check when the service manager refused cmd:
// its own message is often just "exit status 1".
func controlHint(cmd, dir string) string {
	switch runtime.GOOS {
	case "windows":
		return fmt.Sprintf("check that this runs as Administrator and that the service %s exists: sc qc %s; the agent's log is %s", ServiceName, ServiceName, LogPath(dir))
	case "darwin":
		return fmt.Sprintf("check that this runs as root (sudo mamori-agent %s) and that the launchd job %s exists: launchctl print system/%s", cmd, ServiceName, ServiceName)
	default:
		return fmt.Sprintf("check that this runs as root (sudo mamori-agent %s) and that the unit %s.service exists: systemctl status %s; journalctl -u %s", cmd, ServiceName, ServiceName, ServiceName)
	}
}
