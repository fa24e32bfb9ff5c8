package screenlock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/controlstest"
	"github.com/mamori/mamori/agent/internal/session"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// loginSession writes a logind session record under root, as
// /run/systemd/sessions/<id> holds it.
func loginSession(t *testing.T, root, id, typ, state string) {
	writeFile(t, filepath.Join(root, "run", "systemd", "sessions", id), []byte(
		"# This is private data. Do not parse.\nUID=1000\nUSER=yamada\nACTIVE=1\nIS_DISPLAY=1\nSTATE="+state+
			"\nREMOTE=0\nTYPE="+typ+"\nORIGINAL_TYPE="+typ+"\nCLASS=user\nSEAT=seat0\n"))
}

func process(t *testing.T, root, pid, comm string) {
	writeFile(t, filepath.Join(root, "proc", pid, "comm"), []byte(comm+"\n"))
}

// compiled puts a compiled dconf database at root, newer than the key files.
func compiled(t *testing.T, root string, b []byte) {
	db := filepath.Join(root, "etc", "dconf", "db", "local")
	writeFile(t, db, b)
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(db, later, later); err != nil {
		t.Fatal(err)
	}
}

// enforcedRoot is a temp root with the GNOME schema and the files mode
// enforce writes (compiled database not yet there).
func enforcedRoot(t *testing.T) (string, *gnomeProbe) {
	root := gnomeRoot(t)
	g := &gnomeProbe{root: root}
	w := Want{MaxIdle: 10 * time.Minute, RequirePassword: true}
	g.enforce(context.Background(), w, []Target{{Scope: ScopeMachine}})
	return root, g
}

// TestGraphicalEvidence: what counts as a graphical session or locker to
// judge: a logind x11/wayland session that is not closing, or a running
// desktop shell, display manager, X server or locker. Text consoles, ssh
// sessions and a virtual framebuffer do not.
func TestGraphicalEvidence(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(root string)
		want  bool
	}{
		{"nothing", func(string) {}, false},
		{"tty session", func(r string) { loginSession(t, r, "3", "tty", "active") }, false},
		{"ssh session", func(r string) { loginSession(t, r, "c1", "unspecified", "online") }, false},
		{"wayland session", func(r string) { loginSession(t, r, "2", "wayland", "active") }, true},
		{"x11 session", func(r string) { loginSession(t, r, "5", "x11", "online") }, true},
		{"closing x11 session", func(r string) { loginSession(t, r, "5", "x11", "closing") }, false},
		{"gnome-shell", func(r string) { process(t, r, "1234", "gnome-shell") }, true},
		{"gdm greeter", func(r string) { process(t, r, "812", "gdm3") }, true},
		{"plasma", func(r string) { process(t, r, "99", "plasmashell") }, true},
		{"gnome-session (comm truncated)", func(r string) { process(t, r, "77", "gnome-session-b") }, true},
		{"xvfb and a shell", func(r string) { process(t, r, "40", "Xvfb"); process(t, r, "41", "bash") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.setup(root)
			ev, ok := (&gnomeProbe{root: root}).graphical()
			if ok != tc.want {
				t.Fatalf("graphical = %v (%q), want %v", ok, ev, tc.want)
			}
			if ok && ev == "" {
				t.Fatal("no evidence named")
			}
		})
	}
}

// TestHeadlessEnforcedIsNoGUI replays the field report: a headless box
// with gsettings-desktop-schemas installed, after enforce wrote the dconf
// files and an (empty) compiled database exists, must report unknown
// screenlock.no_gui, not pass.
func TestHeadlessEnforcedIsNoGUI(t *testing.T) {
	root, _ := enforcedRoot(t)
	compiled(t, root, nil)
	g := &gnomeProbe{root: root}
	if ts, err := g.read(context.Background()); !errors.Is(err, errNoGUI) {
		t.Fatalf("headless read: %+v %v, want errNoGUI", ts, err)
	}
	c, rec, _, _ := newTest(t, g, policy.Enforce)
	c.check(context.Background())
	if st := c.Status(); st.State != controls.Unknown || st.Reason != "screenlock.no_gui" {
		t.Fatalf("status %+v", st)
	}
	if n := len(rec.OfType(TypeEnforced)) + len(rec.OfType(TypeEnforceFailed)); n != 0 {
		t.Fatalf("enforced on a machine with no screen: %+v", rec.Events())
	}
}

