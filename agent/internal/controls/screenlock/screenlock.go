// Package screenlock is the screen-lock control (離席時の画面ロック, PPC 通則編
// §10-5(2)): it checks that the machine and every logged-on user lock the
// screen with a password after at most the policy's max_idle, re-applies
// the settings in enforce mode when they drift, and records lock, unlock,
// logon and logoff as events.
//
// Each OS file must define:
//
//	func newProbe(env controls.Env) probe
//
// returning a probe whose read reports the machine-wide and per-user
// settings as Targets and whose enforce writes the policy's settings.
// Windows reads and writes the registry (InactivityTimeoutSecs and the
// per-user Control Panel\Desktop policy values under HKU\<SID>); Linux the
// GNOME dconf system database and its locks; macOS reads sysadminctl and
// the console user's screensaver defaults and does not enforce. Systems
// without support return errors wrapping errors.ErrUnsupported.
package screenlock

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/session"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// Name is the control's policy key and event "control".
const Name = "screenlock"

// Event types.
const (
	TypeStatus        = "screenlock.status"
	TypeEnforced      = "screenlock.enforced"
	TypeEnforceFailed = "screenlock.enforce_failed"
	TypeDrift         = "screenlock.drift"
	TypeLocked        = "screenlock.locked"
	TypeUnlocked      = "screenlock.unlocked"
	TypeLogon         = "session.logon"
	TypeLogoff        = "session.logoff"
)

const (
	// DefaultPollInterval is how often settings are re-read: the registry
	// and dconf give no portable change notification a service can rely on.
	DefaultPollInterval = time.Minute
	statusInterval      = time.Hour
)

// Scopes of a Target.
const (
	ScopeMachine = "machine"
	ScopeUser    = "user"
)

// Target is one place screen locking is configured: the machine or one
// user. Nil fields do not apply on that platform (Windows' machine
// inactivity limit has no "enabled" switch: set means on).
type Target struct {
	Scope   string // machine | user
	ID      string // SID on Windows, user name elsewhere; "" for the machine
	User    string // account name when known
	Enabled *bool  // screen saver / lock on idle is on
	Secure  *bool  // a password is needed to resume
	Timeout *time.Duration
	Locked  *bool             // Linux: users cannot override (dconf locks)
	Found   map[string]string // raw values and where they came from, for events
}

// Want is what enforcement writes.
type Want struct {
	MaxIdle         time.Duration
	RequirePassword bool
}

// probe reads and enforces the OS settings.
type probe interface {
	// read returns the machine target (if the OS has one) and one target
	// per logged-on user.
	read(ctx context.Context) ([]Target, error)
	// enforce writes w to the given targets and returns what it set, per
	// target, as key -> value.
	enforce(ctx context.Context, w Want, ts []Target) ([]Applied, error)
}

// Applied is what enforce wrote to one target.
type Applied struct {
	Target Target
	Set    map[string]string
}

// Finding is why a target fails, as a message key plus texts.
type Finding struct {
	Target Target
	Key    string
	JA, EN string
}

// check judges one target against the policy. It returns nil when the
// target passes.
func check(t Target, w Want) *Finding {
	f := func(key, ja, en string) *Finding { return &Finding{Target: t, Key: key, JA: ja, EN: en} }
	switch {
	case t.Enabled != nil && !*t.Enabled:
		return f("screenlock.disabled", "アイドル時の画面ロック（スクリーンセーバー）が無効です", "idle screen lock (screen saver) is off")
	case w.RequirePassword && t.Secure != nil && !*t.Secure:
		return f("screenlock.no_password", "画面ロックの解除にパスワードが不要です", "resuming does not require a password")
	case t.Timeout == nil:
		return f("screenlock.timeout_unset", "アイドル時間の上限が設定されていません", "no idle timeout is set")
	case *t.Timeout <= 0:
		return f("screenlock.timeout_never", "アイドル時間の上限が「なし」です", "the idle timeout is never")
	case *t.Timeout > w.MaxIdle:
		return f("screenlock.timeout_too_long", "アイドル時間の上限がポリシーより長いです", "the idle timeout is longer than the policy allows")
	case t.Locked != nil && !*t.Locked:
		return f("screenlock.not_locked", "設定がロックされておらず、利用者が変更できます", "the settings are not locked; users can change them")
	}
	return nil
}

// Control is the screen-lock control.
type Control struct {
	env   controls.Env
	probe probe
	bus   *session.Bus
	poll  time.Duration
	rep   *controls.StatusReporter
	wake  chan struct{}

	mu   sync.Mutex
	mode policy.Mode
	want Want

	// Owned by Run.
	lastOK             map[string]bool // target key -> passed at the last read
	unsupported        bool            // reported once
	enforceUnsupported bool
}

// New makes the screen-lock control.
func New(env controls.Env) controls.Control {
	return newControl(env, newProbe(env), session.Default)
}

