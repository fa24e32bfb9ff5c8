// Package fileaccess is the file-access log control (個人データ取扱状況の
// 記録, PPC 通則編 §10-3(2), FAQ Q10-20): it watches the folders that hold
// personal data (policy paths and the register's folders) recursively and
// records files created, modified, deleted, renamed and, where the OS can
// tell, read, with the user and process where the OS can say (Linux
// fanotify, Windows audit SACL + Security event 4663). Bursts above the
// per-folder bulk threshold are summarised in one exact fileaccess.bulk
// warning (deletions, moves out and renames are still sent one by one, up
// to a much higher bound, so a burst cannot hide them); an OS queue overflow is reconciled against a snapshot and
// reported as fileaccess.overflow.
//
// Each OS file must define:
//
//	func newProbe(env controls.Env) probe
//
// returning the attribution probe of that OS. Where the OS gives no
// attribution its setRoots returns an error wrapping errors.ErrUnsupported:
// changes are still recorded, without user and process.
package fileaccess

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/fswatch"
	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// Name is the control's policy key and event "control".
const Name = "fileaccess"

// Event types.
const (
	TypeCreated  = "file.created"
	TypeModified = "file.modified"
	TypeDeleted  = "file.deleted"
	TypeRenamed  = "file.renamed"
	TypeRead     = "file.read"
	TypeOverflow = "fileaccess.overflow"
	TypeBulk     = "fileaccess.bulk"
	TypeError    = "fileaccess.error"
)

// Intervals.
const (
	checkInterval = 30 * time.Second // retry missing roots, refresh status
	// rootCheckInterval: how often each watched folder's path is compared
	// with the folder that was watched (moved away, replaced by a link, a
	// junction or another folder), and a folder not watched is looked at
	// again (back, or something else at its path).
	rootCheckInterval = 2 * time.Second
	statusInterval    = time.Hour
	accessKeep        = 5 * time.Second // how long an OS access record waits for its change
)

// access is one attributed file access from the OS (fanotify event, 4663).
type access struct {
	Path    string
	Time    time.Time
	PID     int
	User    string
	Process string // executable path
	Mask    uint32 // Windows access mask; Linux: fanotify mask
	Read    bool   // read-only access (Linux: closed without writing; Windows: ReadData only)
	Write   bool
	Delete  bool
	Create  bool   // the entry was created (Linux fanotify FID FAN_CREATE)
	Rename  bool   // the entry was renamed, from or to Path (Linux FAN_RENAME / FAN_MOVED_*)
	NewName bool   // Rename: Path is the name it got (renamed or moved to it), not the one it left
	MovedTo string // renamed from Path: where it went, when the OS says (Linux FID)
	Record  uint64 // OS record that reported it (Security-log record id), acked back; 0: none
	// Unlinked: the file accessed was no longer linked when the OS event
	// was read (replaced, e.g. by sed -i, or deleted); Path is the name it
	// last had (Linux: the /proc/self/fd link without " (deleted)").
	Unlinked bool
}

// Values of the attribution_source attr of an attributed change.
const (
	// sourceObserved: the OS reported this very operation by that process
	// (a write for a create or change, a delete, a rename).
	sourceObserved = "observed"
	// sourceLastWriter: the OS reported no such operation; the change is
	// joined to the latest other access of the path (fanotify without FID
	// has no delete or rename events). A guess, not an observation.
	sourceLastWriter = "last_writer"
)

// probe attributes accesses to users and processes.
type probe interface {
	// setRoots points attribution at roots (all of them, replacing the
	// previous set); with enforce it also turns on OS auditing where that
	// is how attribution works (Windows SACL). It returns the method name
	// ("fanotify", "security-4663") or an error; one wrapping
	// errors.ErrUnsupported means no attribution on this system.
	setRoots(ctx context.Context, roots []string, enforce bool) (method string, err error)
	// accesses delivers attributed accesses; nil when there are none.
	accesses() <-chan access
	// joinDelay is how long a change waits for its access record.
	joinDelay() time.Duration
	// ack says that every access handed out so far with a Record up to rec
	// is durable (its events emitted) or dropped: the probe may persist its
	// log position past them, and only then.
	ack(rec uint64)
	close() error
}

type folder struct {
	path       string
	registerID string
}

type config struct {
	mode      policy.Mode
	folders   []folder // sorted by path
	exclude   []string
	threshold int
	window    time.Duration
	debounce  time.Duration
}

func (a config) watcherSame(b config) bool {
	return a.debounce == b.debounce && strings.Join(a.exclude, "\x00") == strings.Join(b.exclude, "\x00")
}

func configFrom(fa policy.FileAccess) (config, error) {
	cfg := config{mode: fa.Mode, threshold: fa.BulkThreshold, window: fa.BulkWindow.D(), debounce: fa.Debounce.D()}
	switch cfg.mode {
	case "":
		cfg.mode = policy.Off
	case policy.Off, policy.Audit, policy.Enforce:
	default:
		return config{}, fmt.Errorf("fileaccess: mode %q is not one of off, audit, enforce", fa.Mode)
	}
	if cfg.threshold < 0 || cfg.window < 0 || cfg.debounce < 0 {
		return config{}, errors.New("fileaccess: bulk_threshold, bulk_window and debounce must not be negative")
	}
	if cfg.threshold == 0 {
		cfg.threshold = policy.DefaultBulkThreshold
	}
	if cfg.window == 0 {
		cfg.window = policy.DefaultBulkWindow
	}
	if cfg.debounce == 0 {
		cfg.debounce = policy.DefaultDebounce
	}
	cfg.exclude = fa.Exclude
	if cfg.exclude == nil {
		cfg.exclude = policy.DefaultExclude
	}
	for _, p := range cfg.exclude {
		if _, err := filepath.Match(p, "x"); err != nil {
			return config{}, fmt.Errorf("fileaccess: bad exclude pattern %q", p)
		}
	}
	seen := map[string]int{}
	add := func(p, reg string) error {
		if strings.TrimSpace(p) == "" || !filepath.IsAbs(p) {
			return fmt.Errorf("fileaccess: %q is not an absolute path", p)
		}
		p = filepath.Clean(p)
		if i, ok := seen[p]; ok {
			if reg != "" {
				cfg.folders[i].registerID = reg
			}
			return nil
		}
		seen[p] = len(cfg.folders)
		cfg.folders = append(cfg.folders, folder{path: p, registerID: reg})
		return nil
	}
	for _, p := range fa.Paths {
		if err := add(p, ""); err != nil {
			return config{}, err
		}
	}
	for _, f := range fa.Folders {
		if err := add(f.Path, f.RegisterID); err != nil {
			return config{}, err
		}
	}
	sort.Slice(cfg.folders, func(i, j int) bool { return cfg.folders[i].path < cfg.folders[j].path })
	return cfg, nil
}

// Control is the fileaccess control.
type Control struct {
	env      controls.Env
	probe    probe
	reporter *controls.StatusReporter
	changed  chan struct{}

	tuneWatch    func(*fswatch.Options) // tests: shrink queues to force overflows
	removalLimit int                    // tests: removals sent one by one per bulk window (0: default)

	mu      sync.Mutex
	cfg     config
	applied bool
	status  controls.Status
}

// New returns the fileaccess control.
func New(env controls.Env) controls.Control { return newControl(env, newProbe(env)) }

