// Package media is the removable-media control (電子媒体の持ち運び・持込み制限,
// PPC 通則編 §10-5(1),(3)): it detects removable storage as it is inserted
// and removed, identifies it (vendor, product, serial, size, file system,
// encryption), applies the media policy (registered media, approved carry-out
// windows, default allow | read_only | block), enforces it in enforce mode and
// records what was written to the medium while it was mounted (持出し記録).
//
// Each OS file must define:
//
//	func newProbe(env controls.Env) probe
//
// returning a probe whose list reports the removable storage present now and
// whose enforce/classPolicy act on it; systems without support return a probe
// whose methods fail with an error wrapping errors.ErrUnsupported.
package media

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/host"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// Name is the control's policy key and event "control".
const Name = "media"

// Event types.
const (
	TypeInserted      = "media.inserted"
	TypeRemoved       = "media.removed"
	TypeAllowed       = "media.allowed"
	TypeBlocked       = "media.blocked"
	TypeReadOnly      = "media.read_only"
	TypeEnforced      = "media.enforced" // the OS now applies the decision
	TypeEnforceFailed = "media.enforce_failed"
	TypeFileWritten   = "media.file_written"
)

// DefaultPollInterval is how often the probe lists devices: Windows services
// get no device events through kardianos, so polling is the one portable way.
const DefaultPollInterval = 1500 * time.Millisecond

// statusInterval re-reports an unchanged status.
const statusInterval = time.Hour

// Device is one removable storage device (or volume on it) as the probe sees it.
type Device struct {
	Key             string   // stable while present: sysfs name, drive letter, BSD name
	Path            string   // device path: /dev/sdb, \\.\E:, /dev/disk4
	MountPoints     []string // where its file systems are mounted
	VendorID        string   // USB idVendor, 4 hex digits, when known
	ProductID       string   // USB idProduct
	Vendor          string   // vendor string (SCSI inquiry / USB)
	Product         string   // product string
	Revision        string
	Serial          string
	SerialGenerated bool   // Windows made the serial up: not an identity
	CapacityBytes   int64  // 0 when unknown
	FS              string // vfat, exfat, ntfs, crypto_LUKS, BitLocker, ...
	Encrypted       bool   // LUKS or BitLocker To Go
	Bus             string // usb, sd, ...
	USBDevice       string // Linux: /sys/bus/usb/devices name of the USB device (e.g. 2-1)
}

// Object is the device's event object: its path and mounts.
func (d Device) Object() string {
	if len(d.MountPoints) > 0 {
		return d.Path + " " + d.MountPoints[0]
	}
	return d.Path
}

func (d Device) attrs() event.Attrs {
	a := event.Attrs{
		"vendor_id":        d.VendorID,
		"product_id":       d.ProductID,
		"vendor":           d.Vendor,
		"product":          d.Product,
		"serial":           d.Serial,
		"serial_generated": d.SerialGenerated,
		"capacity_bytes":   d.CapacityBytes,
		"fs":               d.FS,
		"encrypted":        d.Encrypted,
		"bus":              d.Bus,
	}
	if len(d.MountPoints) > 0 {
		a["mount_points"] = append([]string(nil), d.MountPoints...)
	}
	return a
}

// probe is what each OS provides.
type probe interface {
	// list returns the removable storage present now.
	list(ctx context.Context) ([]Device, error)
	// enforce makes dev follow action (policy.MediaBlock or MediaReadOnly)
	// at once and says what it did ("authorized=0", "remount ro", ...).
	enforce(ctx context.Context, dev Device, action string) (string, error)
	// classPolicy sets (or clears) the OS-wide removable-storage deny policy,
	// used when nothing may be allowed: it needs no agent to bite after boot.
	// Probes without such a policy return nil.
	classPolicy(ctx context.Context, denyRead, denyWrite bool) error
	// release undoes what enforce holds on to (Windows keeps a blocked
	// volume locked) when the device is allowed again or gone.
	release(dev Device)
}

