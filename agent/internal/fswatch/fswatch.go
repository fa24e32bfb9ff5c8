// Package fswatch watches directory trees recursively on top of fsnotify,
// which has no public recursive watch. It walks each root and watches every
// directory, watches and scans directories as they appear (so files created
// before their directory's watch was added are not missed), keeps a snapshot
// (path -> size, mtime, is-dir, inode, change time) per root, debounces bursts per path into one
// Change with counts, pairs renames where the OS gives both names, and on a
// queue overflow rescans and reconciles the tree against the snapshot.
//
// Used by the fileaccess control (folders holding personal data) and the
// media control (files written to a removable volume).
package fswatch

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// Op is what happened to a path.
type Op string

const (
	Created  Op = "created"
	Modified Op = "modified"
	Deleted  Op = "deleted"
	Renamed  Op = "renamed"
	// Overflow says the OS dropped events; the Changes that came just before
	// it for the same Root were found by reconciling against the snapshot
	// and may merge several operations. Count is how many changes the
	// reconciliation found.
	Overflow Op = "overflow"
	// Error reports a directory that could not be watched (Err says why,
	// e.g. ErrWatchLimit); changes below it are missed until the next rescan.
	Error Op = "error"
	// Attrib is nothing to report: only the snapshot changed. Either a
	// file's inode metadata changed without a write (chmod, chown, links,
	// xattrs: the change time moved, size and mtime did not, and the OS
	// reported no write), or a comparison with a prior snapshot saved
	// without change times learnt them (Path is then the root, Snap holds
	// every such entry). A caller persisting the snapshot saves Snap, else
	// its next AddFrom would take the moved change time for an edit.
	Attrib Op = "attrib"
)

// ErrWatchLimit is wrapped when the OS refuses another watch (Linux: ENOSPC
// from inotify_add_watch, fs.inotify.max_user_watches reached).
var ErrWatchLimit = errors.New("fswatch: OS watch limit reached (Linux: raise fs.inotify.max_user_watches)")

// RawCounts counts the raw OS notifications merged into one Change.
type RawCounts struct {
	Create int `json:"create,omitempty"`
	Write  int `json:"write,omitempty"`
	Remove int `json:"remove,omitempty"`
	Rename int `json:"rename,omitempty"`
	Chmod  int `json:"chmod,omitempty"`
	Scan   int `json:"scan,omitempty"` // found by a directory scan or a reconciliation
}

func (r *RawCounts) add(o RawCounts) {
	r.Create += o.Create
	r.Write += o.Write
	r.Remove += o.Remove
	r.Rename += o.Rename
	r.Chmod += o.Chmod
	r.Scan += o.Scan
}

// Total is the number of raw notifications.
func (r RawCounts) Total() int { return r.Create + r.Write + r.Remove + r.Rename + r.Chmod + r.Scan }

// Change is one debounced change of one path.
type Change struct {
	Op         Op
	Path       string
	OldPath    string // Renamed only
	Root       string // the watched root the path lies under
	Size       int64
	IsDir      bool
	Count      int       // raw notifications merged (Raw.Total())
	Raw        RawCounts // per kind
	Reconciled bool      // found by a rescan after an overflow
	// Names lists, oldest first, every name the file had within the
	// debounce window when it was renamed in it (e.g. a file modified,
	// renamed and deleted in one window: Deleted of the old name, Names
	// [old, new]); nil otherwise. When the old name holds another file
	// again by then (a save via rename: original renamed to a backup name,
	// new content renamed or written onto its name, backup deleted), that
	// path is Modified, and after it comes the backup's Deleted (or
	// Renamed) under its own name, Names [original, backup].
	Names []string
	// Transient: the file appeared and was gone again within the window
	// (Op is Deleted, Path the last name it had).
	Transient bool
	// Prior: found by comparing the disk with a snapshot saved earlier
	// (AddFrom), so it happened while nothing watched; Reconciled too.
	Prior bool
	// TimesRestored (Modified): the file was written in the window, yet
	// its size and mtime are as before; only its change time moved. The
	// mtime was put back (touch -r, utimes) to hide the edit.
	TimesRestored bool
	// CTimeOnly (Modified, found by a comparison: Prior or Reconciled):
	// size and mtime are as in the snapshot but the change time moved. A
	// comparison cannot tell an edit with the mtime put back from a
	// chmod, chown or link made meanwhile.
	CTimeOnly bool
	// With (Deleted): the folder this path left with. It had no
	// notification of its own (no unlink of it): it was under a folder
	// that was moved out of the watched tree (or vanished at once), which
	// is reported just before it.
	With string
	// Contents (Deleted of a root itself): how many entries the root held
	// that left with it without a notification of their own (it was moved
	// away); they get no Change of their own and stay in the snapshot (as
	// does the root's own entry), the baseline compared when the root is
	// added again (its changes then marked Prior). Entries removed one by
	// one (rm -r) still get theirs, first, and leave the snapshot.
	Contents int
	// Was and Now (Deleted of a root itself): what the root was when it
	// was added, and what its path is now (Kind "" when nothing is there;
	// a symbolic link, a junction, a file, or another folder: replaced).
	Was, Now Identity
	Time     time.Time // of the last raw notification
	Err      error     // Error only
	// Snap holds the edits this change made to the snapshot (nil: the path
	// left it). A caller that persists the snapshot saves them with the
	// change's record, so the saved snapshot matches what was recorded.
	Snap map[string]*Entry
}