func newControl(env controls.Env, p probe) *Control {
	if env.Clock == nil {
		env.Clock = controls.RealClock{}
	}
	return &Control{
		env:      env,
		probe:    p,
		reporter: &controls.StatusReporter{Control: Name, Env: env, Interval: statusInterval},
		changed:  make(chan struct{}, 1),
		cfg:      config{mode: policy.Off},
	}
}

// Name returns "fileaccess".
func (c *Control) Name() string { return Name }

// Apply adopts the fileaccess section; bad settings are refused and the
// previous ones kept. Roots are added and removed live by Run.
func (c *Control) Apply(ctx context.Context, p *policy.Policy) error {
	if p == nil {
		return errors.New("fileaccess: nil policy")
	}
	cfg, err := configFrom(p.Controls.FileAccess)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cfg, c.applied = cfg, true
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return nil
}

// Status is the current verdict.
func (c *Control) Status() controls.Status {
	return c.reporter.Current()
}

func (c *Control) config() config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// Run watches until ctx is done.
func (c *Control) Run(ctx context.Context) error {
	r := &runner{c: c, roots: map[string]*rootState{}, reads: map[readKey]*readAgg{},
		recent: map[string][]access{}, seen: map[string]bool{}, offline: map[string]window{},
		behind: map[string]time.Time{}, unrecorded: map[string]window{},
		lost: map[string]time.Time{}, unwatched: map[string]window{}}
	r.store, _ = c.env.Emit.(stateStore)
	if r.store != nil {
		r.prev = r.store.Previous()
	}
	defer r.stop()
	check := c.env.Clock.After(checkInterval)
	rootCheck := c.env.Clock.After(rootCheckInterval)
	housekeeping := c.env.Clock.After(time.Second)
	resync := true
	for {
		if resync {
			r.sync(ctx, c.config())
			resync = false
			housekeeping = c.env.Clock.After(r.tick())
		}
		var changes <-chan fswatch.Change
		if r.w != nil {
			changes = r.w.Changes()
		}
		var acc <-chan access
		if r.w != nil && r.attributing {
			acc = c.probe.accesses()
		}
		r.ackDone()
		select {
		case <-ctx.Done():
			r.flushAll(ctx)
			r.ackDone()
			return nil
		case <-c.changed:
			resync = true
		case <-check:
			check = c.env.Clock.After(checkInterval)
			resync = true
		case <-rootCheck:
			rootCheck = c.env.Clock.After(rootCheckInterval)
			resync = r.checkRoots(ctx) || resync
		case ch, ok := <-changes:
			if !ok {
				r.w = nil
				resync = true
				continue
			}
			r.change(ctx, ch)
		case a := <-acc:
			r.access(ctx, a)
		case <-housekeeping:
			r.housekeep(ctx, false)
			r.resync(ctx)
			housekeeping = c.env.Clock.After(r.tick())
		}
	}
}

type rootState struct {
	folder
	watched bool
	err     error
	missing bool             // did not exist when last tried: what it holds when it appears is new
	tried   fswatch.Identity // what its path was when last added or tried
	told    fswatch.Identity // what its path was said to be in the last event (not a folder)
	bulk    bulkWindow
}

// bulkWindow counts a folder's changes in the current bulk window.
type bulkWindow struct {
	start      time.Time
	n          int            // events in this window
	sent       int            // of them, emitted one by one
	removals   int            // of those, removals (isRemoval) sent
	byType     map[string]int // every event of the window, per type
	suppressed map[string]int // per event type, not emitted individually
	removedIn  map[string]int // suppressed removals per folder they were in
	movedOutTo map[string]int // suppressed moves out per folder they went to
	procs      map[string]int
	users      map[string]int
	last       time.Time
	recs       []uint64                  // OS records behind suppressed events, released with the summary
	snap       map[string]*fswatch.Entry // snapshot edits of suppressed events, saved with the summary
	// source: the window counts changes found by comparing the saved
	// snapshot with the disk (sourceWhileStopped at start, sourceNotRecorded
	// after refused events) and nothing else; outage holds their
	// window_from and window_to. "": live changes.
	source string
	outage event.Attrs
}

type readKey struct {
	path, user, process string
	unlinked            bool // read from a file no longer at path: its own event
}

type readAgg struct {
	a     access
	first time.Time
	count int
	recs  []uint64 // OS records merged in, released when the event is out
}

type held struct {
	ch  fswatch.Change
	due time.Time
}

type runner struct {
	c           *Control
	cfg         config
	w           *fswatch.Watcher
	roots       map[string]*rootState
	attributing bool
	method      string
	attrErr     error
	held        []held
	reads       map[readKey]*readAgg
	recent      map[string][]access
	recentQ     []string // paths in arrival order, to prune recent
	acks        recordAcks
	pid         int

	store   stateStore        // nil: the snapshot is not saved (no spool)
	prev    spool.Previous    // the spool's newest event before this start
	problem string            // attribution problem last reported in the status
	seen    map[string]bool   // roots added since this start
	offline map[string]window // roots compared with their saved snapshot at this start

	// behind: roots whose saved snapshot lags what the watcher saw, because
	// the spool refused an event carrying its edits (disk full), with the
	// earliest time a change in a refused event can have been made.
	behind     map[string]time.Time
	accepted   bool              // the spool stored an event since the last refusal
	resyncTry  time.Time         // last refusal or resync attempted while no event was stored
	unrecorded map[string]window // roots compared with their saved snapshot after refused events

	// lost: roots moved away, removed or replaced while watched, with when
	// that was noticed; unwatched: roots watched again since, with the
	// window their comparison's changes (sourceWhileUnwatched) fall in.
	lost      map[string]time.Time
	unwatched map[string]window
}

// window is when a root went unwatched: from the agent's last event before
// it stopped (or the root's baseline, if later) to the comparison at start.
type window struct{ from, to time.Time }

// ackDone tells the probe how far its records are durable.
func (r *runner) ackDone() {
	if rec, moved := r.acks.done(); moved {
		r.c.probe.ack(rec)
	}
}

func (r *runner) tick() time.Duration {
	d := r.cfg.debounce
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	return d
}

func (r *runner) stop() {
	if r.w != nil {
		w := r.w
		r.w = nil
		go w.Close()
		for range w.Changes() { // Run normally flushes before it returns; this is the panic path
		}
	}
	_ = r.c.probe.close()
}

