// Package posture is the security-posture control (不正アクセス・漏えい防止,
// PPC 通則編 §10-6(c),(d); JIS Q 15001 Q10-20, Q10-21): it checks disk
// encryption, anti-virus (present, running, signature age), OS update age
// and the host firewall, and reports the verdict as posture.status events.
// It enforces nothing.
//
// Each OS file must define:
//
//	func newProbe(env controls.Env) probe
//
// returning a probe that reads the OS facts (registry, WMI, sysfs, command
// output) and hands the bytes to the pure parse functions in parse.go. A
// check a system cannot make fails with an error wrapping
// errors.ErrUnsupported; the control then reports it unknown, logged once.
package posture

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// Name is the control's policy key and event "control".
const Name = "posture"

// Defaults for how often the control looks and re-reports.
const (
	DefaultCheckInterval  = 15 * time.Minute // probe the host this often; a change is reported at once
	DefaultReportInterval = time.Hour        // re-emit an unchanged status this often
)

// Check names: attrs keys and parts of reason keys.
const (
	CheckDisk     = "disk_encryption"
	CheckAV       = "antivirus"
	CheckUpdate   = "os_update"
	CheckFirewall = "firewall"
)

// diskFact is what the probe found about the volumes it checks (the system
// volume; on Windows every fixed volume with a drive letter).
type diskFact struct {
	Encrypted   bool
	Method      string   // bitlocker, luks1, luks2, filevault
	Volume      string   // C:, /, ... (space-separated when several)
	Unencrypted []string // volumes found unencrypted when several are checked
}

// avFact describes the anti-virus product found (Product empty: none).
type avFact struct {
	Product    string
	Running    bool
	Signatures time.Time // when signatures were last updated; zero when unknown
	Outdated   bool      // the product itself says its signatures are out of date
}

// updateFact says when OS updates were last installed: the last run of
// the system's upgrade (apt upgrade, unattended-upgrades, dnf upgrade,
// Windows hotfixes, softwareupdate), never mere package activity.
type updateFact struct {
	Last   time.Time
	Source string // where the time was read
	Detail string // the run, e.g. "apt-get -y upgrade (12 packages upgraded)"
	// NoneSince, when Last is zero: the record (Source) goes back to this
	// time and holds no upgrade run since, so the last one, if any, is older.
	NoneSince time.Time
}

// firewallFact says whether the host firewall filters inbound traffic.
type firewallFact struct {
	On     bool
	Detail string // e.g. "Domain=on Standard=on Public=off", "nftables"
}

// probe reads the host's facts; every method may return an error wrapping
// errors.ErrUnsupported where the OS gives no way to tell.
type probe interface {
	diskEncryption(ctx context.Context) (diskFact, error)
	antivirus(ctx context.Context) (avFact, error)
	lastUpdate(ctx context.Context) (updateFact, error)
	firewall(ctx context.Context) (firewallFact, error)
}

// whyError is a probe error that says in both languages why a check
// cannot tell; the check's texts name it.
type whyError struct {
	err    error
	ja, en string
}

func (e *whyError) Error() string { return e.err.Error() }
func (e *whyError) Unwrap() error { return e.err }

// why wraps err with the texts that explain it to a person.
func why(err error, ja, en string) error { return &whyError{err: err, ja: ja, en: en} }

// errNotDetected: the check ran but found no product it knows, which on
// this OS does not prove there is none (unknown, not fail).
var errNotDetected = errors.New("posture: no known product detected")

// config is the adopted policy section.
type config struct {
	mode            policy.Mode
	disk, av, fw    bool // required?
	signatureMaxAge time.Duration
	updateMaxAge    time.Duration
}