// Entry is what the snapshot knows of one path.
type Entry struct {
	Size  int64
	MTime time.Time
	Dir   bool
	ID    uint64 // inode where the OS gives one, else 0
	// CTime is the inode change time (Unix), which no user can set back,
	// unlike MTime; zero where unknown (Windows, snapshots saved before it
	// was kept), and a zero on either side compares equal.
	CTime time.Time
}

func (e entry) export() *Entry {
	return &Entry{Size: e.size, MTime: e.mtime, Dir: e.dir, ID: e.id, CTime: e.ctime}
}

func (e Entry) internal() entry {
	return entry{size: e.Size, mtime: e.MTime, dir: e.Dir, id: e.ID, ctime: e.CTime}
}

// Clock is the time source; controls.Clock and controlstest.FakeClock fit.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Watcher.
type Options struct {
	// Exclude holds glob patterns (path.Match syntax) matched against base
	// names; matching files and directories are ignored.
	Exclude []string
	// Debounce is how long a path must be quiet before its Change goes out
	// (default 300ms). A path busy for longer than MaxDelay is flushed anyway.
	Debounce time.Duration
	MaxDelay time.Duration // default 20 x Debounce
	// Buffer is the length of the Changes channel (default 4096). When the
	// reader falls behind, the watcher stops reading the OS queue; an OS
	// overflow then leads to a reconciliation, so nothing is lost, only merged.
	Buffer int
	// WinBufferSize is the ReadDirectoryChangesW buffer per directory on
	// Windows (default 64 KiB; more fails on SMB shares).
	WinBufferSize int
	// EventBuffer is how many raw notifications fsnotify may hold for us
	// beyond the kernel queue (default 16384).
	EventBuffer uint
	Clock       Clock
	Log         zerolog.Logger
}

// Stats are counters since New.
type Stats struct {
	Raw        uint64 // raw notifications read
	Changes    uint64 // Changes delivered (not counting Overflow, Error and Attrib)
	Overflows  uint64
	Transient  uint64 // paths created and gone again within one debounce window
	WatchedDir int    // directories watched now
}

type entry struct {
	size  int64
	mtime time.Time
	dir   bool
	id    uint64    // inode where the OS gives one, else 0
	ctime time.Time // inode change time where the OS gives one, else zero
}

type pending struct {
	raw      RawCounts
	first    time.Time
	last     time.Time
	oldPath  string   // set when paired with a rename
	oldEntry *entry   // what oldPath was
	renamed  bool     // this path was renamed away (waiting for its new name)
	names    []string // names within the window, oldest first, when renamed in it
}

type renamedAway struct {
	path string
	t    time.Time
}

type root struct {
	path    string
	watched bool
	id      Identity // what the root was when last added
	// leaving: the root's own watch reported it renamed or removed; its
	// watches are gone and notifications below it ignored until it is
	// resolved (a link at its path must not be followed).
	leaving bool
	// lost: moved away, removed or replaced; the snapshot keeps what it
	// held, and adding it again reports the differences as Prior.
	lost bool
}

// replaced says whether a root's path, found to be now (err: nothing
// there, or unreadable), is no longer the folder that was added; a root
// whose identity was never taken is compared by existence only.
func (r *root) replaced(now Identity, err error) bool {
	return err != nil || r.id.Kind != "" && !r.id.Same(now)
}

// Watcher watches a set of roots. Create it with New.
type Watcher struct {
	opt   Options
	fs    *fsnotify.Watcher
	out   chan Change
	done  chan struct{}
	wg    sync.WaitGroup
	close sync.Once

	// Changes wait in queue for the pump goroutine to hand them to out, so
	// Add and Rescan never block on a reader that is busy calling them;
	// the event loop alone waits when the queue is over Buffer, which is
	// the back-pressure that leads to an OS overflow and a reconciliation
	// instead of unbounded memory.
	qmu      sync.Mutex
	qcond    *sync.Cond
	queue    []Change
	stopping bool // Close called: the loop must not wait any more
	drained  bool // the loop is done: the pump closes out when the queue is empty

	inject chan error // tests: fake OS errors (overflow)
	drop   bool       // tests: discard raw notifications, as a full kernel queue does

	mu       sync.Mutex
	roots    map[string]*root
	snap     map[string]entry // every known path under every root
	dirs     map[string]bool  // directories we asked fsnotify to watch
	pend     map[string]*pending
	lastRen  string // most recent path renamed away, awaiting its new name
	lastRenT time.Time
	lastRenN uint64        // stats.Raw at that rename: the new name's create comes right after it
	renAway  []renamedAway // paths renamed away within Debounce, oldest first (concurrent renames)
	stats    Stats

	// vacated holds what the snapshot had for a name whose file was renamed
	// away within the window, until the change of that file or of a new
	// file at the name is out: a file there again existed all along as a
	// path (a save via rename), so it is Modified, not Created.
	vacated map[string]entry
}