// Control is the media control.
type Control struct {
	env    controls.Env
	probe  probe
	poll   time.Duration
	status *controls.StatusReporter
	watch  writeWatcher // file-write watching on mounts; nil = none
	// reapply wakes Run after a policy change: an approval retired or
	// expired on the server must not leave a stick usable until the poll.
	reapply chan struct{}

	mu      sync.Mutex
	pol     policy.Media
	applied bool
	seen    map[string]*tracked // by Device.Key
	lastErr error               // last list error, reported once
	failing map[string]bool     // keys whose enforcement failed

	// users names who is logged on at the PC (host.LocalUsers), asked at
	// most every usersTTL: a copy to a stick writes many files.
	users    func(context.Context) ([]string, error)
	usersAt  time.Time
	usersNow []string
}

const usersTTL = 10 * time.Second

// person fills an event's user from who is logged on at the PC: the one
// local user, or the list when there are several (who plugged the stick in
// is not known then).
func (c *Control) person(ctx context.Context, e *event.Event) {
	if c.users == nil {
		return
	}
	now := c.env.Clock.Now()
	c.mu.Lock()
	if c.usersAt.IsZero() || now.Sub(c.usersAt) >= usersTTL || now.Before(c.usersAt) {
		c.mu.Unlock()
		us, err := c.users(ctx)
		if err != nil {
			c.env.Log.Debug().Err(err).Msg("media: logged-on users")
		}
		c.mu.Lock()
		c.usersAt, c.usersNow = now, us
	}
	us := c.usersNow
	c.mu.Unlock()
	switch len(us) {
	case 0:
	case 1:
		e.User = us[0]
	default:
		e.Attrs["local_users"] = strings.Join(us, ", ")
	}
}

type tracked struct {
	dev      Device
	decision Decision
	enforced bool   // the enforcement for decision.Action succeeded
	stopW    func() // stops the file-write watch
	watching string // the mount being watched
}

// New makes the media control for this OS.
func New(env controls.Env) controls.Control {
	c := newControl(env, newProbe(env))
	c.watch = fsWatcher{clock: c.env.Clock, log: c.env.Log}
	c.users = host.LocalUsers
	return c
}

func newControl(env controls.Env, p probe) *Control {
	if env.Clock == nil {
		env.Clock = controls.RealClock{}
	}
	return &Control{
		env:     env,
		probe:   p,
		poll:    DefaultPollInterval,
		status:  &controls.StatusReporter{Control: Name, Env: env, Interval: statusInterval},
		seen:    map[string]*tracked{},
		failing: map[string]bool{},
		reapply: make(chan struct{}, 1),
	}
}

// Name returns "media".
func (c *Control) Name() string { return Name }

// Apply adopts the media section. In enforce mode it also sets the OS-wide
// deny policy when the default leaves nothing to allow, and clears it
// otherwise, so a policy change never leaves a stale deny behind.
func (c *Control) Apply(ctx context.Context, p *policy.Policy) error {
	if p == nil {
		return errors.New("media: nil policy")
	}
	m := p.Controls.Media
	if err := validate(m); err != nil {
		return err
	}
	denyRead, denyWrite := false, false
	if m.Mode == policy.Enforce && nothingAllowed(m) {
		denyRead = m.Default == policy.MediaBlock
		denyWrite = m.Default == policy.MediaBlock || m.Default == policy.MediaReadOnly
	}
	var perr error
	if m.Mode.Enabled() {
		if err := c.probe.classPolicy(ctx, denyRead, denyWrite); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			perr = err
		}
	}
	c.mu.Lock()
	c.pol = m
	c.applied = true
	c.mu.Unlock()
	select { // re-decide the devices present under the new policy now
	case c.reapply <- struct{}{}:
	default:
	}
	if perr != nil {
		_ = c.env.Emit.Emit(ctx, event.Event{
			Time: c.env.Clock.Now(), Control: Name, Type: TypeEnforceFailed, Severity: event.Warning,
			Object: "class_policy",
			Attrs:  event.Attrs{"deny_read": denyRead, "deny_write": denyWrite, "error": perr.Error()},
		})
	}
	return nil
}