func configFrom(p policy.Posture) (config, error) {
	c := config{mode: p.Mode, signatureMaxAge: p.SignatureMaxAge.D(), updateMaxAge: p.OSUpdateMaxAge.D()}
	switch c.mode {
	case "":
		c.mode = policy.Off
	case policy.Off, policy.Audit, policy.Enforce:
	default:
		return config{}, fmt.Errorf("posture: mode %q not one of off, audit, enforce", p.Mode)
	}
	for _, r := range []struct {
		field string
		v     string
		dst   *bool
	}{{CheckDisk, p.DiskEncryption, &c.disk}, {CheckAV, p.Antivirus, &c.av}, {CheckFirewall, p.Firewall, &c.fw}} {
		switch r.v {
		case policy.Required:
			*r.dst = true
		case "", policy.Optional:
		default:
			return config{}, fmt.Errorf("posture: %s %q not one of required, optional", r.field, r.v)
		}
	}
	if c.signatureMaxAge < 0 || c.updateMaxAge < 0 {
		return config{}, errors.New("posture: max ages must not be negative")
	}
	return c, nil
}

// Control is the posture control.
type Control struct {
	env      controls.Env
	probe    probe
	reporter *controls.StatusReporter
	every    time.Duration

	mu      sync.Mutex
	cfg     config
	applied bool
	changed chan struct{}
	warned  map[string]bool // checks whose unsupported error was logged
}

// New makes the control with this OS's probe.
func New(env controls.Env) controls.Control { return newControl(env, newProbe(env)) }

func newControl(env controls.Env, p probe) *Control {
	if env.Clock == nil {
		env.Clock = controls.RealClock{}
	}
	return &Control{
		env: env, probe: p, every: DefaultCheckInterval,
		reporter: &controls.StatusReporter{Control: Name, Env: env, Interval: DefaultReportInterval},
		changed:  make(chan struct{}, 1),
		warned:   map[string]bool{},
	}
}

// Name returns "posture".
func (c *Control) Name() string { return Name }

// Apply adopts the posture section; bad settings are refused and the
// previous ones kept.
func (c *Control) Apply(ctx context.Context, p *policy.Policy) error {
	if p == nil {
		return errors.New("posture: nil policy")
	}
	cfg, err := configFrom(p.Controls.Posture)
	if err != nil {
		return err
	}
	c.mu.Lock()
	same := c.applied && c.cfg == cfg
	c.cfg, c.applied = cfg, true
	c.mu.Unlock()
	if !same {
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
	return nil
}

// Status returns the last verdict.
func (c *Control) Status() controls.Status {
	return c.reporter.Current()
}

// Run checks at once, then every check interval and on every policy change.
func (c *Control) Run(ctx context.Context) error {
	select { // the first round below covers any Apply made before Run
	case <-c.changed:
	default:
	}
	tick := c.env.Clock.After(c.every)
	for {
		c.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-c.changed: // keep the periodic schedule as it is
		case <-tick:
			tick = c.env.Clock.After(c.every)
		}
	}
}

func (c *Control) round(ctx context.Context) {
	c.mu.Lock()
	cfg := c.cfg
	c.mu.Unlock()
	var err error
	switch {
	case cfg.mode.Enabled():
		err = c.CheckNow(ctx)
	case c.reporter.Current().State != controls.Off:
		err = c.reporter.Set(ctx, controls.PolicyOff(), nil)
	}
	if err != nil && ctx.Err() == nil {
		c.env.Log.Warn().Err(err).Msg("posture: status not recorded")
	}
}

// CheckNow probes the host, decides and reports (emitting when the verdict
// changed or the report interval passed).
func (c *Control) CheckNow(ctx context.Context) error {
	c.mu.Lock()
	cfg := c.cfg
	c.mu.Unlock()
	var f facts
	f.disk, f.diskErr = c.probe.diskEncryption(ctx)
	f.av, f.avErr = c.probe.antivirus(ctx)
	f.update, f.updateErr = c.probe.lastUpdate(ctx)
	f.fw, f.fwErr = c.probe.firewall(ctx)
	for name, err := range map[string]error{CheckDisk: f.diskErr, CheckAV: f.avErr, CheckUpdate: f.updateErr, CheckFirewall: f.fwErr} {
		c.logOnce(name, err)
	}
	st, attrs := decide(cfg, f, c.env.Clock.Now())
	return c.reporter.Set(ctx, st, attrs)
}

// logOnce logs an unsupported check once and other errors every time at
// debug level: unknown is a status, not a reason to fill the log.
func (c *Control) logOnce(check string, err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	first := !c.warned[check]
	c.warned[check] = true
	c.mu.Unlock()
	lvl := zerolog.DebugLevel
	if first {
		lvl = zerolog.InfoLevel
	}
	c.env.Log.WithLevel(lvl).Str("check", check).Err(err).Msg("posture: check cannot tell")
}