// New starts a watcher with no roots.
func New(opt Options) (*Watcher, error) {
	if opt.Debounce <= 0 {
		opt.Debounce = 300 * time.Millisecond
	}
	if opt.MaxDelay <= 0 {
		opt.MaxDelay = 20 * opt.Debounce
	}
	if opt.Buffer <= 0 {
		opt.Buffer = 4096
	}
	if opt.WinBufferSize <= 0 {
		opt.WinBufferSize = 64 << 10
	}
	if opt.Clock == nil {
		opt.Clock = realClock{}
	}
	for _, p := range opt.Exclude {
		if _, err := filepath.Match(p, "x"); err != nil {
			return nil, fmt.Errorf("fswatch: bad exclude pattern %q: %w", p, err)
		}
	}
	// A large buffer lets bursts sit in Go memory rather than overflow the
	// kernel queue while we are busy scanning.
	if opt.EventBuffer == 0 {
		opt.EventBuffer = 16384
	}
	fw, err := fsnotify.NewBufferedWatcher(opt.EventBuffer)
	if err != nil {
		return nil, fmt.Errorf("fswatch: %w", wrapLimit(err))
	}
	w := &Watcher{
		opt:    opt,
		fs:     fw,
		out:    make(chan Change, opt.Buffer),
		done:   make(chan struct{}),
		inject: make(chan error, 1),
		roots:  map[string]*root{},
		snap:   map[string]entry{},
		dirs:   map[string]bool{},
		pend:   map[string]*pending{},
	}
	w.qcond = sync.NewCond(&w.qmu)
	w.wg.Add(1)
	go w.loop()
	go w.pump()
	return w, nil
}

// Changes delivers debounced changes. After Close it delivers what was
// still pending and is then closed.
func (w *Watcher) Changes() <-chan Change { return w.out }

// Close stops watching. Pending changes are flushed to Changes, which is
// closed once they have been read.
func (w *Watcher) Close() error {
	var err error
	w.close.Do(func() {
		w.qmu.Lock()
		w.stopping = true
		w.qcond.Broadcast()
		w.qmu.Unlock()
		close(w.done)
		w.wg.Wait()
		err = w.fs.Close()
		w.qmu.Lock()
		w.drained = true
		w.qcond.Broadcast()
		w.qmu.Unlock()
	})
	if err != nil {
		return fmt.Errorf("fswatch: close: %w", err)
	}
	return nil
}

// Stats returns the counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.WatchedDir = len(w.dirs)
	return s
}

// Roots lists the roots added and whether each is being watched (false once
// the root itself was deleted or could not be watched; Add it again).
func (w *Watcher) Roots() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]bool, len(w.roots))
	for p, r := range w.roots {
		m[p] = r.watched
	}
	return m
}

// Add watches the tree at dir. The files found now form the baseline: no
// Change is reported for them. Adding a root again re-walks it and reports
// what changed against the snapshot (useful when a root reappears).
func (w *Watcher) Add(dir string) error { return w.AddFrom(dir, nil) }

// AddFrom is Add with prior, a snapshot of the tree saved earlier (paths
// outside dir and excluded names are ignored): what differs from it on disk
// is reported as Changes marked Prior and Reconciled. A nil prior is Add.
func (w *Watcher) AddFrom(dir string, prior map[string]Entry) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("fswatch: %w", err)
	}
	dir = filepath.Clean(dir)
	id, err := Identify(dir)
	if err != nil {
		return fmt.Errorf("fswatch: root %s: %w", dir, err)
	}
	if id.Kind != KindDir {
		return &NotFolderError{Path: dir, Now: id}
	}
	w.mu.Lock()
	r, known := w.roots[dir]
	if !known {
		r = &root{path: dir}
		w.roots[dir] = r
	}
	r.id, r.leaving = id, false
	found, err := w.walkLocked(dir, true)
	if err != nil {
		if !known {
			delete(w.roots, dir)
		}
		w.mu.Unlock()
		return err
	}
	var out []Change
	switch {
	case known:
		out = w.diffLocked(dir, found)
		if r.lost {
			// Back after it was moved away or replaced: the differences
			// from what it held then happened while it was not watched.
			for i := range out {
				out[i].Prior = true
			}
		}
	case prior != nil:
		for p, e := range prior {
			if Within(p, dir) && (p == dir || !w.excluded(p)) {
				if _, other := w.snap[p]; !other || w.rootForLocked(p) == dir {
					w.snap[p] = e.internal()
				}
			}
		}
		out = w.diffLocked(dir, found)
		for i := range out {
			out[i].Prior = true
		}
	default:
		for p, e := range found {
			w.snap[p] = e
		}
	}
	r.watched, r.lost = true, false
	w.mu.Unlock()
	w.enqueue(out, false)
	return nil
}

// RootIdentity is what root was when it was last added (zero if unknown).
func (w *Watcher) RootIdentity(root string) Identity {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.roots[filepath.Clean(root)]; r != nil {
		return r.id
	}
	return Identity{}
}

// CheckRoots compares each watched root's path with the folder that was
// added (Identify): a root moved away or removed, or replaced by a symbolic
// link, a junction, a file or another folder, is no longer watched, and its
// Deleted change (with Was and Now) is returned, not queued, so the caller
// can act on it before it adds the root again. Controls call it
// periodically: the OS does not always report such a swap (Windows; the
// root's parent is not watched).
func (w *Watcher) CheckRoots() []Change {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Change
	for _, top := range slices.Sorted(maps.Keys(w.roots)) {
		r := w.roots[top]
		if !r.watched {
			continue
		}
		now, err := Identify(top)
		if !r.replaced(now, err) {
			continue
		}
		raw := RawCounts{Scan: 1}
		if pd := w.pend[top]; pd != nil {
			raw = pd.raw
			delete(w.pend, top)
		}
		out = append(out, w.rootLostLocked(top, raw, w.opt.Clock.Now(), now)...)
	}
	return out
}