// sync brings the watcher, the roots and attribution in line with cfg and
// reports the status.
func (r *runner) sync(ctx context.Context, cfg config) {
	c := r.c
	old := r.cfg
	r.cfg = cfg
	if !cfg.mode.Enabled() {
		r.flushAll(ctx)
		r.closeBulks(ctx)
		r.roots = map[string]*rootState{}
		_, _ = c.probe.setRoots(ctx, nil, false)
		r.attributing = false
		r.setStatus(ctx, controls.PolicyOff(), nil)
		return
	}
	if r.w != nil && !old.watcherSame(cfg) {
		r.flushAll(ctx)
	}
	if r.w == nil {
		opt := fswatch.Options{Exclude: cfg.exclude, Debounce: cfg.debounce, Clock: c.env.Clock, Log: c.env.Log}
		if c.tuneWatch != nil {
			c.tuneWatch(&opt)
		}
		w, err := fswatch.New(opt)
		if err != nil {
			r.setStatus(ctx, failStatus("fileaccess.watch_failed", err), nil)
			return
		}
		r.w = w
		r.closeBulks(ctx)
		r.roots = map[string]*rootState{}
	}
	want := map[string]folder{}
	for _, f := range cfg.folders {
		want[f.path] = f
	}
	for p, rs := range r.roots {
		if _, ok := want[p]; !ok {
			_ = r.w.Remove(p) // may never have been added
			r.closeBulk(ctx, rs, c.env.Clock.Now())
			delete(r.roots, p)
			delete(r.behind, p)
			delete(r.unrecorded, p)
			if r.store != nil {
				var keep []string
				for q := range want {
					keep = append(keep, q)
				}
				if err := forgetRoot(r.store, p, keep); err != nil {
					c.env.Log.Warn().Err(err).Str("folder", p).Msg("fileaccess: saved snapshot of a removed folder kept")
				}
			}
		}
	}
	// A folder moved away or replaced (a link, a junction, another folder
	// at its path) is lost before it is added again: what the watcher has
	// ready goes first.
	r.drain(ctx)
	if r.w == nil {
		return // closed under us: Run makes a new one
	}
	for _, ch := range r.w.CheckRoots() {
		r.change(ctx, ch)
	}
	watchedNow := r.w.Roots()
	for _, p := range slices.Sorted(maps.Keys(want)) {
		f := want[p]
		rs := r.roots[p]
		if rs == nil {
			rs = &rootState{folder: f}
			r.roots[p] = rs
		}
		rs.registerID = f.registerID
		if rs.watched && watchedNow[p] {
			continue // CheckRoots found it to be the folder that was added
		}
		rs.tried, _ = fswatch.Identify(p)
		rs.err = r.addRoot(ctx, p, rs.missing)
		rs.watched = rs.err == nil
		rs.missing = rs.err != nil && (rs.missing || errors.Is(rs.err, fs.ErrNotExist))
		r.rootTried(ctx, rs)
	}
	var roots []string
	for p, rs := range r.roots {
		if rs.watched {
			roots = append(roots, p)
		}
	}
	sort.Strings(roots)
	r.method, r.attrErr = c.probe.setRoots(ctx, roots, cfg.mode == policy.Enforce)
	r.attributing = r.attrErr == nil && len(roots) > 0
	if r.attrErr != nil && !errors.Is(r.attrErr, errors.ErrUnsupported) && cfg.mode == policy.Enforce {
		c.env.Log.Warn().Err(r.attrErr).Msg("fileaccess: attribution")
	}
	r.setStatus(ctx, r.verdict(), r.statusAttrs())
}

// addRoot watches root. With a saved snapshot of it, what differs on disk
// is reported: at the first add since start, as changes made while the
// agent was stopped; later (a new watcher after a settings change), as
// reconciled. Without one, the walk is the baseline and is saved; but a
// root that was missing (appeared) was empty when it was first watched for,
// so what it holds now is reported as created (reconciled), as when a
// watched folder is deleted and made again.
func (r *runner) addRoot(ctx context.Context, root string, appeared bool) error {
	if r.w.Roots()[root] {
		return r.w.Add(root)
	}
	var empty map[string]fswatch.Entry // nil: take a baseline
	if appeared {
		empty = map[string]fswatch.Entry{}
		delete(r.offline, root) // made while watched for, not while stopped
		delete(r.unrecorded, root)
	}
	if r.store == nil {
		return r.w.AddFrom(root, empty)
	}
	log := r.c.env.Log
	first := !r.seen[root] // seen once added: a failed add is retried as the start's
	prior, since, err := loadPrior(r.store, root)
	if err != nil {
		// Comparing with it would invent changes; a new baseline is taken,
		// and the log says what cannot be known, not only the local log.
		log.Warn().Err(err).Str("folder", root).Msg("fileaccess: saved snapshot unusable; taking a new baseline")
		prior = nil
		attrs := event.Attrs{"error": "saved snapshot unusable, changes made while the agent was stopped cannot be reported: " +
			errString(err)}
		if first && !r.prev.Time.IsZero() {
			attrs["window_from"] = r.prev.Time.UTC().Format(time.RFC3339Nano)
			attrs["window_to"] = r.c.env.Clock.Now().UTC().Format(time.RFC3339Nano)
		}
		r.emit(ctx, event.Event{Type: TypeError, Severity: event.Warning, Object: root,
			RegisterID: r.registerFor(root), Attrs: attrs})
	}
	if prior == nil {
		if err := r.w.AddFrom(root, empty); err != nil {
			return err
		}
		var others []string
		for p := range r.roots {
			if p != root {
				others = append(others, p)
			}
		}
		r.seen[root] = true
		base := r.w.Snapshot(root)
		if appeared {
			base = nil // each file is saved with its file.created, which is not stored yet
		}
		if err := saveBaseline(r.store, root, others, base, r.c.env.Clock.Now()); err != nil {
			log.Warn().Err(err).Str("folder", root).Msg("fileaccess: baseline not saved; changes while stopped will not be found")
		}
		return nil
	}
	if first && !appeared {
		// Seen until the last stored event; with none since its baseline
		// (killed right after taking it), since then.
		from := r.prev.Time
		if since.After(from) {
			from = since
		}
		r.offline[root] = window{from: from, to: r.c.env.Clock.Now()}
		delete(r.unrecorded, root)
	} else {
		// A later watcher's comparison, or a folder that appeared while
		// the agent ran: what it finds happened while the agent ran
		// (excluded then, missed by a failed watcher, or made since).
		delete(r.offline, root)
		delete(r.unrecorded, root)
		if since, ok := r.behind[root]; ok {
			// Events of the folder were refused: this comparison is its resync.
			r.setUnrecorded(root, window{from: since, to: r.c.env.Clock.Now()})
			delete(r.behind, root)
		}
	}
	if err := r.w.AddFrom(root, prior); err != nil {
		return err
	}
	r.seen[root] = true
	return nil
}

func failStatus(key string, err error) controls.Status {
	return controls.Status{State: controls.Fail, Reason: key, ReasonJA: "ファイルアクセス監視ができません: " + err.Error(),
		ReasonEN: "file access monitoring failed: " + err.Error()}
}