func validate(m policy.Media) error {
	switch m.Mode {
	case "", policy.Off, policy.Audit, policy.Enforce:
	default:
		return fmt.Errorf("media: mode %q is not one of off, audit, enforce", m.Mode)
	}
	switch m.Default {
	case "", policy.MediaAllow, policy.MediaReadOnly, policy.MediaBlock:
	default:
		return fmt.Errorf("media: default %q is not one of allow, read_only, block", m.Default)
	}
	for i, a := range m.Approvals {
		if a.Serial == "" || !a.To.After(a.From) {
			return fmt.Errorf("media: approvals[%d]: needs a serial and to after from", i)
		}
	}
	return nil
}

// nothingAllowed: no register, serial list or approval can let a device in,
// so the OS-wide deny is exact rather than too broad.
func nothingAllowed(m policy.Media) bool {
	return (!m.AllowRegistered || len(m.Registered) == 0) && len(m.AllowSerials) == 0 && len(m.Approvals) == 0
}

// Status is the current verdict.
func (c *Control) Status() controls.Status {
	c.mu.Lock()
	on := c.pol.Mode.Enabled()
	c.mu.Unlock()
	if !on {
		return controls.PolicyOff()
	}
	return c.status.Current()
}

// blind is a probe that can tell it cannot see removable storage on this
// host (Linux: no USB bus in sysfs); it returns what is missing, or "".
type blind interface {
	unobservable() string
}

// waker is a probe that can say "look now" (Linux: kernel uevents).
type waker interface {
	wakeups(ctx context.Context) <-chan struct{}
}

// Run polls the probe until ctx is done, and right away when the probe
// signals a device change or a new policy is applied.
func (c *Control) Run(ctx context.Context) error {
	defer c.stopAll()
	var wake <-chan struct{}
	if w, ok := c.probe.(waker); ok {
		wake = w.wakeups(ctx)
	}
	for {
		c.tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-c.reapply:
		case <-c.env.Clock.After(c.poll):
		}
	}
}

// stopAll stops every file-write watch. The stops run outside c.mu: a
// stopping watch flushes into fileWritten, which takes c.mu.
func (c *Control) stopAll() {
	var stops []func()
	c.mu.Lock()
	for _, t := range c.seen {
		if t.stopW != nil {
			stops = append(stops, t.stopW)
			t.stopW, t.watching = nil, ""
		}
	}
	c.mu.Unlock()
	for _, s := range stops {
		s()
	}
}

