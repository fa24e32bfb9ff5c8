package screenlock

import (
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
	m, err := g.readSystem()
	if err != nil {
		return nil, err
	}
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
	// dconf reads the compiled db, not the key files: it must be newer.
	compiled := "missing"
	if fi, err := os.Stat(g.path("etc", "dconf", "db", "local")); err == nil {
		compiled = "current"
		if fi.ModTime().Before(newest) {
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
	applied := []Applied{{Target: Target{Scope: ScopeMachine, Found: machineFound(ts)}, Set: set}}
	if g.run == nil {
		return applied, errors.New("screenlock: dconf update not run (commands disabled)")
	}
	if _, err := exec.LookPath("dconf"); err != nil {
		return applied, fmt.Errorf("screenlock: dconf not installed, settings written but not compiled: %w", err)
	}
	if out, err := g.run(ctx, "dconf", "update", g.path("etc", "dconf", "db")); err != nil {
		return applied, fmt.Errorf("screenlock: dconf update: %w: %s", err, strings.TrimSpace(string(out)))
	}
	set["dconf_update"] = "ok"
	return applied, nil
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
