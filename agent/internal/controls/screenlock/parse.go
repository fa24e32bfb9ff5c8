package screenlock

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Windows value names under Control Panel\Desktop.
const (
	valActive  = "ScreenSaveActive"
	valSecure  = "ScreenSaverIsSecure"
	valTimeout = "ScreenSaveTimeOut"
	valMachine = "InactivityTimeoutSecs"
)

// regValue is one registry value as read: REG_SZ text or a REG_DWORD
// rendered in decimal. ok is false when the value is absent.
type regValue struct {
	s  string
	ok bool
}

// winMachineTarget judges InactivityTimeoutSecs.
func winMachineTarget(v regValue) Target {
	t := Target{Scope: ScopeMachine, Found: map[string]string{}}
	if v.ok {
		t.Found[valMachine] = v.s
		if n, err := strconv.ParseInt(strings.TrimSpace(v.s), 10, 64); err == nil {
			t.Timeout = ptr(time.Duration(n) * time.Second)
		}
	}
	return t
}

// winUserTarget computes a user's effective settings: the policy value
// (Software\Policies\...\Control Panel\Desktop) where set, else the user's
// own (Control Panel\Desktop).
func winUserTarget(sid, user string, pol, own map[string]regValue) Target {
	t := Target{Scope: ScopeUser, ID: sid, User: user, Found: map[string]string{}}
	eff := func(name string) (string, bool) {
		if v := pol[name]; v.ok {
			t.Found["policy."+name] = v.s
			return v.s, true
		}
		if v := own[name]; v.ok {
			t.Found["user."+name] = v.s
			return v.s, true
		}
		return "", false
	}
	// Windows treats a missing ScreenSaveActive/IsSecure as off.
	s, _ := eff(valActive)
	t.Enabled = ptr(strings.TrimSpace(s) == "1")
	s, _ = eff(valSecure)
	t.Secure = ptr(strings.TrimSpace(s) == "1")
	if s, ok := eff(valTimeout); ok {
		if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			t.Timeout = ptr(time.Duration(n) * time.Second)
		}
	}
	return t
}

// isUserSID reports whether a HKU subkey is a loaded user hive: a domain or
// local account SID, not its _Classes twin nor the well-known service ones.
func isUserSID(name string) bool {
	return strings.HasPrefix(name, "S-1-5-21-") && !strings.HasSuffix(name, "_Classes")
}

// keyfile is a parsed GLib key file (dconf's db/*.d/ format): group ->
// key -> raw GVariant text.
type keyfile map[string]map[string]string

// parseKeyfile parses a dconf key file strictly: a key outside a group or a
// line that is neither is an error.
func parseKeyfile(b []byte) (keyfile, error) {
	kf := keyfile{}
	group := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return nil, fmt.Errorf("screenlock: keyfile line %d: bad group %q", n, line)
			}
			group = line[1 : len(line)-1]
			if kf[group] == nil {
				kf[group] = map[string]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || group == "" || strings.TrimSpace(k) == "" {
				return nil, fmt.Errorf("screenlock: keyfile line %d: %q is not key=value in a group", n, line)
			}
			kf[group][strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kf, sc.Err()
}

// render writes the key file with sorted groups and keys, so rewriting the
// same settings gives the same bytes.
func (kf keyfile) render() []byte {
	var b bytes.Buffer
	b.WriteString("# Written by Mamori (screenlock control); changes are overwritten.\n")
	groups := make([]string, 0, len(kf))
	for g := range kf {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for i, g := range groups {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "[%s]\n", g)
		keys := make([]string, 0, len(kf[g]))
		for k := range kf[g] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s\n", k, kf[g][k])
		}
	}
	return b.Bytes()
}

// parseLocks parses a dconf locks file: one key path a line.
func parseLocks(b []byte) map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && l[0] == '/' {
			out[l] = true
		}
	}
	return out
}

// parseProfile parses /etc/dconf/profile/user into its database lines.
func parseProfile(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && l[0] != '#' {
			out = append(out, l)
		}
	}
	return out
}

// parseGVariantUint reads "uint32 600" (or a bare "600").
func parseGVariantUint(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "uint32 ")
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("screenlock: %q is not a uint32", s)
	}
	return n, nil
}

// parseGVariantBool reads "true" / "false".
func parseGVariantBool(s string) (bool, error) {
	switch strings.TrimSpace(s) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("screenlock: %q is not a boolean", strings.TrimSpace(s))
}

// sysadminctlRE matches what `sysadminctl -screenLock status` logs (on
// stderr, after a timestamp and process prefix).
var sysadminctlRE = regexp.MustCompile(`screenLock (?:delay is (\d+) seconds?|is (immediate|off))`)

// parseSysadminctl returns whether a password is asked after the screen
// saver starts or the display sleeps, and after what delay.
func parseSysadminctl(b []byte) (on bool, delay time.Duration, err error) {
	m := sysadminctlRE.FindSubmatch(b)
	switch {
	case m == nil:
		return false, 0, fmt.Errorf("screenlock: sysadminctl output not understood: %q", strings.TrimSpace(string(b)))
	case string(m[2]) == "off":
		return false, 0, nil
	case string(m[2]) == "immediate":
		return true, 0, nil
	}
	n, _ := strconv.Atoi(string(m[1]))
	return true, time.Duration(n) * time.Second, nil
}

// parseDefaultsIdle reads `defaults -currentHost read com.apple.screensaver
// idleTime`: seconds, 0 = never. ok is false when the key does not exist.
func parseDefaultsIdle(b []byte) (d time.Duration, ok bool, err error) {
	s := strings.TrimSpace(string(b))
	if strings.Contains(s, "does not exist") {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("screenlock: defaults idleTime %q is not a number", s)
	}
	return time.Duration(n) * time.Second, true, nil
}
