package screenlock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// GNOME settings the control manages, as dconf key paths.
const (
	keyIdleDelay   = "/org/gnome/desktop/session/idle-delay"
	keyLockEnabled = "/org/gnome/desktop/screensaver/lock-enabled"
	keyLockDelay   = "/org/gnome/desktop/screensaver/lock-delay"
)

var gnomeKeys = []string{keyIdleDelay, keyLockEnabled, keyLockDelay}

// gnomeProbe checks and writes the GNOME dconf system database under root
// ("/" in production, a temp dir in tests).
type gnomeProbe struct {
	root string
	// users lists logged-on user names.
	users func(ctx context.Context) ([]string, error)
	// run runs a command and returns its stdout; nil disables commands.
	run func(ctx context.Context, name string, args ...string) ([]byte, error)
}

func (g *gnomeProbe) path(p ...string) string {
	return filepath.Join(append([]string{g.root}, p...)...)
}

func (g *gnomeProbe) dbDir() string { return g.path("etc", "dconf", "db", "local.d") }

// read reports the system database as the machine target and, where
// gsettings can be run, each logged-on user's effective values.
func (g *gnomeProbe) read(ctx context.Context) ([]Target, error) {
	if _, err := os.Stat(g.path("usr", "share", "glib-2.0", "schemas", "org.gnome.desktop.screensaver.gschema.xml")); err != nil {
		return nil, errNoGUI
	}
	// A schema installed (gsettings-desktop-schemas comes with many
	// server packages) is no screen: without a graphical session or
	// locker there is nothing to judge, pass or fail.
	gui, ok := g.graphical()
	if !ok {
		return nil, fmt.Errorf("%w (no x11/wayland login session, no desktop, display manager, X server or locker running)", errNoGUI)
	}
	m, err := g.readSystem()
	if err != nil {
		return nil, err
	}
	m.Found["gui"] = gui
	ts := []Target{m}
	if g.users == nil || g.run == nil {
		return ts, nil
	}
	if _, err := exec.LookPath("gsettings"); err != nil {
		return ts, nil // judge from the system db and its locks only
	}
	users, err := g.users(ctx)
	if err != nil {
		// No utmp (containers, some minimal systems): the system db and its locks decide.
		ts[0].Found["users"] = "unknown: " + err.Error()
		return ts, nil
	}
	for _, u := range users {
		t, err := g.readUser(ctx, u)
		if err != nil {
			// One user's gsettings failing (no home, say) must not hide the rest.
			ts[0].Found["user:"+u] = err.Error()
			continue
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// readSystem merges the key files of db/local.d in name order (later
// files win, as dconf update does) and the locks.
func (g *gnomeProbe) readSystem() (Target, error) {
	t := Target{Scope: ScopeMachine, Found: map[string]string{}}
	prof, err := os.ReadFile(g.path("etc", "dconf", "profile", "user"))
	hasLocal := false
	if err == nil {
		for _, l := range parseProfile(prof) {
			hasLocal = hasLocal || l == "system-db:local"
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return t, fmt.Errorf("screenlock: dconf profile: %w", err)
	}
	t.Found["profile.system-db:local"] = fmt.Sprint(hasLocal)
	vals := map[string]string{}
	var newest time.Time
	ents, err := os.ReadDir(g.dbDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return t, fmt.Errorf("screenlock: dconf db: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(g.dbDir(), e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return t, fmt.Errorf("screenlock: %w", err)
		}
		kf, err := parseKeyfile(b)
		if err != nil {
			return t, fmt.Errorf("%w (%s)", err, p)
		}
		for grp, kv := range kf {
			for k, v := range kv {
				vals["/"+grp+"/"+k] = v
			}
		}
		if fi, err := e.Info(); err == nil && fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	locks := map[string]bool{}
	lents, _ := os.ReadDir(filepath.Join(g.dbDir(), "locks"))
	for _, e := range lents {
		if b, err := os.ReadFile(filepath.Join(g.dbDir(), "locks", e.Name())); err == nil {
			for k := range parseLocks(b) {
				locks[k] = true
			}
			if fi, err := e.Info(); err == nil && fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
		}
	}
	// dconf reads the compiled db, not the key files: it must be a GVDB
	// file holding the locked keys, and newer than the key files.
	compiled := "missing"
	if fi, err := os.Stat(g.path("etc", "dconf", "db", "local")); err == nil {
		compiled = compiledState(g.path("etc", "dconf", "db", "local"), fi.Size())
		if compiled == "current" && fi.ModTime().Before(newest) {
			compiled = "stale"
		}
	}
	t.Found["compiled_db"] = compiled
	for _, k := range gnomeKeys {
		if v, ok := vals[k]; ok {
			t.Found[k] = v
		}
		t.Found["lock:"+k] = fmt.Sprint(locks[k])
	}
	if v, ok := vals[keyLockEnabled]; ok {
		if b, err := parseGVariantBool(v); err == nil {
			t.Enabled, t.Secure = ptr(b), ptr(b)
		}
	}
	if v, ok := vals[keyIdleDelay]; ok {
		if n, err := parseGVariantUint(v); err == nil {
			d := time.Duration(n) * time.Second
			if n > 0 {
				if lv, ok := vals[keyLockDelay]; ok {
					if ln, err := parseGVariantUint(lv); err == nil {
						d += time.Duration(ln) * time.Second
					}
				}
			}
			t.Timeout = &d
		}
	}
	locked := hasLocal && compiled == "current"
	for _, k := range gnomeKeys {
		locked = locked && locks[k]
	}
	t.Locked = &locked
	return t, nil
}

// readUser asks gsettings, as the user, for the effective values.
func (g *gnomeProbe) readUser(ctx context.Context, user string) (Target, error) {
	t := Target{Scope: ScopeUser, ID: user, User: user, Found: map[string]string{}}
	u, err := osuser.Lookup(user)
	if err != nil {
		return t, fmt.Errorf("screenlock: user %s: %w", user, err)
	}
	get := func(schema, key string) (string, error) {
		// runuser keeps root's HOME; gsettings must read the user's own dconf db.
		out, err := g.run(ctx, "runuser", "-u", user, "--", "env", "HOME="+u.HomeDir, "XDG_CONFIG_HOME="+filepath.Join(u.HomeDir, ".config"),
			"gsettings", "get", schema, key)
		if err != nil {
			return "", fmt.Errorf("screenlock: gsettings %s %s for %s: %w", schema, key, user, err)
		}
		s := strings.TrimSpace(string(out))
		t.Found[schema+"."+key] = s
		return s, nil
	}
	idle, err := get("org.gnome.desktop.session", "idle-delay")
	if err != nil {
		return t, err
	}
	en, err := get("org.gnome.desktop.screensaver", "lock-enabled")
	if err != nil {
		return t, err
	}
	ld, err := get("org.gnome.desktop.screensaver", "lock-delay")
	if err != nil {
		return t, err
	}
	if b, err := parseGVariantBool(en); err == nil {
		t.Enabled, t.Secure = ptr(b), ptr(b)
	}
	if n, err := parseGVariantUint(idle); err == nil {
		d := time.Duration(n) * time.Second
		if l, err := parseGVariantUint(ld); err == nil && n > 0 {
			d += time.Duration(l) * time.Second
		}
		t.Timeout = &d
	}
	return t, nil
}

// Files the enforcement writes, relative to root.
var (
	profileFile = filepath.Join("etc", "dconf", "profile", "user")
	settingFile = filepath.Join("etc", "dconf", "db", "local.d", "00-mamori-screensaver")
	locksFile   = filepath.Join("etc", "dconf", "db", "local.d", "locks", "mamori")
)

// enforce writes the profile, the settings key file and the locks, then
// compiles the database with dconf update. Per-user values need no writes:
// locked system keys override them.
func (g *gnomeProbe) enforce(ctx context.Context, w Want, ts []Target) ([]Applied, error) {
	set := map[string]string{}
	prof, err := os.ReadFile(g.path(profileFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("screenlock: dconf profile: %w", err)
	}
	lines := parseProfile(prof)
	if !contains(lines, "user-db:user") {
		lines = append([]string{"user-db:user"}, lines...)
	}
	if !contains(lines, "system-db:local") {
		lines = append(lines, "system-db:local")
	}
	newProf := strings.Join(lines, "\n") + "\n"
	if string(prof) != newProf {
		if err := writeAtomic(g.path(profileFile), []byte(newProf)); err != nil {
			return nil, err
		}
		set["profile"] = strings.Join(lines, ",")
	}
	secs := uint64(w.MaxIdle / time.Second)
	kf := keyfile{
		"org/gnome/desktop/session":     {"idle-delay": fmt.Sprintf("uint32 %d", secs)},
		"org/gnome/desktop/screensaver": {"lock-enabled": "true", "lock-delay": "uint32 0"},
	}
	if err := writeAtomic(g.path(settingFile), kf.render()); err != nil {
		return nil, err
	}
	set[keyIdleDelay] = fmt.Sprintf("uint32 %d", secs)
	set[keyLockEnabled] = "true"
	set[keyLockDelay] = "uint32 0"
	locks := append([]string(nil), gnomeKeys...)
	sort.Strings(locks)
	if err := writeAtomic(g.path(locksFile), []byte(strings.Join(locks, "\n")+"\n")); err != nil {
		return nil, err
	}
	set["locks"] = strings.Join(locks, ",")
	target := Target{Scope: ScopeMachine, Found: machineFound(ts)}
	// Key files dconf has not compiled are not in effect: that is a
	// failure naming what was written, not an Applied.
	notCompiled := func(err error) ([]Applied, error) {
		return nil, &writtenNotApplied{Target: target, Set: set, Err: err}
	}
	if g.run == nil {
		return notCompiled(errors.New("screenlock: dconf update not run (commands disabled), settings written but not compiled"))
	}
	if _, err := exec.LookPath("dconf"); err != nil {
		return notCompiled(fmt.Errorf("screenlock: dconf not installed, settings written but not compiled (dconf update not run): %w", err))
	}
	if out, err := g.run(ctx, "dconf", "update", g.path("etc", "dconf", "db")); err != nil {
		return notCompiled(fmt.Errorf("screenlock: dconf update: %w: %s", err, strings.TrimSpace(string(out))))
	}
	set["dconf_update"] = "ok"
	return []Applied{{Target: target, Set: set}}, nil
}

// maxCompiledDB bounds the read of the compiled database: a site's own
// settings make it a few KiB.
const maxCompiledDB = 16 << 20

// compiledState says whether the compiled database at p is one dconf
// wrote and holds our keys with their locks: "current" (its age is checked
// by the caller), "empty", "not_gvdb", "without_keys", "too_large" or
// "unreadable". It does not decode the values: the key files give them,
// and a compile newer than them holds what they say.
func compiledState(p string, size int64) string {
	switch {
	case size == 0:
		return "empty"
	case size > maxCompiledDB:
		return "too_large"
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "unreadable"
	}
	// GVDB header: "GVariant" (or byte-swapped "raVGtnai").
	if len(b) < 24 || (string(b[:8]) != "GVariant" && string(b[:8]) != "raVGtnai") {
		return "not_gvdb"
	}
	// The lock table (".locks") stores full key paths.
	if !bytes.Contains(b, []byte(".locks")) {
		return "without_keys"
	}
	for _, k := range gnomeKeys {
		if !bytes.Contains(b, []byte(k)) {
			return "without_keys"
		}
	}
	return "current"
}

// guiProcesses are process names (as /proc/PID/comm gives them, cut to 15
// bytes) of desktop shells and session managers, display managers, X
// servers and screen lockers: any of them running means a screen to lock.
// Xvfb (a virtual framebuffer, as on CI) is not one.
var guiProcesses = []string{
	"gnome-shell", "gnome-session-binary", "gnome-screensaver", "gdm", "gdm3", "gdm-x-session", "gdm-wayland-session",
	"lightdm", "sddm", "lxdm", "xdm", "slim",
	"Xorg", "Xwayland", "X",
	"plasmashell", "ksmserver", "kwin_x11", "kwin_wayland",
	"xfce4-session", "xfwm4", "cinnamon", "cinnamon-session", "mate-session", "lxsession", "lxqt-session", "budgie-wm",
	"xscreensaver", "light-locker", "xss-lock", "swayidle", "sway",
}

// graphical reports whether this machine has a graphical session or a
// locker to judge, and the first piece of evidence found:
//   - a logind session of TYPE x11 or wayland (greeters included) that is
//     not closing, from /run/systemd/sessions (read directly: loginctl
//     needs D-Bus and systemd as PID 1, which containers and minimal
//     systems lack), or
//   - a running process from guiProcesses (/proc/PID/comm).
//
// Neither default.target (Debian servers default to graphical.target too)
// nor DISPLAY (the agent is a service) says anything, so they are not used.
func (g *gnomeProbe) graphical() (string, bool) {
	dir := g.path("run", "systemd", "sessions")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		kv := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
				kv[k] = v
			}
		}
		if (kv["TYPE"] == "x11" || kv["TYPE"] == "wayland" || kv["TYPE"] == "mir") && kv["STATE"] != "closing" {
			return fmt.Sprintf("login session %s (%s, user %s)", e.Name(), kv["TYPE"], kv["USER"]), true
		}
	}
	names := map[string]bool{}
	for _, n := range guiProcesses {
		if len(n) > 15 {
			n = n[:15] // TASK_COMM_LEN - 1
		}
		names[n] = true
	}
	procs, _ := os.ReadDir(g.path("proc"))
	for _, e := range procs {
		if e.Name() == "" || e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(g.path("proc", e.Name(), "comm"))
		if err != nil {
			continue // gone since the listing
		}
		if comm := strings.TrimSpace(string(b)); names[comm] {
			return fmt.Sprintf("process %s (pid %s)", comm, e.Name()), true
		}
	}
	return "", false
}

func machineFound(ts []Target) map[string]string {
	for _, t := range ts {
		if t.Scope == ScopeMachine {
			return t.Found
		}
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// writeAtomic writes through a temp file, fsync and rename, so dconf never
// compiles half a file.
func writeAtomic(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("screenlock: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".mamori-*")
	if err != nil {
		return fmt.Errorf("screenlock: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("screenlock: write %s: %w", p, err)
	}
	return nil
}