// Snapshot returns what the snapshot holds under root (the files of a
// root added with Add form its baseline; a caller persists it to AddFrom
// it after a restart).
func (w *Watcher) Snapshot(root string) map[string]Entry {
	w.mu.Lock()
	defer w.mu.Unlock()
	root = filepath.Clean(root)
	m := map[string]Entry{}
	for p, e := range w.snap {
		if Within(p, root) && w.rootForLocked(p) == root {
			m[p] = *e.export()
		}
	}
	return m
}

// Remove stops watching the tree at dir and forgets its snapshot.
func (w *Watcher) Remove(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("fswatch: %w", err)
	}
	dir = filepath.Clean(dir)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.roots[dir]; !ok {
		return fmt.Errorf("fswatch: %s is not a watched root", dir)
	}
	delete(w.roots, dir)
	for d := range w.dirs {
		if Within(d, dir) && w.rootForLocked(d) == "" {
			_ = w.fs.Remove(d) // may already be gone with the directory
			delete(w.dirs, d)
		}
	}
	for p := range w.snap {
		if Within(p, dir) && w.rootForLocked(p) == "" {
			delete(w.snap, p)
		}
	}
	for p := range w.pend {
		if Within(p, dir) && w.rootForLocked(p) == "" {
			delete(w.pend, p)
		}
	}
	for p := range w.vacated {
		if Within(p, dir) && w.rootForLocked(p) == "" {
			delete(w.vacated, p)
		}
	}
	return nil
}

// Rescan walks every root and reports what differs from the snapshot, as
// after an overflow, followed by an Overflow change per root. The media
// control uses it after a volume is remounted.
func (w *Watcher) Rescan() { w.reconcile(false) }

// Within reports whether path p is dir or lies below it (by path, not by
// following links); controls joining OS records to roots use it too.
func Within(p, dir string) bool {
	if p == dir {
		return true
	}
	if strings.HasSuffix(dir, string(filepath.Separator)) {
		return strings.HasPrefix(p, dir)
	}
	return strings.HasPrefix(p, dir) && p[len(dir)] == filepath.Separator
}

// rootForLocked returns the innermost root holding p, or "".
func (w *Watcher) rootForLocked(p string) string {
	best := ""
	for r := range w.roots {
		if Within(p, r) && len(r) > len(best) {
			best = r
		}
	}
	return best
}

func (w *Watcher) excluded(p string) bool { return Excluded(w.opt.Exclude, p) }

// Excluded reports whether p's base name matches one of the exclude
// patterns (filepath.Match syntax, e.g. Office's "~$*").
func Excluded(patterns []string, p string) bool {
	base := filepath.Base(p)
	for _, pat := range patterns {
		if ok, _ := filepath.Match(pat, base); ok {
			return true
		}
	}
	return false
}

func wrapLimit(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE) {
		return fmt.Errorf("%w: %w", ErrWatchLimit, err)
	}
	return err
}

func (w *Watcher) watchLocked(dir string) error {
	if w.dirs[dir] {
		return nil
	}
	if err := w.fs.AddWith(dir, fsnotify.WithBufferSize(w.opt.WinBufferSize)); err != nil {
		return fmt.Errorf("fswatch: watch %s: %w", dir, wrapLimit(err))
	}
	w.dirs[dir] = true
	return nil
}

// walkLocked watches every directory under top (watch first, then list, so
// nothing created in between is missed) and returns what it found. With
// strict, failing to watch is an error; otherwise the failure is reported as
// an Error change and the walk goes on.
func (w *Watcher) walkLocked(top string, strict bool) (map[string]entry, error) {
	found := map[string]entry{}
	var firstErr error
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == top {
				return err
			}
			return nil // vanished or unreadable below the root: skip it
		}
		if p != top && w.excluded(p) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if werr := w.watchLocked(p); werr != nil {
				if strict || firstErr == nil {
					firstErr = werr
				}
				if strict {
					return werr
				}
				return filepath.SkipDir
			}
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		found[p] = entryOf(fi)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fswatch: walk %s: %w", top, err)
	}
	if firstErr != nil && !strict {
		return found, firstErr
	}
	return found, nil
}

func entryOf(fi fs.FileInfo) entry {
	e := entry{mtime: fi.ModTime(), dir: fi.IsDir(), id: fileID(fi), ctime: changeTime(fi)}
	if !e.dir {
		e.size = fi.Size()
	}
	return e
}