// facts is one probe round.
type facts struct {
	disk      diskFact
	diskErr   error
	av        avFact
	avErr     error
	update    updateFact
	updateErr error
	fw        firewallFact
	fwErr     error
}

// result is one check's verdict.
type result struct {
	name     string
	state    controls.State
	required bool
	key      string // reason key when not pass
	ja, en   string // why, when not pass; what was found, when pass
	attrs    map[string]any
}

func unknownResult(name string, required bool, err error) (r result) {
	r = result{name: name, state: controls.Unknown, required: required, attrs: map[string]any{"error": err.Error()}}
	defer func() {
		var w *whyError
		if errors.As(err, &w) {
			r.ja += "（" + w.ja + "）"
			r.en += " (" + w.en + ")"
		}
	}()
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		r.key, r.ja, r.en = "posture."+name+"_unsupported", checkJA[name]+"はこのOSでは確認できません", checkEN[name]+" cannot be checked on this OS"
	case errors.Is(err, errNotDetected):
		r.key, r.ja, r.en = "posture."+name+"_not_detected", checkJA[name]+"の製品を検出できません", "no known "+checkEN[name]+" product detected"
	default:
		r.key, r.ja, r.en = "posture."+name+"_unknown", checkJA[name]+"の状態を取得できません", checkEN[name]+" state could not be read"
	}
	return r
}

var checkJA = map[string]string{
	CheckDisk: "ディスク暗号化", CheckAV: "ウイルス対策", CheckUpdate: "OS更新", CheckFirewall: "ファイアウォール",
}

var checkEN = map[string]string{
	CheckDisk: "disk encryption", CheckAV: "anti-virus", CheckUpdate: "OS update", CheckFirewall: "firewall",
}