func newControl(env controls.Env, p probe, bus *session.Bus) *Control {
	if env.Clock == nil {
		env.Clock = controls.RealClock{}
	}
	return &Control{env: env, probe: p, bus: bus, poll: DefaultPollInterval,
		rep:  &controls.StatusReporter{Control: Name, Env: env, Interval: statusInterval},
		wake: make(chan struct{}, 1), mode: policy.Off, lastOK: map[string]bool{}}
}

// Name returns "screenlock".
func (c *Control) Name() string { return Name }

// Status is the current verdict.
func (c *Control) Status() controls.Status {
	return c.rep.Current()
}

// Apply validates and adopts the screenlock section.
func (c *Control) Apply(ctx context.Context, p *policy.Policy) error {
	s := p.Controls.Screenlock
	mode := s.Mode
	if mode == "" {
		mode = policy.Off
	}
	if mode != policy.Off && !mode.Enabled() {
		return fmt.Errorf("screenlock: mode %q: use off, audit or enforce", s.Mode)
	}
	idle := s.MaxIdle.D()
	if idle == 0 {
		idle = policy.DefaultMaxIdle
	}
	if err := policy.CheckMaxIdle(idle); mode.Enabled() && err != nil {
		return fmt.Errorf("screenlock: max_idle: %w", err)
	}
	c.mu.Lock()
	c.mode, c.want = mode, Want{MaxIdle: idle, RequirePassword: s.RequirePassword}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

func (c *Control) settings() (policy.Mode, Want) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mode, c.want
}

// Run checks (and enforces) on start, on every poll and on logon, and
// records session changes until ctx is done.
func (c *Control) Run(ctx context.Context) error {
	changes := c.bus.Subscribe()
	defer c.bus.Unsubscribe(changes)
	var tick <-chan time.Time
	for recheck := true; ; {
		if recheck {
			c.check(ctx)
			tick = c.env.Clock.After(c.poll) // the poll restarts only after a check
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
			recheck = true
		case <-tick:
			recheck = true
		case ch := <-changes:
			c.sessionEvent(ctx, ch)
			recheck = ch.Kind == session.Logon // a new user's hive is worth a look; the rest wait for the poll
		}
	}
}

func (c *Control) sessionEvent(ctx context.Context, ch session.Change) {
	typ := map[session.Kind]string{session.Lock: TypeLocked, session.Unlock: TypeUnlocked,
		session.Logon: TypeLogon, session.Logoff: TypeLogoff}[ch.Kind]
	if typ == "" {
		return
	}
	t := ch.Time
	if t.IsZero() {
		t = c.env.Clock.Now()
	}
	c.emit(ctx, event.Event{Time: t, Type: typ, Severity: event.Info, User: ch.User,
		Attrs: event.Attrs{"session_id": int64(ch.SessionID)}})
}

func key(t Target) string { return t.Scope + "/" + t.ID }

// check reads, judges, enforces where asked and sets the status.
func (c *Control) check(ctx context.Context) {
	mode, want := c.settings()
	if !mode.Enabled() {
		c.setStatus(ctx, controls.PolicyOff(), nil)
		return
	}
	ts, err := c.probe.read(ctx)
	if err != nil {
		c.readFailed(ctx, err)
		return
	}
	c.unsupported = false
	findings := c.judge(ctx, ts, want)
	if mode == policy.Enforce && len(findings) > 0 {
		var bad []Target
		for _, f := range findings {
			bad = append(bad, f.Target)
		}
		applied, err := c.probe.enforce(ctx, want, bad)
		for _, a := range applied {
			set := event.Attrs{}
			for k, v := range a.Set {
				set[k] = v
			}
			c.emit(ctx, event.Event{Type: TypeEnforced, Severity: event.Info, User: a.Target.User,
				Object: a.Target.Scope + ":" + a.Target.ID, Attrs: event.Attrs{"scope": a.Target.Scope,
					"id": a.Target.ID, "set": set, "found": foundAttrs(a.Target)}})
		}
		if err != nil && errors.Is(err, errors.ErrUnsupported) {
			if !c.enforceUnsupported { // once, not every poll
				c.enforceUnsupported = true
				c.emit(ctx, event.Event{Type: TypeEnforceFailed, Severity: event.Warning, Attrs: event.Attrs{"error": err.Error()}})
			}
		} else if err != nil {
			a := event.Attrs{"error": err.Error()}
			var wna *writtenNotApplied
			if errors.As(err, &wna) {
				written := event.Attrs{}
				for k, v := range wna.Set {
					written[k] = v
				}
				a["written"], a["scope"], a["id"] = written, wna.Target.Scope, wna.Target.ID
			}
			c.emit(ctx, event.Event{Type: TypeEnforceFailed, Severity: event.Violation, Attrs: a})
			c.env.Log.Warn().Err(err).Msg("screenlock enforce")
		}
		var wna *writtenNotApplied
		if len(applied) > 0 || errors.As(err, &wna) { // files changed: judge what is there now
			if ts2, err := c.probe.read(ctx); err == nil {
				ts = ts2
				findings = c.judge(ctx, ts, want)
			}
		}
	}
	c.report(ctx, ts, findings, want)
}