// tick lists devices once, emits insert/remove/decision events and enforces.
// Exposed to tests through Run with a fake clock, and directly.
func (c *Control) tick(ctx context.Context) {
	c.mu.Lock()
	pol, applied := c.pol, c.applied
	c.mu.Unlock()
	if !applied || !pol.Mode.Enabled() {
		c.forgetAll(ctx)
		return
	}
	devs, err := c.probe.list(ctx)
	if err != nil {
		c.reportListError(ctx, err)
		return
	}
	c.mu.Lock()
	c.lastErr = nil
	c.mu.Unlock()
	now := c.env.Clock.Now()
	present := map[string]bool{}
	sort.Slice(devs, func(i, j int) bool { return devs[i].Key < devs[j].Key })
	for _, d := range devs {
		present[d.Key] = true
		c.mu.Lock()
		t := c.seen[d.Key]
		c.mu.Unlock()
		dec := decide(d, pol, now)
		if t == nil {
			t = &tracked{dev: d}
			if err := c.emit(ctx, TypeInserted, event.Info, d, dec, nil); err != nil {
				c.env.Log.Error().Err(err).Msg("media: record insert")
				continue // not recorded: try again next tick, do not act unrecorded
			}
			c.mu.Lock()
			c.seen[d.Key] = t
			c.mu.Unlock()
			c.act(ctx, t, d, dec, pol)
			continue
		}
		mountsChanged := !sameStrings(t.dev.MountPoints, d.MountPoints)
		c.mu.Lock()
		t.dev = d
		c.mu.Unlock()
		if mountsChanged && t.decision.Action == policy.MediaReadOnly {
			t.enforced = false // a new mount must be made read-only too
		}
		if t.enforced && pol.Mode != policy.Enforce { // enforce -> audit: let go
			c.probe.release(d)
			t.enforced = false
		}
		if dec != t.decision || (!t.enforced && pol.Mode == policy.Enforce && dec.Action != policy.MediaAllow) || mountsChanged {
			c.act(ctx, t, d, dec, pol)
		}
	}
	c.mu.Lock()
	var gone []*tracked
	for k, t := range c.seen {
		if !present[k] {
			gone = append(gone, t)
		}
	}
	c.mu.Unlock()
	sort.Slice(gone, func(i, j int) bool { return gone[i].dev.Key < gone[j].dev.Key })
	for _, t := range gone {
		if err := c.emit(ctx, TypeRemoved, event.Info, t.dev, t.decision, nil); err != nil {
			c.env.Log.Error().Err(err).Msg("media: record removal")
			continue // keep tracking: the removal is recorded on a later tick
		}
		if t.stopW != nil {
			t.stopW()
		}
		c.probe.release(t.dev)
		c.mu.Lock()
		delete(c.seen, t.dev.Key)
		delete(c.failing, t.dev.Key)
		c.mu.Unlock()
	}
	c.setStatus(ctx, len(devs), pol.Mode)
}

// act records the decision for t and, in enforce mode, enforces it. The
// decision event is durable before the device is touched.
func (c *Control) act(ctx context.Context, t *tracked, d Device, dec Decision, pol policy.Media) {
	changed := dec != t.decision || t.decision.Action == ""
	if changed {
		typ, sev := TypeAllowed, event.Info
		switch dec.Action {
		case policy.MediaBlock:
			typ, sev = TypeBlocked, event.Violation
		case policy.MediaReadOnly:
			typ, sev = TypeReadOnly, event.Warning
		}
		extra := event.Attrs{"mode": string(pol.Mode)}
		if err := c.emit(ctx, typ, sev, d, dec, extra); err != nil {
			c.env.Log.Error().Err(err).Msg("media: record decision")
			return
		}
		if t.enforced && dec.Action != t.decision.Action {
			c.probe.release(d)
		}
		c.mu.Lock()
		t.decision = dec
		c.mu.Unlock()
		t.enforced = false
	}
	c.syncWatch(ctx, t, d, pol)
	if pol.Mode != policy.Enforce || dec.Action == policy.MediaAllow || t.enforced {
		return
	}
	c.mu.Lock()
	alreadyFailed := c.failing[d.Key]
	c.mu.Unlock()
	how, err := c.probe.enforce(ctx, d, dec.Action)
	if err != nil {
		c.mu.Lock()
		c.failing[d.Key] = true
		c.mu.Unlock()
		if !alreadyFailed { // one event per device, not one per poll
			_ = c.emit(ctx, TypeEnforceFailed, event.Violation, d, dec,
				event.Attrs{"action": dec.Action, "error": err.Error()})
		}
		return
	}
	t.enforced = true
	c.mu.Lock()
	delete(c.failing, d.Key)
	c.mu.Unlock()
	_ = c.emit(ctx, TypeEnforced, event.Info, d, dec, event.Attrs{"enforcement": how})
}