// decide turns facts into a verdict. Only required checks (and OS updates
// when os_update_max_age is set) decide; optional ones are still reported
// in attrs. A failed required check makes the host fail; otherwise an
// unknown required check makes it unknown; with no required check at all
// it is unknown (posture.nothing_to_check), never pass.
func decide(cfg config, f facts, now time.Time) (controls.Status, event.Attrs) {
	var rs []result

	disk := result{name: CheckDisk, required: cfg.disk}
	if f.diskErr != nil {
		disk = unknownResult(CheckDisk, cfg.disk, f.diskErr)
	} else {
		disk.attrs = map[string]any{"encrypted": f.disk.Encrypted, "method": f.disk.Method, "volume": f.disk.Volume}
		switch {
		case f.disk.Encrypted:
			disk.state = controls.Pass
			disk.ja, disk.en = "暗号化されています("+f.disk.Volume+", "+f.disk.Method+")", "encrypted ("+f.disk.Volume+", "+f.disk.Method+")"
		case len(f.disk.Unencrypted) > 0:
			names := strings.Join(f.disk.Unencrypted, ", ")
			disk.attrs["unencrypted"] = f.disk.Unencrypted
			disk.state, disk.key = controls.Fail, "posture.disk_not_encrypted"
			disk.ja, disk.en = "暗号化されていないドライブがあります("+names+")", "not encrypted: "+names
		default:
			disk.state, disk.key = controls.Fail, "posture.disk_not_encrypted"
			disk.ja, disk.en = "システムドライブ("+f.disk.Volume+")が暗号化されていません", "system volume "+f.disk.Volume+" is not encrypted"
		}
	}
	rs = append(rs, disk)

	av := result{name: CheckAV, required: cfg.av}
	switch {
	case f.avErr != nil:
		av = unknownResult(CheckAV, cfg.av, f.avErr)
	case f.av.Product == "":
		av.state, av.key, av.ja, av.en = controls.Fail, "posture.antivirus_missing", "ウイルス対策ソフトがありません", "no anti-virus product installed"
	default:
		av.attrs = map[string]any{"product": f.av.Product, "running": f.av.Running, "outdated": f.av.Outdated}
		if !f.av.Signatures.IsZero() {
			av.attrs["signatures"] = f.av.Signatures.UTC().Format(time.RFC3339)
			av.attrs["signature_age_h"] = int64(now.Sub(f.av.Signatures) / time.Hour)
		}
		switch {
		case !f.av.Running:
			av.state, av.key = controls.Fail, "posture.antivirus_not_running"
			av.ja, av.en = "ウイルス対策ソフト("+f.av.Product+")が動作していません", "anti-virus "+f.av.Product+" is not running"
		case f.av.Outdated:
			av.state, av.key = controls.Fail, "posture.signatures_outdated"
			av.ja, av.en = "ウイルス定義ファイルが古くなっています", "anti-virus signatures are out of date"
		case cfg.signatureMaxAge > 0 && f.av.Signatures.IsZero():
			av.state, av.key = controls.Unknown, "posture.signature_age_unknown"
			av.ja, av.en = "ウイルス定義ファイルの更新日時が不明です", "anti-virus signature age is unknown"
		case cfg.signatureMaxAge > 0 && now.Sub(f.av.Signatures) > cfg.signatureMaxAge:
			av.state, av.key = controls.Fail, "posture.signatures_outdated"
			av.ja = fmt.Sprintf("ウイルス定義ファイルが%s以上更新されていません", cfg.signatureMaxAge)
			av.en = fmt.Sprintf("anti-virus signatures older than %s", cfg.signatureMaxAge)
		default:
			av.state = controls.Pass
			av.ja, av.en = "ウイルス対策ソフト("+f.av.Product+")が動作しています", "anti-virus "+f.av.Product+" is running"
		}
	}
	rs = append(rs, av)

	upd := result{name: CheckUpdate, required: cfg.updateMaxAge > 0}
	switch {
	case f.updateErr != nil:
		upd = unknownResult(CheckUpdate, upd.required, f.updateErr)
	case f.update.Last.IsZero() && !f.update.NoneSince.IsZero():
		// The record says no upgrade since NoneSince: enough to fail when
		// that alone is too long ago, else it cannot tell.
		since := f.update.NoneSince.Format("2006-01-02")
		upd.attrs = map[string]any{"none_since": f.update.NoneSince.UTC().Format(time.RFC3339), "source": f.update.Source}
		if cfg.updateMaxAge > 0 && now.Sub(f.update.NoneSince) > cfg.updateMaxAge {
			upd.state, upd.key = controls.Fail, "posture.os_update_old"
			upd.ja = fmt.Sprintf("OS更新が%s以上適用されていません（%s以降、更新の記録がありません）", ageJA(cfg.updateMaxAge), since)
			upd.en = fmt.Sprintf("no OS update installed for more than %s (none recorded since %s)", ageEN(cfg.updateMaxAge), since)
		} else {
			upd.state, upd.key = controls.Unknown, "posture.os_update_unknown"
			upd.ja = fmt.Sprintf("OS更新の適用日時が不明です（%s以降、更新の記録がありません）", since)
			upd.en = fmt.Sprintf("time of the last OS update is unknown (none recorded since %s)", since)
		}
	case f.update.Last.IsZero():
		upd.state, upd.key, upd.ja, upd.en = controls.Unknown, "posture.os_update_unknown", "OS更新の適用日時が不明です", "time of the last OS update is unknown"
	default:
		upd.attrs = map[string]any{"last": f.update.Last.UTC().Format(time.RFC3339), "age_h": int64(now.Sub(f.update.Last) / time.Hour), "source": f.update.Source}
		if f.update.Detail != "" {
			upd.attrs["detail"] = f.update.Detail
		}
		last := f.update.Last.Format("2006-01-02")
		if cfg.updateMaxAge > 0 && now.Sub(f.update.Last) > cfg.updateMaxAge {
			upd.state, upd.key = controls.Fail, "posture.os_update_old"
			upd.ja = fmt.Sprintf("OS更新が%s以上適用されていません（最終: %s）", ageJA(cfg.updateMaxAge), last)
			upd.en = fmt.Sprintf("no OS update installed for more than %s (last: %s)", ageEN(cfg.updateMaxAge), last)
		} else {
			upd.state = controls.Pass
			upd.ja, upd.en = "最終のOS更新: "+last, "last OS update: "+last
		}
	}
	rs = append(rs, upd)

	fw := result{name: CheckFirewall, required: cfg.fw}
	if f.fwErr != nil {
		fw = unknownResult(CheckFirewall, cfg.fw, f.fwErr)
	} else {
		fw.attrs = map[string]any{"on": f.fw.On, "detail": f.fw.Detail}
		if f.fw.On {
			fw.state = controls.Pass
			fw.ja, fw.en = "ファイアウォールが有効です("+f.fw.Detail+")", "host firewall is on ("+f.fw.Detail+")"
		} else {
			fw.state, fw.key, fw.ja, fw.en = controls.Fail, "posture.firewall_off", "ファイアウォールが無効です", "host firewall is off"
		}
	}
	rs = append(rs, fw)

	attrs := event.Attrs{}
	checks := make(map[string]any, len(rs))
	var failed, unknown, passed, optional []result
	for _, r := range rs {
		checks[r.name] = map[string]any{"state": string(r.state), "required": r.required, "reason": r.key,
			"reason_ja": r.ja, "reason_en": r.en}
		a := map[string]any{"state": string(r.state), "required": r.required}
		for k, v := range r.attrs {
			a[k] = v
		}
		if r.key != "" {
			a["reason"] = r.key
		}
		attrs[r.name] = a
		if !r.required {
			if r.state != controls.Pass {
				optional = append(optional, r)
			}
			continue
		}
		switch r.state {
		case controls.Fail:
			failed = append(failed, r)
		case controls.Unknown:
			unknown = append(unknown, r)
		default:
			passed = append(passed, r)
		}
	}
	attrs["checks"] = checks
	switch {
	case len(failed) > 0:
		return verdict(controls.Fail, failed, unknown, optional), attrs
	case len(unknown) > 0:
		return verdict(controls.Unknown, unknown, nil, optional), attrs
	case len(passed) == 0:
		// Nothing required: a pass would be compliance evidence for checks
		// nobody asked for (and that may well fail). As screenlock with no
		// settings to check; the server only takes pass, fail and unknown.
		return withOptional(controls.Status{State: controls.Unknown, Reason: "posture.nothing_to_check",
			ReasonJA: "必須の確認項目がありません（ディスク暗号化・ウイルス対策・ファイアウォールがすべて任意で、OS更新の期限もありません）",
			ReasonEN: "no check is required (disk encryption, anti-virus and firewall optional, no OS update age)"}, optional), attrs
	}
	ja := make([]string, len(passed))
	en := make([]string, len(passed))
	for i, r := range passed {
		ja[i], en[i] = checkJA[r.name], r.name
	}
	return withOptional(controls.Status{State: controls.Pass, Reason: "posture.ok",
		ReasonJA: "必須の確認項目を満たしています（" + strings.Join(ja, "・") + "）",
		ReasonEN: "required checks pass: " + strings.Join(en, ", ")}, optional), attrs
}

