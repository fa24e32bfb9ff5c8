// Package backup is the backup control (滅失・毀損の防止, APPI Art. 23; the
// on-site review item "バックアップ"): an agent-run, verified backup of the
// folders the policy and the personal-information register name, or, with
// method observe, a check of the age of an external backup.
//
// A run makes a generation directory destination/<hostname>/<UTC time>/,
// copies each file through a temp file (hashing what it reads), fsyncs,
// renames and reads it back to compare hashes; files unchanged since the
// previous good generation (size, mtime and, on Unix, inode change time;
// else compared by content) are hard-linked if that copy
// still matches its manifest hash, else copied (as where links are
// impossible), so every generation is complete and no damage is inherited. manifest.json,
// written last, makes a generation good; its SHA-256 is the manifest hash
// reported in backup.completed. A failed run (disk full, say) removes its
// partial generation and is reported as backup.failed, never as good.
//
// The control is portable: the only per-OS pieces are in fs_windows.go and
// fs_other.go, which must define syncDir(dir string) error and
// isDiskFull(error) bool, and in ctime_{linux,darwin,windows,other}.go,
// which must define changeTimeOf(os.FileInfo) (time.Time, bool),
// deviceID(path string) (string, bool) and the constant linkOnSizeAndMTime.
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// Name is the control's policy key and event "control".
const Name = "backup"

// Event types.
const (
	TypeCompleted = "backup.completed"
	TypeFailed    = "backup.failed"
	TypeOverdue   = "backup.overdue"
	TypeCorrupt   = "backup.corrupt"
	TypePruned    = "backup.pruned"
	TypeStatus    = "backup.status"
	// TypeGenerationsMissing: generations the agent had seen at the
	// destination are gone, and not by its own pruning (someone deleted or
	// moved them). Reported once, when noticed.
	TypeGenerationsMissing = "backup.generations_missing"
)

// Methods.
const (
	MethodCopy    = "copy"
	MethodObserve = "observe"
)

const (
	statusInterval    = time.Hour        // re-report an unchanged status
	retryAfter        = 15 * time.Minute // after a failed run
	minSchedule       = time.Minute
	maxEventPaths     = 100 // paths listed in one backup.corrupt event
	maxEventPathBytes = 8 << 10
	stateFile         = "backup-manifests.json"
	destStateFile     = "backup-destinations.json"
)

// destState is what the agent remembers of one destination (the policy's
// destination path): that it has written a generation there, which makes
// the destination missing later a failure rather than a first backup, and
// the good generations it last saw in its host folder.
type destState struct {
	Written     time.Time `json:"written,omitzero"` // first good generation written (or found) there
	Generations []string  `json:"generations"`
}

type config struct {
	mode        policy.Mode
	method      string
	sources     []Source
	destination string
	schedule    time.Duration
	maxAge      time.Duration
	generations int
	clauses     []string
}

// Control is the backup control.
type Control struct {
	env  controls.Env
	host string
	rep  *controls.StatusReporter
	wake chan struct{}

	mu      sync.Mutex
	cfg     config
	changed bool // cfg changed since the last cycle

	// Owned by Run.
	manifests   map[string]string // generation -> manifest hash, as written
	lastErr     error             // the last run's failure, nil after a good run
	lastRun     time.Time
	corrupt     []Corruption
	lastVerify  time.Time
	overdueSeen string // newest-backup key already reported overdue
	dests       map[string]*destState
	destMissing bool // the destination root, written to before, is gone
	// legacyWritten: upgraded from a version without the destinations
	// record, with backups written before. Until the record has an entry,
	// the policy's destination counts as written to.
	legacyWritten bool
	sameDevice    []string // sources on the destination's filesystem (a note, not a failure)
}

// New makes the backup control.
func New(env controls.Env) controls.Control {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return newControl(env, host)
}