func (r *runner) verdict() controls.Status {
	if len(r.roots) == 0 {
		return controls.Status{State: controls.Unknown, Reason: "fileaccess.no_folders",
			ReasonJA: "監視対象のフォルダが指定されていません", ReasonEN: "no folders to watch are configured"}
	}
	paths := make([]string, 0, len(r.roots))
	for p := range r.roots {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	// Every missing or unreadable folder is named: an admin fixing the
	// first one named should not learn of the next only after that.
	var missing, unreadable, replaced, replacedJA []string
	for _, p := range paths {
		rs := r.roots[p]
		if rs.watched {
			continue
		}
		var nf *fswatch.NotFolderError
		switch {
		case errors.As(rs.err, &nf):
			replaced = append(replaced, p+" (now "+nf.Now.String()+")")
			replacedJA = append(replacedJA, p+" ("+kindJA(nf.Now)+")")
		case errors.Is(rs.err, fswatch.ErrWatchLimit):
			return controls.Status{State: controls.Fail, Reason: "fileaccess.watch_limit",
				ReasonJA: "OSの監視数の上限に達しました (fs.inotify.max_user_watches を増やしてください): " + p,
				ReasonEN: "the OS watch limit is reached (raise fs.inotify.max_user_watches): " + p}
		case errors.Is(rs.err, fs.ErrNotExist) || rs.err == nil:
			missing = append(missing, p)
		case errors.Is(rs.err, fs.ErrPermission):
			unreadable = append(unreadable, p)
		default:
			return failStatus("fileaccess.root_failed", rs.err)
		}
	}
	if len(missing)+len(unreadable)+len(replaced) > 0 {
		var ja, en []string
		if len(replaced) > 0 {
			ja = append(ja, "監視対象のフォルダが別のものに置き換えられています (リンクはたどらず、監視していません): "+pathList(replacedJA, "、", "ほか %d 件"))
			en = append(en, plural(len(replaced), "a watched folder's path is not the folder (a link is not followed; not watched): ",
				"watched folders' paths are not the folders (a link is not followed; not watched): ")+pathList(replaced, ", ", "and %d more"))
		}
		if len(missing) > 0 {
			ja = append(ja, "監視対象のフォルダがありません: "+pathList(missing, "、", "ほか %d 件"))
			en = append(en, plural(len(missing), "a watched folder does not exist: ", "watched folders do not exist: ")+pathList(missing, ", ", "and %d more"))
		}
		if len(unreadable) > 0 {
			ja = append(ja, "監視対象のフォルダを読めません: "+pathList(unreadable, "、", "ほか %d 件"))
			en = append(en, plural(len(unreadable), "a watched folder cannot be read: ", "watched folders cannot be read: ")+pathList(unreadable, ", ", "and %d more"))
		}
		reason := "fileaccess.root_missing"
		switch {
		case len(replaced) > 0:
			reason = "fileaccess.root_replaced"
		case len(missing) == 0:
			reason = "fileaccess.root_unreadable"
		}
		return controls.Status{State: controls.Fail, Reason: reason, ReasonJA: strings.Join(ja, "。"), ReasonEN: strings.Join(en, "; ")}
	}
	if r.cfg.mode == policy.Enforce && r.attrErr != nil && !errors.Is(r.attrErr, errors.ErrUnsupported) {
		return controls.Status{State: controls.Fail, Reason: "fileaccess.audit_failed",
			ReasonJA: "OSの監査設定に失敗しました: " + r.attrErr.Error(),
			ReasonEN: "turning on OS auditing failed: " + r.attrErr.Error()}
	}
	if _, problem := r.auditState(); problem != "" && r.attributing {
		// Changes are still recorded, but without who made them: not a pass.
		return controls.Status{State: controls.Unknown, Reason: "fileaccess.attribution_degraded",
			ReasonJA: "フォルダは監視していますが、操作したユーザーを特定できません: " + problem,
			ReasonEN: "folders are watched but users cannot be attributed: " + problem}
	}
	return controls.Status{State: controls.Pass, Reason: "fileaccess.watching",
		ReasonJA: "すべての対象フォルダを監視しています", ReasonEN: "all folders are watched"}
}

// auditState asks probes that depend on the OS's own audit log (Windows)
// for its policy and for what keeps attribution from working.
func (r *runner) auditState() (policy, problem string) {
	if a, ok := r.c.probe.(interface{ auditState() (string, string) }); ok {
		return a.auditState()
	}
	return "", ""
}

func (r *runner) statusAttrs() event.Attrs {
	a := event.Attrs{"folders": len(r.roots)}
	if r.w != nil {
		a["watched_dirs"] = r.w.Stats().WatchedDir
	}
	if r.attrErr != nil {
		a["attribution"] = "unavailable: " + r.attrErr.Error()
	} else if r.method != "" {
		a["attribution"] = r.method
		if m, ok := r.c.probe.(interface{ markScope() string }); ok {
			if s := m.markScope(); s != "" {
				a["fanotify_marks"] = s // what the kernel sees: the folders, or whole mounts
			}
		}
		if pol, problem := r.auditState(); pol != "" || problem != "" {
			a["audit_policy"] = pol
			if problem != "" {
				a["attribution_problem"] = problem
			}
		}
		if m, ok := r.c.probe.(interface{ processEvents() string }); ok {
			if s := m.processEvents(); s != "" {
				a["processes"] = s // how a process that exits at once still gets its user
			}
		}
	}
	return a
}

func (r *runner) setStatus(ctx context.Context, st controls.Status, attrs event.Attrs) {
	if err := r.c.reporter.Set(ctx, st, attrs); err != nil && ctx.Err() == nil {
		r.c.env.Log.Error().Err(err).Msg("fileaccess: status event")
	}
}

// change takes one debounced change from the watcher.
func (r *runner) change(ctx context.Context, ch fswatch.Change) {
	switch ch.Op {
	case fswatch.Error:
		if rs := r.roots[ch.Root]; rs != nil && errors.Is(ch.Err, fswatch.ErrWatchLimit) {
			rs.watched, rs.err = false, ch.Err
			r.setStatus(ctx, r.verdict(), r.statusAttrs())
		}
		r.emit(ctx, event.Event{Type: TypeError, Severity: event.Warning, Object: ch.Path,
			RegisterID: r.registerFor(ch.Path), Attrs: event.Attrs{"error": errString(ch.Err)}})
		return
	case fswatch.Overflow:
		r.flushHeld(ctx, true)
		r.emit(ctx, event.Event{Type: TypeOverflow, Severity: event.Warning, Object: ch.Root,
			RegisterID: r.registerFor(ch.Root), Attrs: event.Attrs{
				"reconciled": ch.Count,
				"note_en":    "the OS dropped file notifications; changes since were found by rescanning and may be merged",
				"note_ja":    "OSの通知があふれたため再走査しました。変更がまとめられている可能性があります",
			}})
		return
	}
	if ch.Op == fswatch.Attrib {
		// Never on Windows (no change time), so nothing held for
		// attribution can be saved after it.
		r.saveQuiet(ch)
		return
	}
	if ch.Path == ch.Root && ch.Op == fswatch.Deleted {
		if rs := r.roots[ch.Root]; rs != nil {
			rs.watched, rs.err = false, lostErr(ch)
			rs.tried, rs.told = ch.Now, fswatch.Identity{}
			if ch.Now.Kind != "" && ch.Now.Kind != fswatch.KindDir {
				rs.told = ch.Now // the event says what is there
			}
			if _, ok := r.lost[ch.Root]; !ok {
				r.lost[ch.Root] = r.c.env.Clock.Now()
			}
			delete(r.unwatched, ch.Root)
			defer r.setStatus(ctx, r.verdict(), r.statusAttrs())
			// Resync at once: attribution is pointed away from the folder
			// (its marks were on the folder that left), and another folder
			// at its path is watched.
			select {
			case r.c.changed <- struct{}{}:
			default:
			}
		}
	}
	if d := r.c.probe.joinDelay(); r.attributing && d > 0 {
		r.held = append(r.held, held{ch: ch, due: r.c.env.Clock.Now().Add(d)})
		return
	}
	r.record(ctx, ch)
}

// sequenceAttrs keeps what a coalesced change merged: every name the file
// had (a rename's target survives a delete in the same window), whether it
// was written to, whether it existed only within the window, and the raw
// operations when they were of more than one kind.
func sequenceAttrs(a event.Attrs, ch fswatch.Change) {
	if len(ch.Names) > 1 {
		names := make([]any, len(ch.Names))
		for i, n := range ch.Names {
			names[i] = n
		}
		a["names"] = names
		if last := ch.Names[len(ch.Names)-1]; ch.Op == fswatch.Deleted && last != ch.Path {
			a["deleted_as"] = last
		}
	}
	if ch.Transient {
		a["transient"] = true
	}
	if ch.Raw.Write > 0 && ch.Op != fswatch.Modified {
		a["modified"] = true
	}
	ops := event.Attrs{}
	for k, n := range map[string]int{"create": ch.Raw.Create, "write": ch.Raw.Write, "remove": ch.Raw.Remove,
		"rename": ch.Raw.Rename, "chmod": ch.Raw.Chmod} {
		if n > 0 {
			ops[k] = n
		}
	}
	if len(ops) > 1 {
		a["ops"] = ops
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// record turns a change into an event (or a bulk count).
func (r *runner) record(ctx context.Context, ch fswatch.Change) {
	typ := map[fswatch.Op]string{fswatch.Created: TypeCreated, fswatch.Modified: TypeModified,
		fswatch.Deleted: TypeDeleted, fswatch.Renamed: TypeRenamed}[ch.Op]
	if typ == "" {
		return
	}
	e := event.Event{Type: typ, Severity: event.Info, Object: ch.Path, RegisterID: r.registerFor(ch.Path),
		Attrs: event.Attrs{"size": ch.Size, "count": ch.Count}}
	if ch.IsDir {
		e.Attrs["dir"] = true
	}
	if ch.OldPath != "" {
		e.Attrs["old_path"] = ch.OldPath
	}
	if ch.Reconciled {
		e.Attrs["reconciled"] = true
	}
	switch {
	case ch.TimesRestored:
		// Proof of an edit hidden by putting the mtime back: flagged.
		e.Severity = event.Warning
		e.Attrs["times_restored"] = true
		e.Attrs["note_en"] = "written, yet size and modification time are as before: the modification time was put back (e.g. touch -r)"
		e.Attrs["note_ja"] = "書き込まれましたが、サイズと更新日時が元のままです。更新日時が戻されています (touch -r など)"
	case ch.CTimeOnly:
		// Found by a comparison, which cannot tell a hidden edit from a
		// chmod: reported, saying so.
		e.Attrs["ctime_only"] = true
		e.Attrs["note_en"] = "size and modification time are as before but the inode change time moved: " +
			"the content was edited and its modification time put back, or permissions, owner or links changed"
		e.Attrs["note_ja"] = "サイズと更新日時は元のままですが、inode変更時刻 (ctime) が変わっています。" +
			"内容が編集されて更新日時が戻されたか、権限・所有者・リンクが変更されました"
	}
	sequenceAttrs(e.Attrs, ch)
	win, found := r.unwatched[ch.Root]
	source := sourceWhileUnwatched
	if !found {
		win, found = r.unrecorded[ch.Root]
		source = sourceNotRecorded
	}
	if !found {
		win, found = r.offline[ch.Root]
		source = sourceWhileStopped
	}
	if found && ch.Prior {
		e.Attrs["attribution_source"] = source
		if !win.from.IsZero() {
			e.Attrs["window_from"] = win.from.UTC().Format(time.RFC3339Nano)
		}
		e.Attrs["window_to"] = win.to.UTC().Format(time.RFC3339Nano)
		r.countOrEmit(ctx, ch.Root, e, ch.Snap)
		return
	}
	if ch.Op == fswatch.Deleted && ch.Path == ch.Root {
		// The watched folder itself was moved away or deleted: one event,
		// with what it still held (moved with it) as a number.
		e.Severity = event.Warning
		e.Attrs["watched_folder"] = true
		if ch.Contents > 0 {
			e.Attrs["contents"] = ch.Contents
		}
		lostAttrs(e.Attrs, ch.Was, ch.Now)
	}
	if ch.Op == fswatch.Deleted && ch.With != "" {
		// Left with its folder (moved out), with no operation of its own:
		// the folder's mover moved it, to the same place under the
		// folder's destination. Its own last writer has nothing to do with it.
		e.Attrs["moved_with"] = ch.With
		folder := fswatch.Change{Op: fswatch.Deleted, Path: ch.With, Root: ch.Root}
		if a, ok := r.attribute(folder); ok {
			r.attributed(&e, fswatch.Deleted, a)
		}
		if to := r.movedOut(folder); to != "" {
			e.Attrs["moved_to"] = to + ch.Path[len(ch.With):]
		}
		r.countOrEmit(ctx, ch.Root, e, ch.Snap)
		return
	}
	if a, ok := r.attribute(ch); ok {
		r.attributed(&e, ch.Op, a)
	}
	if ch.Op == fswatch.Deleted {
		if to := r.movedOut(ch); to != "" {
			e.Attrs["moved_to"] = to
		}
	}
	r.countOrEmit(ctx, ch.Root, e, ch.Snap)
}

// attributed puts the user and process of a, the access joined to a change
// of kind op, on e.
func (r *runner) attributed(e *event.Event, op fswatch.Op, a access) {
	r.identify(&a)
	e.User, e.Process = a.User, a.Process
	e.Attrs["attribution_source"] = sourceLastWriter
	if observes(op, a) {
		e.Attrs["attribution_source"] = sourceObserved
	}
	if a.PID > 0 {
		e.Attrs["pid"] = a.PID
	}
	if a.Mask != 0 {
		e.Attrs["access_mask"] = "0x" + strconv.FormatUint(uint64(a.Mask), 16)
	}
	if a.Unlinked {
		e.Attrs["unlinked"] = true // the access was to a file no longer at the path when read
	}
}

// countOrEmit applies the folder's bulk limit: the first threshold events of
// a window go out one by one, the rest are counted into the summary, except
// removals (deletions, moves out, renames: see isRemoval), which go out one
// by one up to the much higher removal limit, so that a burst of harmless
// changes cannot hide them. recs, the OS records behind e, are released once
// e (or its summary) is out; snap, the snapshot edits e reflects, are saved
// with e (or its summary).
func (r *runner) countOrEmit(ctx context.Context, root string, e event.Event, snap map[string]*fswatch.Entry, recs ...uint64) {
	rs := r.roots[root]
	if rs == nil {
		rs = r.roots[r.rootFor(e.Object)]
	}
	if rs == nil {
		r.emitState(ctx, e, snap)
		r.acks.release(recs...)
		return
	}
	now := r.c.env.Clock.Now()
	b := &rs.bulk
	// Changes found by comparing the saved snapshot (at start, or after
	// refused events) and live ones are summarised apart: the window must
	// cover exactly the changes the agent did not see happen or record.
	source, _ := e.Attrs["attribution_source"].(string)
	if source != sourceWhileStopped && source != sourceNotRecorded && source != sourceWhileUnwatched {
		source = ""
	}
	if b.start.IsZero() || now.Sub(b.start) >= r.cfg.window || b.source != source {
		r.closeBulk(ctx, rs, now)
		b.start, b.source = now, source
		if source != "" {
			b.outage = event.Attrs{}
			for _, k := range []string{"window_from", "window_to"} {
				if v, ok := e.Attrs[k]; ok {
					b.outage[k] = v
				}
			}
		}
	}
	b.n++
	b.last = now
	if b.byType == nil {
		b.byType, b.procs, b.users = map[string]int{}, map[string]int{}, map[string]int{}
	}
	b.byType[e.Type]++
	if e.Process != "" {
		b.procs[e.Process]++
	}
	if e.User != "" {
		b.users[e.User]++
	}
	removal := isRemoval(e)
	if b.n <= r.cfg.threshold || removal && b.removals < r.removalLimit() {
		if removal {
			b.removals++
		}
		b.sent++
		r.emitState(ctx, e, snap)
		r.acks.release(recs...)
		return
	}
	b.recs = append(b.recs, recs...)
	if len(snap) > 0 {
		if b.snap == nil {
			b.snap = map[string]*fswatch.Entry{}
		}
		for p, se := range snap {
			b.snap[p] = se
		}
	}
	if b.suppressed == nil {
		b.suppressed = map[string]int{}
	}
	b.suppressed[e.Type]++
	if removal {
		// Past the removal limit: where they were, and where they went.
		b.removedIn = countFolder(b.removedIn, filepath.Dir(e.Object))
		if to, ok := e.Attrs["moved_to"].(string); ok && to != "" {
			b.movedOutTo = countFolder(b.movedOutTo, filepath.Dir(to))
		}
	}
}

// defaultRemovalLimit is how many removals (isRemoval) a folder's bulk
// window sends one by one, at least; 10 x bulk_threshold when that is more.
const defaultRemovalLimit = 10000

func (r *runner) removalLimit() int {
	if n := r.c.removalLimit; n > 0 {
		return n // tests
	}
	return max(defaultRemovalLimit, 10*r.cfg.threshold)
}

// isRemoval says whether e takes data away from where it was: a deletion,
// a move out of the watched folders (file.deleted with moved_to) or a
// rename. These are sent one by one however busy the folder is (up to the
// removal limit), so harmless changes cannot hide them in a summary's count.
func isRemoval(e event.Event) bool {
	return e.Type == TypeDeleted || e.Type == TypeRenamed
}

// maxFolders bounds the folders a summary lists (removed_in, moved_out_to),
// and foldersKept those a window keeps while counting.
const (
	maxFolders  = 10
	foldersKept = 4096
)

// countFolder counts one more path in folder dir.
func countFolder(m map[string]int, dir string) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	m[dir]++
	if len(m) > foldersKept {
		m = commonFolders(m, foldersKept/2)
	}
	return m
}

// commonFolders merges the deepest folders of m into their parents until
// at most n remain: each count is then of paths at or below its folder.
func commonFolders(m map[string]int, n int) map[string]int {
	out := maps.Clone(m)
	for len(out) > n {
		deepest := -1
		for p := range out {
			deepest = max(deepest, strings.Count(p, string(filepath.Separator)))
		}
		merged := false
		for _, p := range slices.Sorted(maps.Keys(out)) {
			if strings.Count(p, string(filepath.Separator)) != deepest {
				continue
			}
			parent := filepath.Dir(p)
			if parent == p {
				continue
			}
			out[parent] += out[p]
			delete(out, p)
			merged = true
			if len(out) <= n {
				break
			}
		}
		if !merged {
			break // all at the top of the filesystem
		}
	}
	return out
}

func folderAttrs(m map[string]int) event.Attrs {
	a := event.Attrs{}
	for p, n := range commonFolders(m, maxFolders) {
		a[p] = n
	}
	return a
}

// verbs of the summary line, by event type.
var verbs = map[string]string{TypeCreated: "created", TypeModified: "modified", TypeDeleted: "deleted",
	TypeRenamed: "renamed", TypeRead: "read"}

// summaryLine says what a window's events were, by type: "462 files read in
// 73ms by diff", "307 file events in 4s by cp: 303 created, 4 deleted".
func summaryLine(byType map[string]int, total int, when, proc string) string {
	if len(byType) == 1 {
		for t := range byType {
			v := verbs[t]
			if v == "" {
				v = "changed"
			}
			s := fmt.Sprintf("%s files %s %s", group(total), v, when)
			if proc != "" {
				s += " by " + filepath.Base(proc)
			}
			return s
		}
	}
	s := fmt.Sprintf("%s file events %s", group(total), when)
	if proc != "" {
		s += " by " + filepath.Base(proc)
	}
	types := slices.Collect(maps.Keys(byType))
	sort.Slice(types, func(i, j int) bool {
		return byType[types[i]] > byType[types[j]] || byType[types[i]] == byType[types[j]] && types[i] < types[j]
	})
	var parts []string
	for _, t := range types {
		v := verbs[t]
		if v == "" {
			v = strings.TrimPrefix(t, "file.")
		}
		parts = append(parts, group(byType[t])+" "+v)
	}
	return s + ": " + strings.Join(parts, ", ")
}

// closeBulk emits the summary of a window that went over the threshold
// (its events were counted, or only removals went out one by one past it).
func (r *runner) closeBulk(ctx context.Context, rs *rootState, now time.Time) {
	b := &rs.bulk
	if b.n > r.cfg.threshold {
		suppressed := 0
		counts := event.Attrs{}
		for k, v := range b.suppressed {
			suppressed += v
			counts[strings.TrimPrefix(k, "file.")] = v
		}
		totals := event.Attrs{}
		for k, v := range b.byType {
			totals[strings.TrimPrefix(k, "file.")] = v
		}
		a := event.Attrs{
			"suppressed":   suppressed,
			"counts":       counts,
			"totals":       totals,
			"individually": b.sent,
			"total":        b.n,
			"window":       r.cfg.window.String(),
			"from":         b.start.UTC().Format(time.RFC3339Nano),
			"to":           b.last.UTC().Format(time.RFC3339Nano),
			"threshold":    r.cfg.threshold,
		}
		if b.removals > 0 {
			a["removals_individually"] = b.removals
		}
		if len(b.removedIn) > 0 {
			a["removed_in"] = folderAttrs(b.removedIn)
		}
		if len(b.movedOutTo) > 0 {
			a["moved_out_to"] = folderAttrs(b.movedOutTo)
		}
		proc, user := top(b.procs), top(b.users)
		if len(b.procs) > 0 {
			a["processes"] = topN(b.procs, 5)
		}
		summary := summaryLine(b.byType, b.n, "in "+roundDur(b.last.Sub(b.start)), proc)
		if b.source != "" {
			// from and to are when they were found; when they happened is the window.
			a["attribution_source"] = b.source
			maps.Copy(a, b.outage)
			when := "while the agent was stopped"
			switch b.source {
			case sourceNotRecorded:
				when = "while the agent could not record events"
			case sourceWhileUnwatched:
				when = "while the folder was moved away or replaced"
			}
			summary = summaryLine(b.byType, b.n, when, proc)
		}
		a["summary"] = summary
		e := event.Event{Type: TypeBulk, Severity: event.Warning, Object: rs.path, RegisterID: rs.registerID,
			User: user, Process: proc, Attrs: a}
		r.emitState(ctx, e, b.snap)
	}
	r.acks.release(b.recs...)
	*b = bulkWindow{}
}

// closeBulks closes every folder's bulk window, before the folders are forgotten.
func (r *runner) closeBulks(ctx context.Context) {
	now := r.c.env.Clock.Now()
	for _, rs := range r.roots {
		r.closeBulk(ctx, rs, now)
	}
}

func top(m map[string]int) string {
	best, n := "", 0
	for k, v := range m {
		if v > n || v == n && k < best {
			best, n = k, v
		}
	}
	return best
}

func topN(m map[string]int, n int) event.Attrs {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	out := event.Attrs{}
	for i, k := range keys {
		if i == n {
			out["(others)"] = len(keys) - n
			break
		}
		out[k] = m[k]
	}
	return out
}

// group writes n with thousands separators ("1,243").
func group(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func roundDur(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func (r *runner) rootFor(p string) string {
	best := ""
	for root := range r.roots {
		if fswatch.Within(p, root) && len(root) > len(best) {
			best = root
		}
	}
	return best
}

// registerFor is the register id of the innermost folder holding p.
func (r *runner) registerFor(p string) string {
	best, id := "", ""
	for _, f := range r.cfg.folders {
		if fswatch.Within(p, f.path) && len(f.path) > len(best) && f.registerID != "" {
			best, id = f.path, f.registerID
		}
	}
	return id
}

// access records an attributed OS access: kept for joining to changes, and
// read-only accesses merged into file.read events.
func (r *runner) access(ctx context.Context, a access) {
	root := r.rootFor(a.Path)
	if root == "" {
		r.acks.hold(a.Record)
		r.acks.release(a.Record)
		return
	}
	r.acks.hold(a.Record) // released with its event, or when it ages out of recent
	if a.Read && !a.Write && !a.Delete {
		if r.excluded(a.Path) {
			r.acks.release(a.Record)
			return
		}
		k := readKey{a.Path, a.User, a.Process, a.Unlinked}
		if g := r.reads[k]; g != nil {
			g.count++
			g.a.Mask |= a.Mask
			g.recs = appendRec(g.recs, a.Record)
			return
		}
		r.reads[k] = &readAgg{a: a, first: r.c.env.Clock.Now(), count: 1, recs: appendRec(nil, a.Record)}
		return
	}
	r.recent[a.Path] = append(r.recent[a.Path], a)
	r.recentQ = append(r.recentQ, a.Path)
}

func appendRec(recs []uint64, rec uint64) []uint64 {
	if rec == 0 {
		return recs
	}
	return append(recs, rec)
}

func (r *runner) excluded(p string) bool { return fswatch.Excluded(r.cfg.exclude, p) }

// observes says whether a is an OS record of the operation op itself rather
// than another access of the same path. A Windows rename needs DELETE on the
// source, so a 4663 delete access observes a rename. A file moved in from
// outside the folders (created, or modified when it replaced a file of that
// name) is made by the move: the rename under its new name observes it.
func observes(op fswatch.Op, a access) bool {
	movedIn := a.Rename && a.NewName
	switch op {
	case fswatch.Deleted:
		return a.Delete || a.MovedTo != "" // deleted, or moved out of the folders
	case fswatch.Renamed:
		return a.Rename || a.Delete
	case fswatch.Created:
		return a.Create || a.Write || movedIn
	}
	return a.Write || movedIn
}

// attribute finds the OS access behind a change: of those on the path (or
// its old name), the latest one that observes the change (see observes),
// else the latest of any kind, with the access masks of the same user and
// process merged.
func (r *runner) attribute(ch fswatch.Change) (access, bool) {
	var cands []access
	for _, p := range []string{ch.Path, ch.OldPath} {
		if p != "" {
			cands = append(cands, r.recent[p]...)
		}
	}
	if len(cands) == 0 {
		return access{}, false
	}
	pref := func(a access) bool { return observes(ch.Op, a) }
	best := 0
	for i, a := range cands[1:] {
		b := cands[best]
		if pref(a) && !pref(b) || pref(a) == pref(b) && !a.Time.Before(b.Time) {
			best = i + 1
		}
	}
	b := cands[best]
	for _, a := range cands {
		if a.User == b.User && a.Process == b.Process {
			b.Mask |= a.Mask
		}
	}
	return b, true
}

// identify completes a's user and program from the probe when the access
// was read before they were known (a process that had exited already).
func (r *runner) identify(a *access) {
	if a.PID <= 0 || a.User != "" && a.Process != "" {
		return
	}
	id, ok := r.c.probe.(interface {
		identify(pid int) (string, string)
	})
	if !ok {
		return
	}
	u, exe := id.identify(a.PID)
	if a.User == "" {
		a.User = u
	}
	if a.Process == "" {
		a.Process = exe
	}
}

// movedOut returns where a file reported deleted went, when the OS said it
// was renamed to a place outside the watched folders.
func (r *runner) movedOut(ch fswatch.Change) string {
	names := append([]string{ch.Path}, ch.Names...)
	for _, p := range names {
		l := r.recent[p]
		for i := len(l) - 1; i >= 0; i-- {
			if to := l[i].MovedTo; to != "" && r.rootFor(to) == "" {
				return to
			}
		}
	}
	return ""
}

// housekeep releases held changes that are due, emits merged reads, closes
// expired bulk windows and forgets old access records.
func (r *runner) housekeep(ctx context.Context, all bool) {
	now := r.c.env.Clock.Now()
	if _, problem := r.auditState(); r.attributing && problem != r.problem {
		// The OS log broke (or works again) since the last status: say so now.
		r.problem = problem
		r.setStatus(ctx, r.verdict(), r.statusAttrs())
	}
	r.flushHeld(ctx, all)
	var keys []readKey
	for k, g := range r.reads {
		if all || now.Sub(g.first) >= r.cfg.debounce {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].path < keys[j].path })
	for _, k := range keys {
		g := r.reads[k]
		delete(r.reads, k)
		r.identify(&g.a)
		e := event.Event{Type: TypeRead, Severity: event.Info, Object: k.path, User: g.a.User, Process: g.a.Process,
			RegisterID: r.registerFor(k.path), Attrs: event.Attrs{"count": g.count}}
		if g.a.PID > 0 {
			e.Attrs["pid"] = g.a.PID
		}
		if g.a.Mask != 0 {
			e.Attrs["access_mask"] = "0x" + strconv.FormatUint(uint64(g.a.Mask), 16)
		}
		if k.unlinked {
			e.Attrs["unlinked"] = true // what was read is not what the path holds now
		} else if fi, err := os.Stat(k.path); err == nil {
			e.Attrs["size"] = fi.Size()
		}
		r.countOrEmit(ctx, r.rootFor(k.path), e, nil, g.recs...)
	}
	for _, rs := range r.roots {
		if !rs.bulk.start.IsZero() && (all || now.Sub(rs.bulk.start) >= r.cfg.window) {
			r.closeBulk(ctx, rs, now)
		}
	}
	keep := accessKeep + r.c.probe.joinDelay()
	for len(r.recentQ) > 0 {
		p := r.recentQ[0]
		l := r.recent[p]
		if len(l) > 0 && now.Sub(l[0].Time) < keep && !all {
			break
		}
		r.recentQ = r.recentQ[1:]
		if len(l) > 0 {
			r.acks.release(l[0].Record) // a write or delete record: its join window is over
		}
		if len(l) <= 1 {
			delete(r.recent, p)
		} else {
			r.recent[p] = l[1:]
		}
	}
}

func (r *runner) flushHeld(ctx context.Context, all bool) {
	now := r.c.env.Clock.Now()
	i := 0
	for ; i < len(r.held); i++ {
		if !all && r.held[i].due.After(now) {
			break
		}
		r.record(ctx, r.held[i].ch)
	}
	r.held = r.held[i:]
}

// flushAll closes the watcher, records every change it still had pending
// and everything held here, for shutdown and reconfiguration.
func (r *runner) flushAll(ctx context.Context) {
	ctx = context.WithoutCancel(ctx) // what was seen is recorded even on shutdown
	if w := r.w; w != nil {
		r.w = nil
		go w.Close() // flushes into Changes, which closes when read to the end
		for ch := range w.Changes() {
			r.change(ctx, ch)
		}
	}
	r.housekeep(ctx, true)
}

func (r *runner) emit(ctx context.Context, e event.Event) { r.emitState(ctx, e, nil) }

// saveQuiet saves snapshot edits no event reports (fswatch.Attrib: a chmod,
// change times learnt from an old snapshot), so the next comparison does
// not take them for edits. While the folder's bulk window holds edits they
// go with its summary, else that older state would be saved after them.
func (r *runner) saveQuiet(ch fswatch.Change) {
	if r.store == nil || len(ch.Snap) == 0 {
		return
	}
	if rs := r.roots[ch.Root]; rs != nil && rs.bulk.snap != nil {
		maps.Copy(rs.bulk.snap, ch.Snap)
		return
	}
	if err := r.store.SaveState(*snapState(ch.Snap)); err != nil {
		r.c.env.Log.Error().Err(err).Str("path", ch.Path).Msg("fileaccess: save snapshot")
		r.refused(event.Event{Time: r.c.env.Clock.Now()}, ch.Snap)
	}
}

// emitState emits e and saves the snapshot edits it reflects in the same
// commit (when the spool can); an event that is not stored leaves the saved
// snapshot behind: its folder is marked behind, and once the spool stores
// events again resync compares the saved snapshot with the disk and
// reports the change as not_recorded (or, if the agent stops first, the
// next start finds it).
func (r *runner) emitState(ctx context.Context, e event.Event, snap map[string]*fswatch.Entry) {
	e.Control = Name
	if e.Time.IsZero() {
		e.Time = r.c.env.Clock.Now()
	}
	escapeNames(&e)
	var err error
	if st := snapState(snap); st != nil && r.store != nil {
		err = r.store.EmitState(ctx, e, st)
	} else {
		err = r.c.env.Emit.Emit(ctx, e)
	}
	if err == nil {
		r.accepted = true
		return
	}
	if ctx.Err() == nil {
		r.c.env.Log.Error().Err(err).Str("type", e.Type).Msg("fileaccess: emit")
	}
	r.refused(e, snap)
}

// refused marks the folders whose snapshot edits e carried as behind.
func (r *runner) refused(e event.Event, snap map[string]*fswatch.Entry) {
	if r.store == nil || len(snap) == 0 {
		return // nothing saved, or nothing of the snapshot lost
	}
	// Still refused: a resync is not tried before events are stored again,
	// or checkInterval passed without any (an idle folder).
	r.accepted, r.resyncTry = false, r.c.env.Clock.Now()
	since := r.earliestChange(e)
	for p := range snap {
		root := r.rootFor(p)
		if root == "" {
			continue
		}
		if r.behind == nil {
			r.behind = map[string]time.Time{}
		}
		if t, ok := r.behind[root]; !ok || since.Before(t) {
			r.behind[root] = since
		}
	}
}

// earliestChange is the earliest time a change reported by e can have been
// made: its time, a summary's from, a found change's window_from, less how
// long the watcher may hold a busy path (fswatch's default MaxDelay, 20 x
// debounce) and the wait for its attribution.
func (r *runner) earliestChange(e event.Event) time.Time {
	t := e.Time
	for _, k := range []string{"from", "window_from"} {
		if s, ok := e.Attrs[k].(string); ok {
			if v, err := time.Parse(time.RFC3339Nano, s); err == nil && v.Before(t) {
				t = v
			}
		}
	}
	if e.Attrs["attribution_source"] == sourceWhileStopped || e.Attrs["attribution_source"] == sourceNotRecorded {
		return t // window_from already bounds it
	}
	return t.Add(-20*r.cfg.debounce - r.c.probe.joinDelay())
}

func (r *runner) setUnrecorded(root string, w window) {
	if r.unrecorded == nil {
		r.unrecorded = map[string]window{}
	}
	r.unrecorded[root] = w
	delete(r.unwatched, root)
}

// resync runs, for each folder whose saved snapshot is behind, the
// comparison start-up runs (the saved snapshot against the disk), once the
// spool stores events again (or every checkInterval, to find out): what
// it finds is reported as changes made while the agent could not record
// them, attribution_source not_recorded, window_from the earliest refused
// change, window_to now. Their events bring the saved snapshot up to date,
// so a later start finds nothing more.
func (r *runner) resync(ctx context.Context) {
	if len(r.behind) == 0 || r.w == nil || ctx.Err() != nil {
		return
	}
	if r.store == nil {
		clear(r.behind)
		return
	}
	now := r.c.env.Clock.Now()
	if !r.accepted && now.Sub(r.resyncTry) < checkInterval {
		return
	}
	r.resyncTry = now
	// Record what the watcher has handed over and what waits for its
	// attribution, and close the bulk windows: their edits are saved with
	// their events, so the comparison does not report them again.
	r.drain(ctx)
	r.flushHeld(ctx, true)
	for _, root := range slices.Sorted(maps.Keys(r.behind)) {
		rs := r.roots[root]
		if rs == nil {
			delete(r.behind, root)
			continue
		}
		if !rs.watched || r.w == nil {
			continue // compared when it is added again (addRoot)
		}
		r.closeBulk(ctx, rs, now)
		since := r.behind[root]
		prior, _, err := loadPrior(r.store, root)
		if err != nil || prior == nil {
			r.c.env.Log.Warn().Err(err).Str("folder", root).Msg("fileaccess: no saved snapshot to resync; changes not recorded are lost")
			delete(r.behind, root)
			continue
		}
		_ = r.w.Remove(root)
		delete(r.offline, root)
		r.setUnrecorded(root, window{from: since, to: now})
		delete(r.behind, root)
		if err := r.w.AddFrom(root, prior); err != nil {
			// Added again by the next sync, whose comparison is the resync.
			r.behind[root] = since
			delete(r.unrecorded, root)
			rs.watched, rs.err = false, err
			r.setStatus(ctx, r.verdict(), r.statusAttrs())
		}
	}
}

// drain records the changes the watcher has ready now, without waiting.
func (r *runner) drain(ctx context.Context) {
	for r.w != nil {
		select {
		case ch, ok := <-r.w.Changes():
			if !ok {
				return // Run sees it closed
			}
			r.change(ctx, ch)
		default:
			return
		}
	}
}

// pathList joins up to 5 paths with sep and counts the rest with more.
func pathList(ps []string, sep, more string) string {
	const shown = 5
	if len(ps) <= shown {
		return strings.Join(ps, sep)
	}
	return strings.Join(ps[:shown], sep) + sep + fmt.Sprintf(more, len(ps)-shown)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