// verdict names every check that is not met: the deciding ones first (the
// reason key is the first one's), then the other required checks that
// cannot tell (when a failure decides), then the optional checks not met,
// marked optional; each group in the stable order disk, anti-virus,
// updates, firewall.
func verdict(s controls.State, deciding, alsoRequired, optional []result) controls.Status {
	var ja, en []string
	for _, r := range append(append([]result{}, deciding...), alsoRequired...) {
		ja, en = append(ja, r.ja), append(en, r.en)
	}
	return withOptional(controls.Status{State: s, Reason: deciding[0].key, ReasonJA: strings.Join(ja, "。"), ReasonEN: strings.Join(en, "; ")}, optional)
}

// withOptional appends the optional checks not met to st's texts.
func withOptional(st controls.Status, optional []result) controls.Status {
	for _, r := range optional {
		st.ReasonJA += "。" + r.ja + "（任意の項目）"
		st.ReasonEN += "; " + r.en + " (optional)"
	}
	return st
}

// ageJA and ageEN say a policy's age limit as people write it: 30日, not
// 720h0m0s.
func ageJA(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d日", d/(24*time.Hour))
	}
	return fmt.Sprintf("%d時間", (d+time.Hour-1)/time.Hour)
}

func ageEN(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return fmt.Sprintf("%d hours", (d+time.Hour-1)/time.Hour)
}
