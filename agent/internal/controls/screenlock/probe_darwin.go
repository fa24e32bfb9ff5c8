package screenlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
)

// macProbe reports what sysadminctl and the console user's screensaver
// defaults say. It does not enforce: on macOS that is a configuration
// profile's job (later).
type macProbe struct{}

func newProbe(controls.Env) probe { return macProbe{} }

func (macProbe) read(ctx context.Context) ([]Target, error) {
	// sysadminctl logs its answer on stderr.
	out, err := exec.CommandContext(ctx, "sysadminctl", "-screenLock", "status").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("screenlock: sysadminctl: %w", err)
	}
	on, delay, err := parseSysadminctl(out)
	if err != nil {
		return nil, err
	}
	user, err := consoleUser()
	if err != nil || user == "" || user == "root" {
		return nil, errNoGUI // at the login window nobody's screen needs locking
	}
	t := Target{Scope: ScopeUser, ID: user, User: user, Enabled: ptr(true), Secure: ptr(on),
		Found: map[string]string{"sysadminctl": strings.TrimSpace(string(out))}}
	idle, err := exec.CommandContext(ctx, "sudo", "-u", user, "defaults", "-currentHost", "read", "com.apple.screensaver", "idleTime").CombinedOutput()
	t.Found["idleTime"] = strings.TrimSpace(string(idle))
	if d, ok, perr := parseDefaultsIdle(idle); perr == nil && ok {
		if d > 0 { // 0 is "never"; the password delay only adds to a real timeout
			d += delay
		}
		t.Timeout = &d
	} else if perr != nil && err == nil {
		return nil, perr
	} else if !ok {
		// Unset means the system default (20 minutes) on recent macOS.
		d := 20*time.Minute + delay
		t.Timeout = &d
		t.Found["idleTime"] = "default"
	}
	return []Target{t}, nil
}

func (macProbe) enforce(context.Context, Want, []Target) ([]Applied, error) {
	return nil, fmt.Errorf("screenlock: enforcement on macOS needs a configuration profile: %w", errors.ErrUnsupported)
}

// consoleUser is the owner of /dev/console: the user at the screen.
func consoleUser() (string, error) {
	fi, err := os.Stat("/dev/console")
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", errors.New("screenlock: no owner for /dev/console")
	}
	out, err := exec.Command("id", "-un", fmt.Sprint(st.Uid)).Output()
	return strings.TrimSpace(string(out)), err
}
