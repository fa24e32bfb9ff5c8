package screenlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/controlstest"
	"github.com/mamori/mamori/agent/internal/session"
	"github.com/mamori/mamori/shared/policy"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dur(d time.Duration) *time.Duration { return &d }

func TestCheck(t *testing.T) {
	w := Want{MaxIdle: 10 * time.Minute, RequirePassword: true}
	yes, no := ptr(true), ptr(false)
	for _, tc := range []struct {
		name string
		t    Target
		want string // finding key; "" = pass
	}{
		{"windows machine ok", Target{Scope: ScopeMachine, Timeout: dur(600 * time.Second)}, ""},
		{"windows machine unset", Target{Scope: ScopeMachine}, "screenlock.timeout_unset"},
		{"windows machine zero", Target{Scope: ScopeMachine, Timeout: dur(0)}, "screenlock.timeout_never"},
		{"windows machine too long", Target{Scope: ScopeMachine, Timeout: dur(601 * time.Second)}, "screenlock.timeout_too_long"},
		{"user ok", Target{Scope: ScopeUser, Enabled: yes, Secure: yes, Timeout: dur(5 * time.Minute)}, ""},
		{"user saver off", Target{Scope: ScopeUser, Enabled: no, Secure: yes, Timeout: dur(5 * time.Minute)}, "screenlock.disabled"},
		{"user no password", Target{Scope: ScopeUser, Enabled: yes, Secure: no, Timeout: dur(5 * time.Minute)}, "screenlock.no_password"},
		{"gnome not locked", Target{Scope: ScopeMachine, Enabled: yes, Secure: yes, Timeout: dur(5 * time.Minute), Locked: no}, "screenlock.not_locked"},
	} {
		f := check(tc.t, w)
		got := ""
		if f != nil {
			got = f.Key
			if f.JA == "" || f.EN == "" {
				t.Errorf("%s: finding without texts", tc.name)
			}
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	// Without require_password an insecure saver still passes.
	if f := check(Target{Scope: ScopeUser, Enabled: yes, Secure: no, Timeout: dur(time.Minute)}, Want{MaxIdle: time.Minute}); f != nil {
		t.Fatalf("got %v", f)
	}
}

func TestWinUserTarget(t *testing.T) {
	v := func(s string) regValue { return regValue{s: s, ok: true} }
	// Policy values win over the user's own; DWORD-read values arrive as decimal text.
	tg := winUserTarget("S-1-5-21-1-2-3-1001", `PC\yamada`,
		map[string]regValue{valTimeout: v("600")},
		map[string]regValue{valActive: v("1"), valSecure: v("1"), valTimeout: v("3600")})
	if *tg.Timeout != 10*time.Minute || !*tg.Enabled || !*tg.Secure || tg.Found["policy."+valTimeout] != "600" || tg.Found["user."+valActive] != "1" {
		t.Fatalf("%+v", tg)
	}
	// Nothing set: off, insecure, no timeout.
	tg = winUserTarget("S-1-5-21-1-2-3-1002", "", nil, nil)
	if *tg.Enabled || *tg.Secure || tg.Timeout != nil {
		t.Fatalf("%+v", tg)
	}
	for name, want := range map[string]bool{"S-1-5-21-1-2-3-1001": true, "S-1-5-21-1-2-3-1001_Classes": false, "S-1-5-18": false, ".DEFAULT": false} {
		if isUserSID(name) != want {
			t.Errorf("isUserSID(%q) != %v", name, want)
		}
	}
}

func TestParsers(t *testing.T) {
	if n, err := parseGVariantUint(string(read(t, "gsettings_idle-delay.txt"))); err != nil || n != 300 {
		t.Fatalf("idle-delay %d %v", n, err)
	}
	if n, err := parseGVariantUint(string(read(t, "gsettings_lock-delay.txt"))); err != nil || n != 0 {
		t.Fatalf("lock-delay %d %v", n, err)
	}
	if b, err := parseGVariantBool(string(read(t, "gsettings_lock-enabled.txt"))); err != nil || !b {
		t.Fatalf("lock-enabled %v %v", b, err)
	}
	for _, bad := range []string{"int32 5", "'300'", "", "uint32 -1", "uint32 4294967296"} {
		if _, err := parseGVariantUint(bad); err == nil {
			t.Errorf("parseGVariantUint(%q) accepted", bad)
		}
	}
	if _, err := parseGVariantBool("yes"); err == nil {
		t.Error("parseGVariantBool(yes) accepted")
	}
	for file, want := range map[string]struct {
		on    bool
		delay time.Duration
	}{"sysadminctl_delay.txt": {true, 5 * time.Minute}, "sysadminctl_immediate.txt": {true, 0}, "sysadminctl_off.txt": {false, 0}} {
		on, d, err := parseSysadminctl(read(t, file))
		if err != nil || on != want.on || d != want.delay {
			t.Errorf("%s: %v %v %v", file, on, d, err)
		}
	}
	if _, _, err := parseSysadminctl([]byte("sysadminctl: usage")); err == nil {
		t.Error("garbage sysadminctl output accepted")
	}
	for file, want := range map[string]struct {
		d  time.Duration
		ok bool
	}{"defaults_idleTime_600.txt": {10 * time.Minute, true}, "defaults_idleTime_never.txt": {0, true}, "defaults_idleTime_missing.txt": {0, false}} {
		d, ok, err := parseDefaultsIdle(read(t, file))
		if err != nil || d != want.d || ok != want.ok {
			t.Errorf("%s: %v %v %v", file, d, ok, err)
		}
	}
	kf, err := parseKeyfile(read(t, "dconf_site.keyfile"))
	if err != nil || kf["org/gnome/desktop/session"]["idle-delay"] != "uint32 900" ||
		kf["org/gnome/desktop/screensaver"]["picture-uri"] != "'file:///usr/share/backgrounds/office.png'" {
		t.Fatalf("%v %v", kf, err)
	}
	back, err := parseKeyfile(kf.render())
	if err != nil || fmt.Sprint(back) != fmt.Sprint(kf) {
		t.Fatalf("render round trip: %v %v", back, err)
	}
	for _, bad := range []string{"idle-delay=1\n", "[org\nx=1\n", "[a]\njunk\n"} {
		if _, err := parseKeyfile([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "screenlock: ") {
			t.Errorf("parseKeyfile(%q): %v", bad, err)
		}
	}
}

// gnomeRoot makes a temp root where GNOME's screensaver schema exists.
func gnomeRoot(t *testing.T) string {
	root := t.TempDir()
	schemas := filepath.Join(root, "usr", "share", "glib-2.0", "schemas")
	if err := os.MkdirAll(schemas, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(schemas, "org.gnome.desktop.screensaver.gschema.xml"), []byte("<schemalist/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestGnomeTempRoot(t *testing.T) {
	ctx := context.Background()
	if _, err := (&gnomeProbe{root: t.TempDir()}).read(ctx); !errors.Is(err, errNoGUI) {
		t.Fatalf("no GNOME: %v", err)
	}
	root := gnomeRoot(t)
	if _, err := (&gnomeProbe{root: root}).read(ctx); !errors.Is(err, errNoGUI) {
		t.Fatalf("schema but no graphical session: %v", err)
	}
	loginSession(t, root, "2", "wayland", "active")
	g := &gnomeProbe{root: root} // no commands: judge from the files
	// An admin's own key file that turns locking off.
	site := filepath.Join(root, "etc", "dconf", "db", "local.d", "50-site")
	os.MkdirAll(filepath.Dir(site), 0o755)
	os.WriteFile(site, read(t, "dconf_site.keyfile"), 0o644)
	w := Want{MaxIdle: 10 * time.Minute, RequirePassword: true}
	ts, err := g.read(ctx)
	if err != nil || len(ts) != 1 {
		t.Fatal(ts, err)
	}
	if f := check(ts[0], w); f == nil || f.Key != "screenlock.disabled" {
		t.Fatalf("site file: %+v", f)
	}
	if ts[0].Timeout == nil || *ts[0].Timeout != 930*time.Second {
		t.Fatalf("timeout = idle-delay + lock-delay: %v", ts[0].Timeout)
	}
	// Our file sorts first ("00-"), so the admin's "50-site" must go for ours to win.
	os.Remove(site)
	applied, err := g.enforce(ctx, w, ts)
	var wna *writtenNotApplied
	if !errors.As(err, &wna) || len(applied) != 0 || wna.Set[keyIdleDelay] != "uint32 600" {
		t.Fatalf("enforce without dconf update must say so, and not as applied: %v %+v", err, applied)
	}
	prof, _ := os.ReadFile(filepath.Join(root, profileFile))
	if string(prof) != "user-db:user\nsystem-db:local\n" {
		t.Fatalf("profile %q", prof)
	}
	kb, _ := os.ReadFile(filepath.Join(root, settingFile))
	kf, err := parseKeyfile(kb)
	if err != nil || kf["org/gnome/desktop/session"]["idle-delay"] != "uint32 600" ||
		kf["org/gnome/desktop/screensaver"]["lock-enabled"] != "true" || kf["org/gnome/desktop/screensaver"]["lock-delay"] != "uint32 0" {
		t.Fatalf("settings file %q %v", kb, err)
	}
	lb, _ := os.ReadFile(filepath.Join(root, locksFile))
	if locks := parseLocks(lb); len(locks) != 3 || !locks[keyIdleDelay] || !locks[keyLockEnabled] || !locks[keyLockDelay] {
		t.Fatalf("locks %q", lb)
	}
	ts, _ = g.read(ctx)
	if f := check(ts[0], w); f == nil || f.Key != "screenlock.not_locked" || ts[0].Found["compiled_db"] != "missing" {
		t.Fatalf("uncompiled db must not pass: %+v %v", f, ts[0].Found)
	}
	// What `dconf update` leaves: a compiled db newer than the key files
	// (testdata/dconf_local_mamori.gvdb is dconf's compile of our files).
	compiled(t, root, read(t, "dconf_local_mamori.gvdb"))
	ts, _ = g.read(ctx)
	if f := check(ts[0], w); f != nil {
		t.Fatalf("after enforce + compile: %+v %v", f, ts[0].Found)
	}
	// A second enforce writes the same bytes.
	g.enforce(ctx, w, ts)
	if kb2, _ := os.ReadFile(filepath.Join(root, settingFile)); string(kb2) != string(kb) {
		t.Fatal("enforce is not stable")
	}
}

// TestGsettingsAsUser runs the real runuser + gsettings path for root.
func TestGsettingsAsUser(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux")
	}
	for _, c := range []string{"runuser", "gsettings"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed", c)
		}
	}
	g := &gnomeProbe{root: "/", run: func(ctx context.Context, name string, args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, name, args...).Output()
	}}
	tg, err := g.readUser(context.Background(), "root")
	if err != nil {
		t.Skipf("gsettings cannot run here: %v", err)
	}
	if tg.Enabled == nil || tg.Timeout == nil || tg.Found["org.gnome.desktop.session.idle-delay"] == "" {
		t.Fatalf("%+v", tg)
	}
}

// fakeProbe holds settings in memory the way an OS would: enforce changes
// them, tests change them behind the control's back.
type fakeProbe struct {
	mu      sync.Mutex
	targets []Target
	err     error
	writes  int
}

func (f *fakeProbe) read(context.Context) ([]Target, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Target(nil), f.targets...), f.err
}

func (f *fakeProbe) enforce(_ context.Context, w Want, ts []Target) ([]Applied, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Applied
	for _, t := range ts {
		for i := range f.targets {
			if key(f.targets[i]) == key(t) {
				f.targets[i].Timeout = dur(w.MaxIdle)
				f.targets[i].Enabled, f.targets[i].Secure = ptr(true), ptr(true)
				f.writes++
				out = append(out, Applied{Target: t, Set: map[string]string{"timeout": w.MaxIdle.String()}})
			}
		}
	}
	return out, nil
}

func (f *fakeProbe) set(i int, d time.Duration) {
	f.mu.Lock()
	f.targets[i].Timeout = dur(d)
	f.mu.Unlock()
}

func newTest(t *testing.T, p probe, mode policy.Mode) (*Control, *controlstest.Recorder, *controlstest.FakeClock, *session.Bus) {
	clock := controlstest.NewFakeClock(t0)
	rec := &controlstest.Recorder{}
	bus := &session.Bus{}
	c := newControl(controls.Env{Emit: rec, Clock: clock, Log: zerolog.Nop()}, p, bus)
	pol := &policy.Policy{Controls: policy.Controls{Screenlock: policy.Screenlock{Mode: mode, MaxIdle: policy.Duration(10 * time.Minute), RequirePassword: true}}}
	if err := c.Apply(context.Background(), pol); err != nil {
		t.Fatal(err)
	}
	return c, rec, clock, bus
}

func TestEnforceDriftReenforce(t *testing.T) {
	p := &fakeProbe{targets: []Target{
		{Scope: ScopeMachine},
		{Scope: ScopeUser, ID: "S-1-5-21-1-2-3-1001", User: `PC\yamada`, Enabled: ptr(true), Secure: ptr(true), Timeout: dur(time.Hour)},
	}}
	c, rec, _, _ := newTest(t, p, policy.Enforce)
	ctx := context.Background()
	c.check(ctx)
	if n := len(rec.OfType(TypeEnforced)); n != 2 || len(rec.OfType(TypeDrift)) != 0 {
		t.Fatalf("first check: %d enforced, events %+v", n, rec.Events())
	}
	if st := c.Status(); st.State != controls.Pass {
		t.Fatalf("status after enforce %+v", st)
	}
	p.set(1, 30*time.Minute) // the user lengthens the timeout
	c.check(ctx)
	drift := rec.OfType(TypeDrift)
	if len(drift) != 1 || drift[0].User != `PC\yamada` || drift[0].Attrs["reason"] != "screenlock.timeout_too_long" {
		t.Fatalf("drift %+v", drift)
	}
	if n := len(rec.OfType(TypeEnforced)); n != 3 || c.Status().State != controls.Pass {
		t.Fatalf("re-enforce: %d enforced, status %+v", n, c.Status())
	}
	for _, e := range rec.Events() {
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
	}
}

func TestAuditDoesNotWrite(t *testing.T) {
	p := &fakeProbe{targets: []Target{{Scope: ScopeMachine, Timeout: dur(5 * time.Minute)}}}
	c, rec, _, _ := newTest(t, p, policy.Audit)
	c.check(context.Background())
	p.set(0, 0)
	c.check(context.Background())
	st := c.Status()
	if p.writes != 0 || st.State != controls.Fail || st.Reason != "screenlock.timeout_never" || len(rec.OfType(TypeDrift)) != 1 {
		t.Fatalf("writes %d status %+v", p.writes, st)
	}
	for _, e := range rec.Events() {
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
	}
	ev := rec.OfType(TypeStatus)
	if len(ev) != 2 || ev[1].Attrs["failing"] == nil || ev[1].Attrs["reason_ja"] == "" || ev[1].Attrs["reason_en"] == "" {
		t.Fatalf("status events %+v", ev)
	}
}

func TestUnsupportedReportedOnce(t *testing.T) {
	p := &fakeProbe{err: fmt.Errorf("screenlock: %w", errors.ErrUnsupported)}
	c, rec, clock, _ := newTest(t, p, policy.Audit)
	for i := 0; i < 5; i++ {
		c.check(context.Background())
		clock.Advance(time.Minute)
	}
	if ev := rec.OfType(TypeStatus); len(ev) != 1 || ev[0].Attrs["status"] != "unknown" || ev[0].Attrs["reason"] != "screenlock.unsupported" {
		t.Fatalf("%+v", ev)
	}
	p.err = errNoGUI
	c.check(context.Background())
	if st := c.Status(); st.State != controls.Unknown || st.ReasonEN != "no graphical session / GNOME not installed" {
		t.Fatalf("%+v", st)
	}
}

func TestRunSessionEvents(t *testing.T) {
	p := &fakeProbe{targets: []Target{{Scope: ScopeMachine, Timeout: dur(5 * time.Minute)}}}
	c, rec, clock, bus := newTest(t, p, policy.Audit)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	wait := func(cond func() bool, what string) {
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %+v", what, rec.Events())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait(func() bool { return clock.Waiters() > 0 && len(rec.OfType(TypeStatus)) == 1 }, "first check")
	for _, k := range []session.Kind{session.Logon, session.Lock, session.Unlock, session.Logoff} {
		bus.Publish(session.Change{Kind: k, SessionID: 2, User: `PC\yamada`, Time: t0})
	}
	wait(func() bool { return len(rec.OfType(TypeLogoff)) == 1 }, "session events")
	for _, typ := range []string{TypeLogon, TypeLocked, TypeUnlocked, TypeLogoff} {
		if ev := rec.OfType(typ); len(ev) != 1 || ev[0].User != `PC\yamada` || ev[0].Control != Name {
			t.Fatalf("%s: %+v", typ, ev)
		}
	}
	checks := len(rec.OfType(TypeStatus))
	p.set(0, time.Hour)
	wait(func() bool {
		if clock.Waiters() > 0 {
			clock.Advance(DefaultPollInterval)
		}
		// The status is visible a moment before its event is emitted
		// (StatusReporter.Set): wait for both.
		return c.Status().State == controls.Fail && len(rec.OfType(TypeStatus)) > checks
	}, "poll after drift")
	if len(rec.OfType(TypeStatus)) != checks+1 {
		t.Fatalf("status events %d, want %d", len(rec.OfType(TypeStatus)), checks+1)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestApplyRejects(t *testing.T) {
	c, _, _, _ := newTest(t, &fakeProbe{}, policy.Audit)
	for _, s := range []policy.Screenlock{{Mode: "sometimes"}, {Mode: policy.Enforce, MaxIdle: policy.Duration(10 * time.Second)}, {Mode: policy.Enforce, MaxIdle: policy.Duration(48 * time.Hour)}} {
		if err := c.Apply(context.Background(), &policy.Policy{Controls: policy.Controls{Screenlock: s}}); err == nil || !strings.HasPrefix(err.Error(), "screenlock: ") {
			t.Errorf("%+v: %v", s, err)
		}
	}
	if m, w := c.settings(); m != policy.Audit || w.MaxIdle != 10*time.Minute {
		t.Fatalf("bad policy adopted: %v %v", m, w)
	}
}