// judge checks every target and emits screenlock.drift for a target that
// passed at the last read and fails now.
func (c *Control) judge(ctx context.Context, ts []Target, w Want) []Finding {
	var out []Finding
	for _, t := range ts {
		f := check(t, w)
		k := key(t)
		if f != nil {
			if c.lastOK[k] {
				c.emit(ctx, event.Event{Type: TypeDrift, Severity: event.Warning, User: t.User,
					Object: t.Scope + ":" + t.ID, Attrs: event.Attrs{"scope": t.Scope, "id": t.ID,
						"reason": f.Key, "found": foundAttrs(t)}})
			}
			out = append(out, *f)
		}
		c.lastOK[k] = f == nil
	}
	return out
}

func foundAttrs(t Target) event.Attrs {
	a := event.Attrs{}
	for k, v := range t.Found {
		a[k] = v
	}
	return a
}

func (c *Control) report(ctx context.Context, ts []Target, fs []Finding, w Want) {
	attrs := event.Attrs{"max_idle": w.MaxIdle.String(), "targets": int64(len(ts))}
	if len(ts) == 0 {
		c.setStatus(ctx, controls.Status{State: controls.Unknown, Reason: "screenlock.nothing_to_check",
			ReasonJA: "確認できる画面ロック設定がありません", ReasonEN: "no screen lock settings to check"}, attrs)
		return
	}
	if len(fs) == 0 {
		c.setStatus(ctx, controls.Status{State: controls.Pass, Reason: "screenlock.ok",
			ReasonJA: "アイドル時にパスワード付きで画面がロックされます", ReasonEN: "the screen locks with a password when idle"}, attrs)
		return
	}
	sort.Slice(fs, func(i, j int) bool { return key(fs[i].Target) < key(fs[j].Target) })
	var list []any
	for _, f := range fs {
		list = append(list, event.Attrs{"scope": f.Target.Scope, "id": f.Target.ID, "user": f.Target.User, "reason": f.Key})
	}
	attrs["failing"] = list
	f := fs[0]
	who, whoJA := f.Target.Scope, "ユーザー"
	if f.Target.Scope == ScopeMachine {
		whoJA = "端末全体の設定"
	}
	if id := strings.TrimSpace(f.Target.User + " " + f.Target.ID); id != "" {
		who += " " + id
		whoJA += " " + id
	}
	// The Japanese reason is all Japanese: a manager reads it on 概要.
	c.setStatus(ctx, controls.Status{State: controls.Fail, Reason: f.Key,
		ReasonJA: f.JA + "（" + whoJA + "）", ReasonEN: f.EN + " (" + who + ")"}, attrs)
}

func (c *Control) readFailed(ctx context.Context, err error) {
	if errors.Is(err, errors.ErrUnsupported) || errors.Is(err, errNoGUI) {
		if !c.unsupported {
			c.env.Log.Info().Err(err).Msg("screenlock: not checked on this system")
		}
		c.unsupported = true
		key, ja, en := "screenlock.unsupported", "この OS では画面ロックを確認できません", "screen lock cannot be checked on this system"
		if errors.Is(err, errNoGUI) {
			key, ja, en = "screenlock.no_gui", "グラフィカルセッションがない、または GNOME が入っていません", "no graphical session / GNOME not installed"
		}
		c.setStatus(ctx, controls.Status{State: controls.Unknown, Reason: key, ReasonJA: ja, ReasonEN: en},
			event.Attrs{"detail": err.Error()})
		return
	}
	c.env.Log.Warn().Err(err).Msg("screenlock read")
	c.setStatus(ctx, controls.Status{State: controls.Unknown, Reason: "screenlock.read_failed",
		ReasonJA: "画面ロック設定を読めません", ReasonEN: "screen lock settings cannot be read"},
		event.Attrs{"error": err.Error()})
}

// writtenNotApplied is an enforce error for a target whose settings were
// written but are not in effect (Linux: key files that dconf update did
// not compile). The control records it as enforce_failed with what was
// written, never as enforced.
type writtenNotApplied struct {
	Target Target
	Set    map[string]string
	Err    error
}

func (e *writtenNotApplied) Error() string { return e.Err.Error() }
func (e *writtenNotApplied) Unwrap() error { return e.Err }

// errNoGUI says there is no desktop to lock (a server without GNOME).
var errNoGUI = errors.New("screenlock: no graphical session / GNOME not installed")

func (c *Control) setStatus(ctx context.Context, st controls.Status, attrs event.Attrs) {
	if err := c.rep.Set(ctx, st, attrs); err != nil {
		c.env.Log.Error().Err(err).Msg("screenlock status not recorded")
	}
}

func (c *Control) emit(ctx context.Context, e event.Event) {
	e.Control = Name
	if e.Time.IsZero() {
		e.Time = c.env.Clock.Now()
	}
	if err := c.env.Emit.Emit(ctx, e); err != nil {
		c.env.Log.Error().Err(err).Str("type", e.Type).Msg("screenlock event not recorded")
	}
}

func ptr[T any](v T) *T { return &v }