// diffLocked compares what a walk of top found with the snapshot, updates
// the snapshot and returns the differences as reconciled changes.
func (w *Watcher) diffLocked(top string, found map[string]entry) []Change {
	now := w.opt.Clock.Now()
	var out []Change
	var learnt map[string]*Entry
	for p, old := range w.snap {
		if w.rootForLocked(p) != top {
			continue
		}
		if _, ok := found[p]; !ok {
			delete(w.snap, p)
			out = append(out, Change{Op: Deleted, Path: p, Root: top, IsDir: old.dir, Size: old.size,
				Count: 1, Raw: RawCounts{Scan: 1}, Reconciled: true, Time: now, Snap: map[string]*Entry{p: nil}})
		}
	}
	for p, e := range found {
		if w.rootForLocked(p) != top {
			continue
		}
		old, ok := w.snap[p]
		w.snap[p] = e
		switch {
		case !ok:
			out = append(out, Change{Op: Created, Path: p, Root: top, IsDir: e.dir, Size: e.size,
				Count: 1, Raw: RawCounts{Scan: 1}, Reconciled: true, Time: now, Snap: map[string]*Entry{p: e.export()}})
		case !e.dir && (old.size != e.size || !old.mtime.Equal(e.mtime) || old.dir != e.dir):
			out = append(out, Change{Op: Modified, Path: p, Root: top, IsDir: e.dir, Size: e.size,
				Count: 1, Raw: RawCounts{Scan: 1}, Reconciled: true, Time: now, Snap: map[string]*Entry{p: e.export()}})
		case !e.dir && ctimeMoved(old, e):
			// Reported, not taken for a chmod: nothing says which it was,
			// and an edit with its mtime put back must not go unseen.
			out = append(out, Change{Op: Modified, Path: p, Root: top, Size: e.size, CTimeOnly: true,
				Count: 1, Raw: RawCounts{Scan: 1}, Reconciled: true, Time: now, Snap: map[string]*Entry{p: e.export()}})
		case old.ctime.IsZero() && !e.ctime.IsZero():
			// Saved before change times were kept: learnt now, so that the
			// next comparison can use them.
			if learnt == nil {
				learnt = map[string]*Entry{}
			}
			learnt[p] = e.export()
		}
	}
	if learnt != nil {
		out = append(out, Change{Op: Attrib, Path: top, Root: top, Reconciled: true, Time: now, Snap: learnt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// ctimeMoved reports whether both change times are known and differ; an
// unknown one (zero: Windows, a snapshot saved before they were kept)
// compares equal, else an upgrade would report every file as modified.
func ctimeMoved(a, b entry) bool {
	return !a.ctime.IsZero() && !b.ctime.IsZero() && !a.ctime.Equal(b.ctime)
}

// enqueue queues changes for the reader; with wait (the event loop only) it
// then waits while the queue is over Buffer.
func (w *Watcher) enqueue(cs []Change, wait bool) {
	if len(cs) == 0 {
		return
	}
	n := uint64(0)
	for _, c := range cs {
		if c.Op != Overflow && c.Op != Error && c.Op != Attrib {
			n++
		}
	}
	w.mu.Lock()
	w.stats.Changes += n
	w.mu.Unlock()
	w.qmu.Lock()
	w.queue = append(w.queue, cs...)
	w.qcond.Broadcast()
	for wait && len(w.queue) > w.opt.Buffer && !w.stopping {
		w.qcond.Wait()
	}
	w.qmu.Unlock()
}

func (w *Watcher) send(cs []Change) { w.enqueue(cs, true) }

// pump hands queued changes to the reader, and closes Changes after Close
// once the queue is empty.
func (w *Watcher) pump() {
	defer close(w.out)
	for {
		w.qmu.Lock()
		for len(w.queue) == 0 && !w.drained {
			w.qcond.Wait()
		}
		if len(w.queue) == 0 {
			w.qmu.Unlock()
			return
		}
		c := w.queue[0]
		w.queue[0] = Change{}
		w.queue = w.queue[1:]
		w.qcond.Broadcast()
		w.qmu.Unlock()
		w.out <- c
	}
}

func (w *Watcher) loop() {
	defer w.wg.Done()
	var timer <-chan time.Time
	for {
		w.mu.Lock()
		if timer == nil && len(w.pend) > 0 {
			timer = w.opt.Clock.After(w.opt.Debounce / 2)
		}
		w.mu.Unlock()
		select {
		case <-w.done:
			w.send(w.flush(true))
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			w.send(w.raw(ev))
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.osError(err)
		case err := <-w.inject:
			w.osError(err)
		case <-timer:
			timer = nil
			w.send(w.flush(false))
		}
	}
}

func (w *Watcher) osError(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		w.opt.Log.Warn().Msg("fswatch: OS event queue overflowed; rescanning")
		w.reconcile(true)
		return
	}
	w.opt.Log.Warn().Err(err).Msg("fswatch: watcher error")
	w.send([]Change{{Op: Error, Err: fmt.Errorf("fswatch: %w", wrapLimit(err)), Time: w.opt.Clock.Now()}})
}

// reconcile flushes what is pending, then walks every root and reports the
// differences from the snapshot, then an Overflow per root.
func (w *Watcher) reconcile(wait bool) {
	w.enqueue(w.flush(true), wait)
	w.mu.Lock()
	w.stats.Overflows++
	var out []Change
	roots := make([]string, 0, len(w.roots))
	for p := range w.roots {
		roots = append(roots, p)
	}
	sort.Strings(roots)
	now := w.opt.Clock.Now()
	for _, top := range roots {
		found, err := w.walkLocked(top, false)
		if found == nil {
			// The root itself is gone: everything under it was deleted.
			found = map[string]entry{}
			w.roots[top].watched = false
		}
		diff := w.diffLocked(top, found)
		out = append(out, diff...)
		if err != nil {
			out = append(out, Change{Op: Error, Root: top, Path: top, Err: err, Time: now})
		}
		n := 0
		for _, c := range diff {
			if c.Op != Attrib {
				n++
			}
		}
		out = append(out, Change{Op: Overflow, Root: top, Path: top, Count: n, Time: now})
	}
	w.mu.Unlock()
	w.enqueue(out, wait)
}

// raw folds one OS notification into the pending set and returns changes
// that are ready at once (a new directory's watch failing).
func (w *Watcher) raw(ev fsnotify.Event) []Change {
	p := filepath.Clean(ev.Name)
	now := w.opt.Clock.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Raw++
	top := w.rootForLocked(p)
	if w.drop || top == "" || w.excluded(p) {
		return nil
	}
	if r := w.roots[top]; r.leaving && p != top || !r.watched {
		return nil // a stale watch below a root moved away, or a root not watched
	}
	if p == top && (ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove)) {
		// The root itself moved away or went (its own watch says so: the
		// parent is not watched). The watches below it now name paths
		// under another folder, through whatever is put at its path: drop
		// them at once; the root is resolved after the debounce, when what
		// replaced it (a symbolic link put there right after) is in place.
		w.roots[top].leaving = true
		w.unwatchLocked(top)
	}
	pd := w.pend[p]
	if pd == nil {
		pd = &pending{first: now}
		w.pend[p] = pd
	}
	pd.last = now
	switch {
	case ev.Has(fsnotify.Create):
		pd.raw.Create++
		pd.renamed = false
	case ev.Has(fsnotify.Write):
		pd.raw.Write++
	case ev.Has(fsnotify.Remove):
		pd.raw.Remove++
	case ev.Has(fsnotify.Rename):
		pd.raw.Rename++
		pd.renamed = true
		w.lastRen, w.lastRenT, w.lastRenN = p, now, w.stats.Raw
		for len(w.renAway) > 0 && (now.Sub(w.renAway[0].t) > w.opt.Debounce || len(w.renAway) >= 256) {
			w.renAway = w.renAway[1:]
		}
		w.renAway = append(w.renAway, renamedAway{p, now})
	case ev.Has(fsnotify.Chmod):
		pd.raw.Chmod++
	}
	if !ev.Has(fsnotify.Create) {
		return nil
	}
	fi, err := os.Lstat(p)
	if err != nil {
		// Gone again already (renamed and deleted at once): the new name
		// cannot be compared with the old file, but a create that is the
		// very next notification after a rename is that rename's other half
		// (Windows may put a change of the same folder in between).
		if n := w.stats.Raw - w.lastRenN; w.lastRen != "" &&
			(n == 1 || n <= 4 && filepath.Dir(w.lastRen) == filepath.Dir(p)) {
			w.pairRenameLocked(p, pd, nil, now)
		}
		return nil
	}
	w.pairRenameLocked(p, pd, fi, now)
	if !fi.IsDir() {
		return nil
	}
	// A new directory: watch it and everything in it, and report what is
	// already inside (created before the watch could be added).
	found, werr := w.walkLocked(p, false)
	for q := range found {
		if q == p {
			continue
		}
		if _, known := w.snap[q]; known {
			continue // moved in with a paired directory rename
		}
		qd := w.pend[q]
		if qd == nil {
			qd = &pending{first: now}
			w.pend[q] = qd
		}
		qd.raw.Scan++
		qd.last = now
	}
	if werr != nil {
		return []Change{{Op: Error, Path: p, Root: w.rootForLocked(p), Err: werr, Time: now}}
	}
	return nil
}

// pairRenameLocked joins a Create to the rename that came just before it
// when it is the same file (inode where the OS gives one, else size and
// kind; fi nil: the file is gone, the caller checked the order instead).
func (w *Watcher) pairRenameLocked(p string, pd *pending, fi fs.FileInfo, now time.Time) {
	from := ""
	var fp *pending
	// Newest first; with several renames at once (mv in many folders), the
	// one whose inode matches, else the newest that fits.
	for i := len(w.renAway) - 1; i >= 0 && from == ""; i-- {
		r := w.renAway[i]
		c := w.pend[r.path]
		if r.path == p || now.Sub(r.t) > w.opt.Debounce || c == nil || !c.renamed {
			continue
		}
		if fi == nil {
			if r.path == w.lastRen {
				from, fp = r.path, c
			}
			break
		}
		e := entryOf(fi)
		old, had := w.snap[r.path]
		switch {
		case !had:
		case old.id != 0 && e.id != 0:
			if old.id != e.id {
				continue
			}
		case old.dir != e.dir || (!e.dir && c.raw.Write == 0 && old.size != e.size):
			continue // no inode: kind, and size unless it was written to before the rename
		}
		from, fp = r.path, c
	}
	if from == "" {
		return
	}
	old, had := w.snap[from]
	for i, r := range w.renAway {
		if r.path == from {
			w.renAway = append(w.renAway[:i], w.renAway[i+1:]...)
			break
		}
	}
	if w.lastRen == from {
		w.lastRen = ""
	}
	delete(w.pend, from)
	pd.raw.add(fp.raw)
	if fp.first.Before(pd.first) {
		pd.first = fp.first
	}
	origin := from
	var oe *entry
	if fp.oldPath != "" { // renamed twice within the window: keep the first name
		origin, oe = fp.oldPath, fp.oldEntry
	} else if had {
		oe = &old
	}
	pd.oldPath, pd.oldEntry = origin, oe
	pd.names = append(append([]string(nil), fp.names...), p)
	if len(fp.names) == 0 {
		pd.names = []string{from, p}
	}
	if had {
		delete(w.snap, from)
		if w.vacated == nil {
			w.vacated = map[string]entry{}
		}
		w.vacated[from] = old
		if old.dir {
			// Move the children's snapshot entries with the directory so
			// the scan of the new name does not report them as created.
			for q, qe := range w.snap {
				if Within(q, from) && q != from {
					delete(w.snap, q)
					w.snap[p+q[len(from):]] = qe
				}
			}
			// Drop the watches under the old name: fsnotify keeps the old
			// paths for them (and removes the top one on IN_MOVE_SELF), so
			// re-adding the new names would reuse stale entries.
			w.unwatchLocked(from)
		}
	}
}

// flush turns pending paths that have been quiet for Debounce (or busy for
// MaxDelay; all of them with force) into Changes.
func (w *Watcher) flush(force bool) []Change {
	now := w.opt.Clock.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	var ready []string
	for p, pd := range w.pend {
		if force || now.Sub(pd.last) >= w.opt.Debounce || now.Sub(pd.first) >= w.opt.MaxDelay {
			if pd.renamed && !force && now.Sub(pd.last) < 2*w.opt.Debounce {
				continue // give the new name a little longer to show up
			}
			ready = append(ready, p)
		}
	}
	sort.Strings(ready)
	var out []Change
	// Before changes below a root are resolved, the root's path must still
	// be the folder that was added: else they came through watches that
	// now name another place (a folder moved away, a link put at its path:
	// Windows does not report the rename of the watched folder itself).
	checked := map[string]bool{}
	for _, p := range ready {
		top := w.rootForLocked(p)
		if top == "" || checked[top] {
			continue
		}
		checked[top] = true
		r := w.roots[top]
		if !r.watched || r.leaving {
			continue // the root's own change resolves it
		}
		if now, err := Identify(top); r.replaced(now, err) {
			raw := RawCounts{Scan: 1}
			if pd := w.pend[top]; pd != nil {
				raw = pd.raw
				delete(w.pend, top)
			}
			out = append(out, w.rootLostLocked(top, raw, w.opt.Clock.Now(), now)...)
		}
	}
	isReady := make(map[string]bool, len(ready))
	for _, p := range ready {
		isReady[p] = true
	}
	var take func(p string)
	take = func(p string) {
		pd := w.pend[p]
		if pd == nil {
			return // consumed as the children of a deleted directory, or taken already
		}
		// The name this file was renamed from may hold another file again
		// (a save via rename): that file's change goes first, so the new
		// content of a path precedes the deletion of its old content's
		// backup name, whatever the names' order.
		again := pd.oldPath != p && w.pend[pd.oldPath] != nil
		if again && !isReady[pd.oldPath] {
			return // wait for it (at most MaxDelay)
		}
		delete(w.pend, p)
		if w.lastRen == p {
			w.lastRen = ""
		}
		if again {
			take(pd.oldPath)
		}
		out = append(out, w.resolveLocked(p, pd)...)
	}
	for _, p := range ready {
		take(p)
	}
	if len(w.pend) == 0 {
		w.vacated = nil // nothing left that could refer to them
	}
	return out
}

// resolveLocked decides what one pending path amounts to by comparing the
// snapshot (before) with the file system (now).
func (w *Watcher) resolveLocked(p string, pd *pending) []Change {
	top := w.rootForLocked(p)
	if top == "" {
		return nil
	}
	old, had := w.snap[p]
	before, vacated := w.vacated[p]
	delete(w.vacated, p)
	if pd.oldPath != "" && pd.oldPath != p && w.pend[pd.oldPath] == nil {
		delete(w.vacated, pd.oldPath) // no new file there: nothing else will use it
	}
	// A name that holds a file again (its own change went first, see flush)
	// is not this file's: its deletion is under its last name, and the
	// snapshot edit of that name is the new file's.
	_, again := w.snap[pd.oldPath]
	again = again || w.pend[pd.oldPath] != nil
	c := Change{Path: p, Root: top, Raw: pd.raw, Count: pd.raw.Total(), Time: pd.last, Names: pd.names}
	gone := func(q string) {
		if _, ok := w.snap[q]; !ok {
			c.Snap[q] = nil
		}
	}
	if p == top {
		if r := w.roots[top]; r.leaving || r.watched {
			now, err := Identify(top)
			if r.replaced(now, err) {
				return w.rootLostLocked(top, pd.raw, pd.last, now)
			}
			if r.leaving {
				// Renamed away and back within the window: watch it again.
				r.leaving = false
				found, werr := w.walkLocked(top, false)
				out := w.diffLocked(top, found)
				if werr != nil {
					out = append(out, Change{Op: Error, Path: top, Root: top, Err: werr, Time: pd.last})
				}
				return out
			}
		}
	}
	fi, err := os.Lstat(p)
	if err != nil {
		switch {
		case had:
		case pd.oldEntry != nil: // renamed and then deleted within the window
			old = *pd.oldEntry
			if !again {
				c.Path = pd.oldPath
			}
		case pd.raw.Create > 0 || pd.raw.Scan > 0:
			// Created and gone again within the window: still a file that
			// existed, with what was done to it (Raw, Names).
			w.stats.Transient++
			c.Op, c.Transient = Deleted, true
			if len(pd.names) > 0 {
				c.Snap = map[string]*Entry{p: nil}
				gone(pd.names[0])
			}
			return []Change{c}
		default:
			return nil // a notification for a path never seen to exist
		}
		delete(w.snap, p)
		c.Op, c.IsDir, c.Size = Deleted, old.dir, old.size
		c.Snap = map[string]*Entry{p: nil}
		if pd.oldEntry != nil {
			gone(pd.oldPath)
		}
		out := []Change{c}
		if p == top {
			w.roots[top].watched = false
		}
		if old.dir {
			kids := w.dropTreeLocked(p, top, pd.last)
			if p != top {
				return append(out, kids...)
			}
			// The root itself is gone: what went with it is folded into
			// its change; what was removed one by one goes before it.
			out = out[:0]
			for _, k := range kids {
				if k.With == "" {
					out = append(out, k)
					continue
				}
				c.Contents++
				c.Snap[k.Path] = nil
			}
			out = append(out, c)
		}
		return out
	}
	e := entryOf(fi)
	w.snap[p] = e
	c.IsDir, c.Size = e.dir, e.size
	c.Snap = map[string]*Entry{p: e.export()}
	switch {
	case pd.oldEntry != nil && pd.oldPath == p:
		old, had = *pd.oldEntry, true // renamed away and back: not a rename
	case !had && vacated && !before.dir && !e.dir:
		// Another file at the name of one renamed away in the window (a
		// save via rename): the path existed before and has new content.
		old, had = before, true
	}
	switch {
	case pd.oldEntry != nil && pd.oldPath != p:
		c.Op, c.OldPath = Renamed, pd.oldPath
		gone(pd.oldPath)
		if e.dir {
			// The children moved with the folder (pairRenameLocked).
			for q, qe := range w.snap {
				if Within(q, p) && q != p {
					c.Snap[q] = qe.export()
					gone(pd.oldPath + q[len(p):])
				}
			}
		}
	case !had:
		c.Op = Created
	case old.size == e.size && old.mtime.Equal(e.mtime) && old.id == e.id && old.dir == e.dir:
		// Unchanged since the snapshot (notifications a reconciliation
		// already accounted for), or only the change time moved: written
		// in the window, the mtime was put back to hide the edit; else a
		// chmod, chown or link, which would be noise in an access log:
		// Attrib, so the snapshot keeps its change time and a later
		// comparison (which, lacking notifications, reports any moved
		// change time: diffLocked) does not take it for an edit.
		if e.dir || !ctimeMoved(old, e) {
			return nil
		}
		if pd.raw.Write == 0 {
			c.Op = Attrib
			return []Change{c}
		}
		c.Op, c.TimesRestored = Modified, true
	case e.dir:
		return nil // a directory's own notifications say only that its content changed
	default:
		c.Op = Modified // includes a file saved by an editor's temp-file rename
	}
	return []Change{c}
}

// dropTreeLocked reports as deleted what the snapshot still holds under a
// deleted directory: children whose notifications were not taken yet, and
// children that have no notification of their own (a directory moved out
// of the tree), the latter With the directory.
func (w *Watcher) dropTreeLocked(dir, top string, t time.Time) []Change {
	var kids []string
	for q := range w.snap {
		if Within(q, dir) && q != dir {
			kids = append(kids, q)
		}
	}
	sort.Strings(kids)
	var out []Change
	for _, q := range kids {
		qe := w.snap[q]
		delete(w.snap, q)
		raw := RawCounts{Scan: 1}
		if qp := w.pend[q]; qp != nil {
			delete(w.pend, q)
			delete(w.vacated, q)
			delete(w.vacated, qp.oldPath)
			raw = qp.raw
		}
		with := ""
		if raw.Remove == 0 {
			// No unlink of its own: it left with the folder (a folder
			// moved along reports only a rename of itself).
			with = dir
		}
		out = append(out, Change{Op: Deleted, Path: q, Root: top, IsDir: qe.dir, Size: qe.size,
			Raw: raw, Count: raw.Total(), Time: t, Snap: map[string]*Entry{q: nil}, With: with})
	}
	w.unwatchLocked(dir)
	return out
}

// unwatchLocked removes the watches on dir and below.
func (w *Watcher) unwatchLocked(dir string) {
	for d := range w.dirs {
		if Within(d, dir) {
			_ = w.fs.Remove(d) // often gone already with the directory
			delete(w.dirs, d)
		}
	}
}

// rootLostLocked reports root top moved away, removed or replaced (now is
// what its path is: Kind "" when nothing): one Deleted of the root, with
// Contents (what left with it) and Was and Now, after the Deleted of what
// was removed one by one before it (rm -r). The root is no longer watched;
// the snapshot keeps the root and what left with it, the baseline of the
// comparison when it is added again.
func (w *Watcher) rootLostLocked(top string, raw RawCounts, t time.Time, now Identity) []Change {
	r := w.roots[top]
	old := w.snap[top]
	c := Change{Op: Deleted, Path: top, Root: top, IsDir: true, Size: old.size, Raw: raw, Count: raw.Total(),
		Time: t, Was: r.id, Now: now}
	r.watched, r.leaving, r.lost = false, false, true
	var kids []string
	for q := range w.snap {
		if q != top && Within(q, top) && w.rootForLocked(q) == top {
			kids = append(kids, q)
		}
	}
	sort.Strings(kids)
	var out []Change
	for _, q := range kids {
		qe := w.snap[q]
		qp := w.pend[q]
		if qp == nil || qp.raw.Remove == 0 {
			c.Contents++ // left with the root: kept as the baseline
			continue
		}
		delete(w.snap, q)
		out = append(out, Change{Op: Deleted, Path: q, Root: top, IsDir: qe.dir, Size: qe.size,
			Raw: qp.raw, Count: qp.raw.Total(), Time: t, Snap: map[string]*Entry{q: nil}})
	}
	// What was pending below it came through watches that now name other
	// paths (or went with it): the comparison when it is back finds it.
	for q := range w.pend {
		if Within(q, top) && w.rootForLocked(q) == top {
			delete(w.pend, q)
		}
	}
	for q := range w.vacated {
		if Within(q, top) && w.rootForLocked(q) == top {
			delete(w.vacated, q)
		}
	}
	if w.lastRen != "" && Within(w.lastRen, top) {
		w.lastRen = ""
	}
	w.unwatchLocked(top)
	return append(out, c)
}