func (c *Control) emit(ctx context.Context, typ string, sev event.Severity, d Device, dec Decision, extra event.Attrs) error {
	a := d.attrs()
	if dec.Action != "" {
		a["action"] = dec.Action
		a["reason"] = dec.Reason
	}
	if dec.ApprovalID != "" {
		a["approval_id"] = dec.ApprovalID
	}
	for k, v := range extra {
		a[k] = v
	}
	e := event.Event{
		Time: c.env.Clock.Now(), Control: Name, Type: typ, Severity: sev,
		Object: d.Object(), RegisterID: dec.RegisterID, Attrs: a,
	}
	c.person(ctx, &e)
	return c.env.Emit.Emit(ctx, e)
}

func (c *Control) reportListError(ctx context.Context, err error) {
	c.mu.Lock()
	first := c.lastErr == nil
	c.lastErr = err
	c.mu.Unlock()
	if errors.Is(err, errors.ErrUnsupported) {
		if first {
			c.env.Log.Info().Err(err).Msg("media: not supported here")
		}
		_ = c.status.Set(ctx, controls.Status{
			State: controls.Unknown, Reason: "media.unsupported",
			ReasonJA: "この OS では媒体の検出ができません", ReasonEN: "removable media detection is not supported on this OS",
		}, nil)
		return
	}
	if first {
		c.env.Log.Warn().Err(err).Msg("media: list devices")
	}
	_ = c.status.Set(ctx, controls.Status{
		State: controls.Unknown, Reason: "media.probe_failed",
		ReasonJA: "媒体の一覧を取得できません", ReasonEN: "cannot list removable media: " + err.Error(),
	}, nil)
}

// setStatus reports the verdict after a tick that saw n devices. A pass
// always says why: evidence must read on its own.
func (c *Control) setStatus(ctx context.Context, n int, mode policy.Mode) {
	c.mu.Lock()
	failing := len(c.failing)
	c.mu.Unlock()
	attrs := event.Attrs{"devices": n}
	var st controls.Status
	if failing > 0 {
		st = controls.Status{State: controls.Fail, Reason: "media.enforce_failed",
			ReasonJA: "媒体の制限を適用できませんでした", ReasonEN: "could not enforce the media policy on " + strconv.Itoa(failing) + " device(s)"}
	} else if b, ok := c.probe.(blind); ok && n == 0 {
		// "0 devices" where none could ever be seen proves nothing.
		if missing := b.unobservable(); missing != "" {
			st = controls.Status{State: controls.Unknown, Reason: "media.unobservable",
				ReasonJA: "この端末では外部媒体を検出・制限できません（" + missing + " がありません）",
				ReasonEN: "removable storage cannot be observed or blocked on this host: " + missing + " missing"}
		}
	}
	if st.State == "" {
		switch {
		case n == 0:
			st = controls.Status{State: controls.Pass, Reason: "media.none_attached",
				ReasonJA: "接続中の外部媒体はありません", ReasonEN: "no removable storage attached"}
		case mode == policy.Enforce:
			st = controls.Status{State: controls.Pass, Reason: "media.policy_applied",
				ReasonJA: "接続中の外部媒体 " + strconv.Itoa(n) + " 台にポリシーを適用しています（許可・読み取り専用・ブロック）",
				ReasonEN: "the media policy is applied to the " + strconv.Itoa(n) + " attached device(s) (allowed, read-only or blocked)"}
		default:
			st = controls.Status{State: controls.Pass, Reason: "media.recorded",
				ReasonJA: "接続中の外部媒体 " + strconv.Itoa(n) + " 台を記録しています（監査モードのため制限はしません）",
				ReasonEN: strconv.Itoa(n) + " attached device(s) recorded (audit mode: nothing is restricted)"}
		}
	}
	_ = c.status.Set(ctx, st, attrs)
}

// forgetAll drops tracking when the control is off; no events, the control
// is not observing.
func (c *Control) forgetAll(ctx context.Context) {
	c.stopAll()
	c.mu.Lock()
	for _, t := range c.seen {
		c.probe.release(t.dev)
	}
	c.seen = map[string]*tracked{}
	c.failing = map[string]bool{}
	c.mu.Unlock()
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