func newControl(env controls.Env, host string) *Control {
	if env.Clock == nil {
		env.Clock = controls.RealClock{}
	}
	host = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r < ' ' {
			return '_'
		}
		return r
	}, host)
	return &Control{
		env:   env,
		host:  host,
		rep:   &controls.StatusReporter{Control: Name, Env: env, Interval: statusInterval},
		wake:  make(chan struct{}, 1),
		dests: map[string]*destState{},
	}
}

// Name returns "backup".
func (c *Control) Name() string { return Name }

// Status is the current verdict.
func (c *Control) Status() controls.Status {
	return c.rep.Current()
}

// Apply validates and adopts the backup section.
func (c *Control) Apply(ctx context.Context, p *policy.Policy) error {
	cfg, err := parseConfig(p.Controls.Backup)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if !reflect.DeepEqual(c.cfg, cfg) { // the same policy again keeps the retry wait
		c.cfg, c.changed = cfg, true
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

func parseConfig(b policy.Backup) (config, error) {
	cfg := config{mode: b.Mode, method: b.Method, destination: b.Destination,
		schedule: b.Schedule.D(), maxAge: b.MaxAge.D(), generations: b.Generations, clauses: b.Clauses}
	if cfg.mode == "" {
		cfg.mode = policy.Off
	}
	if !cfg.mode.Enabled() {
		if cfg.mode != policy.Off {
			return config{}, fmt.Errorf("backup: mode %q: use off, audit or enforce", b.Mode)
		}
		return cfg, nil
	}
	if cfg.method == "" {
		cfg.method = MethodCopy
	}
	if cfg.method != MethodCopy && cfg.method != MethodObserve {
		return config{}, fmt.Errorf("backup: method %q: use copy or observe", b.Method)
	}
	if cfg.destination == "" || !filepath.IsAbs(cfg.destination) {
		return config{}, fmt.Errorf("backup: destination %q must be an absolute path (local folder or mounted share)", b.Destination)
	}
	cfg.destination = filepath.Clean(cfg.destination)
	if cfg.maxAge == 0 {
		cfg.maxAge = policy.DefaultBackupMaxAge
	}
	if cfg.maxAge < 0 {
		return config{}, fmt.Errorf("backup: max_age %v must be positive", cfg.maxAge)
	}
	if cfg.generations == 0 {
		cfg.generations = policy.DefaultGenerations
	}
	if cfg.generations < 1 {
		return config{}, fmt.Errorf("backup: generations %d must be at least 1", b.Generations)
	}
	if cfg.schedule == 0 {
		cfg.schedule = cfg.maxAge / 2
	}
	if cfg.schedule < minSchedule {
		return config{}, fmt.Errorf("backup: schedule %v is shorter than %v", cfg.schedule, minSchedule)
	}
	if cfg.method == MethodObserve {
		return cfg, nil
	}
	byPath := map[string]int{}
	add := func(p, reg string) error {
		if p == "" || !filepath.IsAbs(p) {
			return fmt.Errorf("backup: source %q must be an absolute path", p)
		}
		p = filepath.Clean(p)
		if policy.Overlap(p, cfg.destination) {
			return fmt.Errorf("backup: source %q and destination %q overlap", p, cfg.destination)
		}
		if i, ok := byPath[p]; ok {
			if reg != "" {
				cfg.sources[i].RegisterID = reg
			}
			return nil
		}
		byPath[p] = len(cfg.sources)
		cfg.sources = append(cfg.sources, Source{Path: p, RegisterID: reg})
		return nil
	}
	for _, s := range b.Sources {
		if err := add(s, ""); err != nil {
			return config{}, err
		}
	}
	for _, f := range b.Folders {
		if err := add(f.Path, f.RegisterID); err != nil {
			return config{}, err
		}
	}
	// No sources and no register folders is not an error: the server adds
	// the register's folders per host, and a PC with none must not fail
	// its whole policy. The cycle reports backup.no_sources instead.
	return cfg, nil
}

func (c *Control) config() config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// takeChanged reports whether Apply changed the settings since it was last called.
func (c *Control) takeChanged() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.changed
	c.changed = false
	return ch
}

// Run schedules backups (or observations) until ctx is done.
func (c *Control) Run(ctx context.Context) error {
	c.loadManifests()
	for {
		cfg := c.config()
		wait := statusInterval
		if cfg.mode.Enabled() {
			wait = c.cycle(ctx, cfg)
		} else {
			_ = c.rep.Set(ctx, controls.PolicyOff(), nil)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		case <-c.env.Clock.After(wait):
		}
	}
}

// cycle does what is due now and returns how long to sleep.
func (c *Control) cycle(ctx context.Context, cfg config) time.Duration {
	if c.takeChanged() {
		// The old policy's failure says nothing about the new one: run and
		// verify under it now rather than after the retry wait.
		c.lastErr, c.lastVerify = nil, time.Time{}
	}
	if cfg.method == MethodObserve {
		return c.observe(ctx, cfg)
	}
	if len(cfg.sources) == 0 {
		// Nothing to back up on this PC: no run, no verify, no overdue
		// violation, until a policy names sources or register folders.
		c.reportNoSources(ctx, cfg)
		return statusInterval
	}
	eng := &engine{hostDir: filepath.Join(cfg.destination, c.host), host: c.host, now: c.env.Clock.Now, manifests: c.manifests}
	now := c.env.Clock.Now()
	if c.checkDestination(ctx, cfg) {
		return retryAfter
	}
	c.sameDevice, _ = sameDeviceSources(cfg.sources, cfg.destination)
	gens, err := eng.goodGenerations()
	if err != nil {
		c.lastErr = err
		c.report(ctx, cfg, time.Time{}, err)
		return retryAfter
	}
	c.trackGenerations(ctx, cfg, eng, gens)
	var newest time.Time
	if len(gens) > 0 {
		newest = gens[len(gens)-1].Time
	}
	due := newest.IsZero() || now.Sub(newest) >= cfg.schedule
	if cfg.mode == policy.Enforce && due && (c.lastErr == nil || now.Sub(c.lastRun) >= retryAfter) {
		c.lastRun = now
		res, err := c.runOnce(ctx, cfg, eng)
		if err == nil {
			newest = res.Generation
		}
		// Prune after a good run, on what this verify found: the newest
		// intact generation is kept even when it is beyond the count.
		if c.verifyAll(ctx, eng) && err == nil {
			c.prune(ctx, cfg, eng)
		}
	} else if c.lastVerify.IsZero() || now.Sub(c.lastVerify) >= cfg.schedule {
		c.verifyAll(ctx, eng)
	}
	c.report(ctx, cfg, newest, nil)
	return c.nextWait(cfg, newest)
}

// checkDestination reports whether the policy's destination itself is
// missing although this agent has written a generation there before (an
// unmounted share, a folder moved away). Then nothing is written: creating
// it afresh would put the backup on the local disk while the status said
// it was on the share. It sets the status and, in enforce mode, records
// backup.failed once per outage. A destination never written to may be
// created by the first backup; one that cannot be stat'ed for another
// reason is left to the listing, which reports it unreachable.
func (c *Control) checkDestination(ctx context.Context, cfg config) bool {
	_, err := os.Stat(cfg.destination)
	d := c.dests[cfg.destination]
	written := d != nil && !d.Written.IsZero()
	if !written && c.legacyWritten && len(c.dests) == 0 {
		written, d = true, &destState{}
	}
	if !errors.Is(err, fs.ErrNotExist) || !written {
		c.destMissing = false
		return false
	}
	if !c.destMissing && cfg.mode == policy.Enforce {
		r := rDestMissing
		c.emit(ctx, event.Event{Type: TypeFailed, Severity: event.Warning, Object: cfg.destination, Attrs: event.Attrs{
			"error": errText(err), "disk_full": false, "destination": cfg.destination, "reason": "destination_missing",
			"reason_ja": r.ja, "reason_en": r.en, "first_written": firstWritten(d)}})
		c.env.Log.Warn().Str("destination", cfg.destination).Msg("backup destination missing; not recreated")
	}
	c.destMissing = true
	c.report(ctx, cfg, time.Time{}, nil)
	return true
}

func firstWritten(d *destState) string {
	if d.Written.IsZero() {
		return "unknown (before the destinations record)"
	}
	return d.Written.UTC().Format(time.RFC3339)
}

// trackGenerations compares the good generations listed now with those
// last seen at this destination and records backup.generations_missing,
// once, for any that are gone. The agent's own pruning removes names from
// the record before this runs, so it is never reported as missing.
func (c *Control) trackGenerations(ctx context.Context, cfg config, eng *engine, gens []Generation) {
	d := c.dests[cfg.destination]
	if d == nil {
		if len(gens) == 0 {
			return
		}
		// Generations already there (an agent upgraded from a version
		// without this record): the destination counts as written to.
		d = &destState{Written: gens[0].Time}
		c.dests[cfg.destination] = d
	}
	present := make(map[string]bool, len(gens))
	names := make([]string, 0, len(gens))
	for _, g := range gens {
		present[g.Name] = true
		names = append(names, g.Name)
	}
	var gone []any
	for _, n := range d.Generations {
		if !present[n] {
			gone = append(gone, n)
		}
	}
	changed := !slices.Equal(d.Generations, names)
	d.Generations = names
	if len(gone) > 0 {
		list := gone
		if len(list) > maxEventPaths {
			list = list[len(list)-maxEventPaths:]
		}
		c.emit(ctx, event.Event{Type: TypeGenerationsMissing, Severity: event.Warning, Object: eng.hostDir, Attrs: event.Attrs{
			"generations": list, "count": len(gone), "remaining": len(gens), "destination": cfg.destination}})
		c.env.Log.Warn().Int("count", len(gone)).Str("destination", cfg.destination).Msg("backup generations missing")
		c.corrupt = slices.DeleteFunc(c.corrupt, func(b Corruption) bool { return !present[b.Generation] })
	}
	if changed {
		c.saveDests()
	}
}

// nextWait is the time until the next scheduled run, a retry, the moment
// the newest backup turns overdue, or the status interval, whichever is first.
func (c *Control) nextWait(cfg config, newest time.Time) time.Duration {
	now := c.env.Clock.Now()
	wait := statusInterval
	if cfg.mode == policy.Enforce {
		next := newest.Add(cfg.schedule).Sub(now)
		if c.lastErr != nil {
			next = c.lastRun.Add(retryAfter).Sub(now)
		}
		wait = min(wait, next)
	}
	if !newest.IsZero() {
		if d := newest.Add(cfg.maxAge).Sub(now); d > 0 {
			wait = min(wait, d+time.Second)
		}
	}
	return max(wait, time.Second)
}

func (c *Control) runOnce(ctx context.Context, cfg config, eng *engine) (struct{ Generation time.Time }, error) {
	var out struct{ Generation time.Time }
	res, err := eng.run(ctx, cfg.sources)
	if err != nil {
		c.lastErr = err
		a := event.Attrs{"error": errText(err), "disk_full": isDiskFull(err), "destination": cfg.destination}
		if isDiskFull(err) {
			a["reason"] = "disk_full"
		}
		c.emit(ctx, event.Event{Type: TypeFailed, Severity: event.Warning, Object: cfg.destination, Attrs: a})
		c.env.Log.Warn().Err(err).Str("destination", cfg.destination).Msg("backup failed")
		return out, err
	}
	c.lastErr = nil
	c.manifests[res.Generation] = res.ManifestHash
	d := c.dests[cfg.destination]
	if d == nil {
		d = &destState{}
		c.dests[cfg.destination] = d
	}
	if d.Written.IsZero() {
		d.Written = c.env.Clock.Now().UTC()
	}
	d.Generations = append(d.Generations, res.Generation)
	c.saveDests()
	regs := make([]any, len(res.RegisterIDs))
	for i, r := range res.RegisterIDs {
		regs[i] = r
	}
	e := event.Event{Type: TypeCompleted, Severity: event.Info, Object: res.Dir, Attrs: event.Attrs{
		"generation": res.Generation, "files": res.Files, "bytes": res.Bytes, "copied": res.Copied,
		"linked": res.Linked, "linked_unverified": res.LinkedUnverified, "compared": res.Compared, "vanished": res.Vanished, "manifest_sha256": res.ManifestHash, "duration_ms": res.Duration.Milliseconds(),
		"register_ids": regs,
	}}
	if len(res.RegisterIDs) == 1 {
		e.RegisterID = res.RegisterIDs[0]
	}
	c.emit(ctx, e)
	c.saveManifests()
	out.Generation, _ = time.Parse(genLayout, res.Generation)
	return out, nil
}

// prune deletes generations beyond cfg.generations, never the newest one
// the last verify found intact, and forgets the corruption of those deleted.
func (c *Control) prune(ctx context.Context, cfg config, eng *engine) {
	gone, err := eng.prune(cfg.generations, c.corrupt)
	for _, g := range gone {
		delete(c.manifests, g)
		c.emit(ctx, event.Event{Type: TypePruned, Severity: event.Info, Object: filepath.Join(eng.hostDir, g),
			Attrs: event.Attrs{"generation": g, "keep": cfg.generations}})
	}
	c.corrupt = slices.DeleteFunc(c.corrupt, func(b Corruption) bool { return slices.Contains(gone, b.Generation) })
	if err != nil {
		c.env.Log.Warn().Err(err).Msg("backup prune")
	}
	if len(gone) > 0 {
		c.saveManifests()
		if d := c.dests[cfg.destination]; d != nil {
			d.Generations = slices.DeleteFunc(d.Generations, func(n string) bool { return slices.Contains(gone, n) })
			c.saveDests()
		}
	}
}

// verifyAll checks every generation and reports corruption. It returns
// false if the pass did not finish (c.corrupt is then unchanged).
func (c *Control) verifyAll(ctx context.Context, eng *engine) bool {
	c.lastVerify = c.env.Clock.Now()
	bad, checked, err := eng.verify(ctx, c.manifests)
	if err != nil {
		c.env.Log.Warn().Err(err).Msg("backup verify")
		return false
	}
	c.corrupt = bad
	for _, b := range bad {
		// A name that is not UTF-8 would make the spool refuse the event:
		// then every path is escaped (as in the manifest) and an attr says so.
		escape := slices.ContainsFunc(b.Paths, func(p string) bool { return !utf8.ValidString(p) })
		a := event.Attrs{"generation": b.Generation, "count": len(b.Paths), "checked": checked}
		if escape {
			a["path_encoding"] = event.PathEncodingEscaped
		}
		// Bounded by count and bytes so the event stays under event.MaxAttrsLen.
		var paths []any
		size := 0
		for _, p := range b.Paths {
			if escape {
				p = event.EscapeBytes(p)
			}
			if len(paths) == maxEventPaths || size+len(p) > maxEventPathBytes {
				break
			}
			paths = append(paths, p)
			size += len(p) + 4
		}
		a["paths"] = paths
		c.emit(ctx, event.Event{Type: TypeCorrupt, Severity: event.Violation, Object: filepath.Join(eng.hostDir, b.Generation), Attrs: a})
	}
	return true
}

// observe checks an external backup's age.
func (c *Control) observe(ctx context.Context, cfg config) time.Duration {
	o, err := observeNewest(ctx, cfg.destination, maxObserveEntries)
	if err != nil {
		c.report(ctx, cfg, time.Time{}, err)
		return retryAfter
	}
	c.report(ctx, cfg, o.Newest, nil)
	return c.nextWait(cfg, o.Newest)
}

type reason struct{ key, ja, en string }

var (
	rOK          = reason{"backup.ok", "最新の正常なバックアップは上限期間内です", "the newest good backup is within the maximum age"}
	rNone        = reason{"backup.none", "正常なバックアップがまだありません", "no good backup exists yet"}
	rOverdue     = reason{"backup.overdue", "最新の正常なバックアップが上限期間より古くなっています", "the newest good backup is older than the maximum age"}
	rFailed      = reason{"backup.last_run_failed", "直近のバックアップが失敗しました", "the last backup run failed"}
	rCorrupt     = reason{"backup.corrupt", "バックアップ先のファイルがマニフェストと一致しません（破損）", "files at the destination no longer match their manifest (corrupt)"}
	rUnreachable = reason{"backup.destination_unreachable", "バックアップ先を読めません", "the backup destination cannot be read"}
	rDestMissing = reason{"backup.destination_missing", "バックアップ先のフォルダーがありません（共有フォルダーの未接続・移動など）。以前に書き込んだバックアップ先のため、作成し直さずに失敗としています",
		"the backup destination is missing (a share not mounted, a folder moved); it was written to before, so it is not recreated and the backup fails"}
	rNoSources = reason{"backup.no_sources", "バックアップ対象がありません: ポリシーに対象フォルダーがなく、台帳にもこの PC のフォルダーがありません",
		"nothing to back up: the policy names no sources and the register has no folders on this PC"}
)

// reportNoSources sets the status for method copy with nothing to back up:
// unknown (not a pass, since nothing is proved backed up; not a fail, since
// nothing on this PC is known to need it).
func (c *Control) reportNoSources(ctx context.Context, cfg config) {
	attrs := event.Attrs{"method": cfg.method, "mode": string(cfg.mode), "destination": cfg.destination,
		"max_age": cfg.maxAge.String()}
	r := rNoSources
	st := controls.Status{State: controls.Unknown, Reason: r.key, ReasonJA: r.ja, ReasonEN: r.en}
	if err := c.rep.Set(ctx, st, attrs); err != nil {
		c.env.Log.Error().Err(err).Msg("backup status not recorded")
	}
}

// report decides the verdict, emits backup.overdue once per stale backup,
// and sets the status.
func (c *Control) report(ctx context.Context, cfg config, newest time.Time, readErr error) {
	now := c.env.Clock.Now()
	attrs := event.Attrs{"method": cfg.method, "mode": string(cfg.mode), "destination": cfg.destination,
		"max_age": cfg.maxAge.String()}
	if !newest.IsZero() {
		attrs["newest"] = newest.UTC().Format(time.RFC3339)
		attrs["age_seconds"] = int64(now.Sub(newest) / time.Second)
	}
	if len(c.sameDevice) > 0 && !c.destMissing && cfg.method == MethodCopy {
		srcs := make([]any, len(c.sameDevice))
		for i, s := range c.sameDevice {
			srcs[i] = s
		}
		attrs["same_device"], attrs["same_device_sources"] = true, srcs
		attrs["note_ja"] = "バックアップ先が対象フォルダーと同じディスク（ファイルシステム）上にあります。ディスクの故障・盗難・ランサムウェアで元データと同時に失われるおそれがあります"
		attrs["note_en"] = "the backup destination is on the same disk (filesystem) as a source folder: a disk failure, theft or ransomware can take both"
	}
	overdue := !newest.IsZero() && now.Sub(newest) > cfg.maxAge
	key := newest.UTC().Format(time.RFC3339Nano)
	if (overdue || newest.IsZero()) && readErr == nil && !c.destMissing && c.overdueSeen != key {
		c.overdueSeen = key
		a := event.Attrs{"max_age": cfg.maxAge.String(), "destination": cfg.destination}
		if !newest.IsZero() {
			a["newest"] = attrs["newest"]
			a["age_seconds"] = attrs["age_seconds"]
		}
		c.emit(ctx, event.Event{Type: TypeOverdue, Severity: event.Violation, Object: cfg.destination, Attrs: a})
	}
	r, state := rOK, controls.Pass
	switch {
	case c.destMissing:
		r, state = rDestMissing, controls.Fail
	case readErr != nil:
		r, state = rUnreachable, controls.Fail
		attrs["error"] = errText(readErr)
	case len(c.corrupt) > 0:
		r, state = rCorrupt, controls.Fail
	case c.lastErr != nil:
		r, state = rFailed, controls.Fail
		attrs["error"] = errText(c.lastErr)
	case newest.IsZero():
		r, state = rNone, controls.Fail
	case overdue:
		r, state = rOverdue, controls.Fail
	}
	st := controls.Status{State: state, Reason: r.key, ReasonJA: r.ja, ReasonEN: r.en}
	if err := c.rep.Set(ctx, st, attrs); err != nil {
		c.env.Log.Error().Err(err).Msg("backup status not recorded")
	}
}

// errText is err's text as an event takes it: a file name in it that is
// not UTF-8 is escaped, or the spool would refuse the event.
func errText(err error) string {
	s := err.Error()
	if !utf8.ValidString(s) {
		return event.EscapeBytes(s)
	}
	return s
}

func (c *Control) emit(ctx context.Context, e event.Event) {
	e.Control = Name
	e.Time = c.env.Clock.Now()
	if err := c.env.Emit.Emit(ctx, e); err != nil {
		c.env.Log.Error().Err(err).Str("type", e.Type).Msg("backup event not recorded")
	}
}

// loadManifests reads the manifest hashes recorded at write time, so the
// verify pass can tell a rewritten manifest from the one it wrote.
func (c *Control) loadManifests() {
	c.manifests = map[string]string{}
	c.dests = map[string]*destState{}
	if c.env.StateDir == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(c.env.StateDir, destStateFile))
	if err == nil {
		if err := json.Unmarshal(b, &c.dests); err != nil || c.dests == nil {
			c.env.Log.Warn().Err(err).Msg("backup: destination record unreadable; starting afresh")
			c.dests = map[string]*destState{}
		}
	}
	noRecord := errors.Is(err, fs.ErrNotExist)
	defer func() {
		// Upgraded from a version that kept no destinations record but did
		// write backups: a missing destination is then not a first backup.
		c.legacyWritten = noRecord && len(c.manifests) > 0
	}()
	b, err = os.ReadFile(filepath.Join(c.env.StateDir, stateFile))
	if err != nil {
		return
	}
	if err := json.Unmarshal(b, &c.manifests); err != nil {
		c.env.Log.Warn().Err(err).Msg("backup: manifest record unreadable; starting afresh")
		c.manifests = map[string]string{}
	}
}

func (c *Control) saveManifests() {
	if c.env.StateDir == "" {
		return
	}
	b, _ := json.Marshal(c.manifests)
	if err := os.MkdirAll(c.env.StateDir, 0o700); err == nil {
		err = writeFileSync(filepath.Join(c.env.StateDir, stateFile), b)
		if err != nil {
			c.env.Log.Warn().Err(err).Msg("backup: manifest record not saved")
		}
	}
}

// saveDests keeps the destinations record (see destState).
func (c *Control) saveDests() {
	if c.env.StateDir == "" {
		return
	}
	b, _ := json.Marshal(c.dests)
	if err := os.MkdirAll(c.env.StateDir, 0o700); err == nil {
		if err := writeFileSync(filepath.Join(c.env.StateDir, destStateFile), b); err != nil {
			c.env.Log.Warn().Err(err).Msg("backup: destination record not saved")
		}
	}
}