// TestEmptyCompiledDBNeverPasses: the compiled database must be dconf's
// (GVDB) and hold the locked keys; an empty file or a database compiled
// from no key files does not pass.
func TestEmptyCompiledDBNeverPasses(t *testing.T) {
	w := Want{MaxIdle: 10 * time.Minute, RequirePassword: true}
	for _, tc := range []struct {
		name string
		db   []byte
		pass bool
	}{
		{"empty file", nil, false},
		{"not gvdb", []byte("not a database"), false},
		{"dconf compile of an empty dir", read(t, "dconf_local_empty.gvdb"), false},
		{"dconf compile of our key files", read(t, "dconf_local_mamori.gvdb"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, g := enforcedRoot(t)
			loginSession(t, root, "2", "wayland", "active")
			compiled(t, root, tc.db)
			ts, err := g.read(context.Background())
			if err != nil || len(ts) != 1 {
				t.Fatal(ts, err)
			}
			f := check(ts[0], w)
			if (f == nil) != tc.pass {
				t.Fatalf("finding %+v, found %v", f, ts[0].Found)
			}
			if !tc.pass && f.Key != "screenlock.not_locked" {
				t.Fatalf("finding %+v", f)
			}
		})
	}
}

// TestEnforceWithoutDconfIsOnlyFailure: key files written but not compiled
// are not in effect, so the control records screenlock.enforce_failed
// (naming what it wrote), never screenlock.enforced just before it.
func TestEnforceWithoutDconfIsOnlyFailure(t *testing.T) {
	root := gnomeRoot(t)
	loginSession(t, root, "2", "wayland", "active")
	g := &gnomeProbe{root: root} // no commands: dconf update cannot run
	c, rec, _, _ := newTest(t, g, policy.Enforce)
	c.check(context.Background())
	if ev := rec.OfType(TypeEnforced); len(ev) != 0 {
		t.Fatalf("enforced reported for settings not in effect: %+v", ev)
	}
	failed := rec.OfType(TypeEnforceFailed)
	if len(failed) != 1 || !strings.Contains(failed[0].Attrs["error"].(string), "dconf update") {
		t.Fatalf("enforce_failed %+v", failed)
	}
	if set, _ := failed[0].Attrs["written"].(event.Attrs); set == nil || set[keyIdleDelay] != "uint32 600" {
		t.Fatalf("enforce_failed does not say what was written: %+v", failed[0].Attrs)
	}
	if st := c.Status(); st.State != controls.Fail || st.Reason != "screenlock.not_locked" {
		t.Fatalf("status %+v", st)
	}
	for _, e := range rec.Events() {
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
	}
}

// TestRealProbeOnThisMachine runs the production probe on this machine.
// On a headless one (no graphical session, no desktop processes) it must
// say no_gui whatever is installed; in enforce mode nothing is written,
// since the read fails before any enforcement.
func TestRealProbeOnThisMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux probe")
	}
	if ev, ok := (&gnomeProbe{root: "/"}).graphical(); ok {
		t.Skipf("a graphical session runs here (%s)", ev)
	}
	env := controls.Env{Emit: &controlstest.Recorder{}, Clock: controlstest.NewFakeClock(t0), Log: zerolog.Nop()}
	p := newProbe(env)
	if ts, err := p.read(context.Background()); !errors.Is(err, errNoGUI) {
		t.Fatalf("headless read: %+v %v", ts, err)
	}
	c := newControl(env, p, &session.Bus{})
	pol := &policy.Policy{Controls: policy.Controls{Screenlock: policy.Screenlock{Mode: policy.Audit, MaxIdle: policy.Duration(10 * time.Minute), RequirePassword: true}}}
	if err := c.Apply(context.Background(), pol); err != nil {
		t.Fatal(err)
	}
	c.check(context.Background())
	if st := c.Status(); st.State != controls.Unknown || st.Reason != "screenlock.no_gui" {
		t.Fatalf("status on this headless machine %+v", st)
	}
}
