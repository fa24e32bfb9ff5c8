package fileaccess

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mamori/mamori/agent/internal/fswatch"
)

// fidGroup is the second fanotify group, in FID mode (FAN_REPORT_DFID_NAME,
// Linux >= 5.9), with an inode mark on each watched folder (marks_linux.go):
// it reports creates, deletes and renames with the PID of the process that
// made them, which the fd-mode group cannot (it has no such events).
type fidGroup struct {
	f *os.File
	// full: FAN_REPORT_TARGET_FID and FAN_RENAME (Linux >= 5.17): a rename
	// is one event with both names, and a removed folder's own handle comes
	// with its delete, so deletes inside it still resolve.
	full   bool
	mounts map[[2]int32]*os.File // fsid -> open root on that filesystem (open_by_handle_at's mount_fd)
}

const (
	fidInitFull  = unix.FAN_REPORT_DFID_NAME | unix.FAN_REPORT_FID | unix.FAN_REPORT_TARGET_FID
	fidMaskFull  = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_RENAME | unix.FAN_ONDIR
	fidMaskBasic = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO | unix.FAN_ONDIR
	dirCacheMax  = 16384
)

// initFIDLocked makes the FID group, with the richest reporting this kernel has.
func (p *fanotifyProbe) initFIDLocked() error {
	base := unix.FAN_CLASS_NOTIF | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK
	full := true
	fd, err := unix.FanotifyInit(uint(base|fidInitFull), unix.O_RDONLY|unix.O_LARGEFILE)
	if errors.Is(err, unix.EINVAL) { // before 5.17: no FAN_REPORT_TARGET_FID
		full = false
		fd, err = unix.FanotifyInit(uint(base|unix.FAN_REPORT_DFID_NAME), unix.O_RDONLY|unix.O_LARGEFILE)
	}
	if err != nil { // EINVAL before 5.9: no FAN_REPORT_DFID_NAME
		return fmt.Errorf("fileaccess: fanotify_init FAN_REPORT_DFID_NAME: %w", err)
	}
	g := &fidGroup{f: os.NewFile(uintptr(fd), "fanotify-fid"), full: full, mounts: map[[2]int32]*os.File{}}
	p.fid = g
	go p.readFID(g)
	return nil
}

func (g *fidGroup) mask() uint64 {
	if g.full {
		return fidMaskFull
	}
	return fidMaskBasic
}

// markFIDLocked checks that root's filesystem takes FID marks by putting the
// FID group's inode mark on root itself (applyMarksLocked adds the rest).
// Filesystems without file handle support or with a zero fsid refuse it
// (tmpfs before 5.13, some overlayfs and FUSE setups).
func (p *fanotifyProbe) markFIDLocked(root string) error {
	if err := p.ensureMountLocked(root); err != nil {
		return err
	}
	if err := unix.FanotifyMark(int(p.fid.f.Fd()), inodeMarkFlags, p.fid.mask()|rootSelfMask, unix.AT_FDCWD, root); err != nil {
		return fmt.Errorf("fileaccess: fanotify_mark FID %s: %w", root, err)
	}
	p.rootKeyLocked(root)
	return nil
}

// rootKeyLocked notes root's file handle, which its FAN_MOVE_SELF and
// FAN_DELETE_SELF events carry (the root cannot be named by then: moved,
// or gone).
func (p *fanotifyProbe) rootKeyLocked(root string) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return
	}
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, root, 0)
	if err != nil {
		return
	}
	if p.rootKeys == nil {
		p.rootKeys = map[string]string{}
	}
	for k, r := range p.rootKeys {
		if r == root || !slices.Contains(p.roots, r) {
			delete(p.rootKeys, k)
		}
	}
	rec := fidRecord{fsid: [2]int32{st.Fsid.Val[0], st.Fsid.Val[1]}, htype: h.Type(), handle: h.Bytes()}
	p.rootKeys[rec.key()] = root
}

// rootsKeyedLocked says whether every root with the FID group still has its
// handle noted: rootSelf forgets a root's once it moved away or went, so a
// root watched again (moved back, or another folder at its path) must be
// marked and noted again, not taken for unchanged.
func (p *fanotifyProbe) rootsKeyedLocked() bool {
	for r := range p.fidRoots {
		if !slices.Contains(p.roots, r) {
			continue
		}
		if !slices.Contains(slices.Collect(maps.Values(p.rootKeys)), r) {
			return false
		}
	}
	return true
}

// ensureMountLocked keeps an open folder of dir's filesystem (once per
// filesystem), the mount_fd open_by_handle_at needs to resolve handles:
// the top of dir's mount, not dir itself, since an open folder cannot
// really go (the kernel keeps it until closed, and reports neither its
// removal nor FAN_DELETE_SELF): a watched folder removed would be missed.
func (p *fanotifyProbe) ensureMountLocked(dir string) error {
	g := p.fid
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("fileaccess: statfs %s: %w", dir, err)
	}
	fsid := [2]int32{st.Fsid.Val[0], st.Fsid.Val[1]}
	if g.mounts[fsid] != nil {
		return nil
	}
	m, err := os.OpenFile(mountTop(dir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fileaccess: open %s: %w", dir, err)
	}
	g.mounts[fsid] = m
	return nil
}

// mountTop is the top folder of the mount dir is on (dir itself when that
// cannot be told): the parents of dir while they are on the same mount.
func mountTop(dir string) string {
	_, id, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		return dir
	}
	for {
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		if _, pid, err := unix.NameToHandleAt(unix.AT_FDCWD, parent, 0); err != nil || pid != id {
			return dir
		}
		dir = parent
	}
}

func (g *fidGroup) close() error {
	err := g.f.Close()
	for _, m := range g.mounts {
		m.Close()
	}
	return err
}

func (p *fanotifyProbe) readFID(g *fidGroup) {
	buf := make([]byte, 64<<10)
	dirs := map[string]string{} // directory handle -> last path seen, for folders removed before their events are read
	var carried []fidEvent
	var carriedAt time.Time
	for {
		n, err := g.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				p.env.Log.Warn().Err(err).Msg("fileaccess: fanotify fid read stopped")
			}
			return
		}
		evs, perr := parseFanotifyFID(buf[:n])
		now := p.env.Clock.Now()
		carried, carriedAt = p.handleFID(g, dirs, carried, carriedAt, evs, now), now
		if perr != nil {
			p.env.Log.Warn().Err(perr).Msg("fileaccess: fanotify fid")
		}
	}
}

// fidResolver turns directory handles into paths for one read of events.
type fidResolver struct {
	p     *fanotifyProbe
	g     *fidGroup
	batch map[string]string // handle -> path ("" unresolvable) within this read
	dirs  map[string]string // across reads
}

// dir resolves a directory handle: open_by_handle_at on the mount fd of its
// filesystem, then the fd's path. A folder removed since is found in dirs.
func (r *fidResolver) dir(rec fidRecord) string {
	k := rec.key()
	if d, ok := r.batch[k]; ok {
		return d
	}
	d := ""
	// Under the lock: close() must not free the mount fd while it is used.
	r.p.mu.Lock()
	if root := r.p.rootKeys[k]; root != "" {
		// A root (not moved nor removed since: rootSelf forgets it then) is
		// not opened: an open folder cannot go, so its removal would be
		// reported when the agent closes it, as the agent's.
		r.p.mu.Unlock()
		r.batch[k] = root
		return root
	}
	if m := r.g.mounts[rec.fsid]; m != nil && r.p.fid == r.g {
		fd, err := unix.OpenByHandleAt(int(m.Fd()), unix.NewFileHandle(rec.htype, rec.handle), unix.O_PATH|unix.O_CLOEXEC)
		if err == nil {
			d, _ = os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
			unix.Close(fd)
			// A folder removed but still in the kernel's caches: the
			// path it had, which is the one its entries were deleted under.
			d = strings.TrimSuffix(d, " (deleted)")
			if !filepath.IsAbs(d) {
				d = ""
			}
		}
	}
	r.p.mu.Unlock()
	if d == "" {
		d = r.dirs[k]
	} else {
		r.remember(k, d)
	}
	r.batch[k] = d
	return d
}

// remember keeps the paths of folders under the roots only, bounded.
func (r *fidResolver) remember(k, d string) {
	r.batch[k] = d
	if !r.p.inRoots(d) {
		return
	}
	if len(r.dirs) >= dirCacheMax {
		clear(r.dirs)
	}
	r.dirs[k] = d
}

// path joins a *_NAME record's directory and name; "" when unresolvable.
func (r *fidResolver) path(rec fidRecord) string {
	d := r.dir(rec)
	if d == "" || rec.name == "" || rec.name == "." {
		return d
	}
	return filepath.Join(d, rec.name)
}

func (p *fanotifyProbe) inRoots(path string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.roots {
		if fswatch.Within(path, r) {
			return true
		}
	}
	return false
}

// handleFID turns one read of FID events into accesses. Deletes of folders
// are looked at first, newest first (rm -r removes the deepest last): each
// carries the folder's own handle, whose path is remembered so the deletes
// inside it, reported before it but resolved now that it is gone, still
// get a path. Events whose folder cannot be resolved are returned, to be
// tried once more (as old, read at oldAt) with the next read: the folder's
// own delete may be in that one.
func (p *fanotifyProbe) handleFID(g *fidGroup, dirs map[string]string, old []fidEvent, oldAt time.Time, evs []fidEvent, now time.Time) (carry []fidEvent) {
	r := &fidResolver{p: p, g: g, batch: map[string]string{}, dirs: dirs}
	all := append(append([]fidEvent(nil), old...), evs...)
	for i := len(all) - 1; i >= 0; i-- {
		e := all[i]
		if e.mask&fanOnDir == 0 || e.mask&fanDelete == 0 {
			continue
		}
		self, ok1 := e.record(fanInfoFID)
		parent, ok2 := e.record(fanInfoDFIDName)
		if ok1 && ok2 {
			if d := r.path(parent); d != "" {
				r.remember(self.key(), d)
			}
		}
	}
	for i, e := range all {
		at, retried := now, i < len(old)
		if retried {
			at = oldAt
		}
		if e.mask&fanOverflow != 0 {
			p.env.Log.Warn().Msg("fileaccess: fanotify fid queue overflowed; some deletes and renames are attributed by last writer")
			p.remark() // new folders may have gone unreported
			continue
		}
		if e.mask&rootSelfMask != 0 {
			p.rootSelf(r, e, at)
			continue
		}
		if e.mask&fanOnDir != 0 {
			p.folderEvent(r, e) // whoever made it, the agent included
		}
		if int(e.pid) == p.self {
			continue
		}
		if e.mask&(fanDelete|fanMovedFrom|fanMovedTo|fanRename) == 0 && e.mask&fanOnDir == 0 {
			continue // a file's create: the fd group sees the same process open and write it
		}
		if !retried && !r.resolvable(e) {
			p.mu.Lock()
			p.pidLocked(e.pid, at) // now, while the process may still be there
			p.mu.Unlock()
			carry = append(carry, e)
			continue
		}
		movedTo := r.movedTo(e)
		for _, rec := range e.recs {
			a := access{Time: at, PID: int(e.pid), Mask: uint32(e.mask)}
			switch rec.typ {
			case fanInfoDFIDName:
				a.Create = e.mask&fanCreate != 0
				a.Delete = e.mask&fanDelete != 0
				a.Rename = e.mask&(fanMovedFrom|fanMovedTo) != 0
				a.NewName = e.mask&fanMovedTo != 0
				if e.mask&fanMovedFrom != 0 {
					a.MovedTo = movedTo
				}
			case fanInfoOldDFIDName:
				a.Rename, a.MovedTo = true, movedTo
			case fanInfoNewDFIDName:
				a.Rename, a.NewName = true, true
			default:
				continue
			}
			if a.Path = r.path(rec); a.Path == "" || !p.inRoots(a.Path) {
				continue
			}
			p.mu.Lock()
			info := p.pidLocked(e.pid, at)
			p.mu.Unlock()
			a.User, a.Process = info.user, info.exe
			p.send(a)
		}
	}
	return carry
}

// rootSelf turns FAN_MOVE_SELF or FAN_DELETE_SELF of a watched root (the
// only folders whose marks ask for them) into an access of the root: a
// rename, with where it went (its handle's path now), or a delete.
func (p *fanotifyProbe) rootSelf(r *fidResolver, e fidEvent, at time.Time) {
	for _, typ := range []uint8{fanInfoFID, fanInfoDFIDName, fanInfoDFID} {
		rec, ok := e.record(typ)
		if !ok {
			continue
		}
		p.mu.Lock()
		root := p.rootKeys[rec.key()]
		delete(p.rootKeys, rec.key()) // no longer there: see fidResolver.dir
		p.mu.Unlock()
		if root == "" {
			continue
		}
		delete(r.batch, rec.key())
		if int(e.pid) == p.self {
			// The agent let go of the root last (a folder removed while
			// open goes when closed): who removed it is not known.
			return
		}
		a := access{Path: root, Time: at, PID: int(e.pid), Mask: uint32(e.mask)}
		if e.mask&fanMoveSelf != 0 {
			a.Rename = true
			if to := r.dir(rec); to != "" && to != root {
				a.MovedTo = to
			}
		} else {
			a.Delete = true
		}
		p.mu.Lock()
		info := p.pidLocked(e.pid, at)
		p.mu.Unlock()
		a.User, a.Process = info.user, info.exe
		p.send(a)
		return
	}
}

// movedTo is where a renamed entry went: the new folder and name when the
// event has them, else (moved to a folder without a mark, FAN_RENAME with
// the target's own handle, Linux >= 5.17) the entry's path now; "" when the
// event is no rename or the kernel does not say.
func (r *fidResolver) movedTo(e fidEvent) string {
	if e.mask&(fanRename|fanMovedFrom) == 0 {
		return ""
	}
	for _, rec := range e.recs {
		if rec.typ == fanInfoNewDFIDName {
			if p := r.path(rec); p != "" {
				return p
			}
		}
	}
	if self, ok := e.record(fanInfoFID); ok {
		return r.dir(self)
	}
	return ""
}

// resolvable says whether every name record of e has a directory path.
func (r *fidResolver) resolvable(e fidEvent) bool {
	for _, rec := range e.recs {
		switch rec.typ {
		case fanInfoDFIDName, fanInfoOldDFIDName, fanInfoNewDFIDName:
			if r.dir(rec) == "" {
				return false
			}
		}
	}
	return true
}

// folderEvent keeps the inode marks in step with a folder created, moved or
// removed: created or moved into a root, it is marked; moved out, unmarked.
func (p *fanotifyProbe) folderEvent(r *fidResolver, e fidEvent) {
	var from, to string
	for _, rec := range e.recs {
		switch {
		case rec.typ == fanInfoOldDFIDName || rec.typ == fanInfoDFIDName && e.mask&(fanMovedFrom|fanDelete) != 0:
			from = r.path(rec)
		case rec.typ == fanInfoNewDFIDName || rec.typ == fanInfoDFIDName && e.mask&(fanMovedTo|fanCreate) != 0:
			to = r.path(rec)
		}
	}
	if self, ok := e.record(fanInfoFID); ok && to == "" && e.mask&fanRename != 0 {
		// Moved to a folder without a mark: the kernel leaves out the new
		// name, the folder's own handle says where it went.
		to = r.dir(self)
	}
	fromIn, toIn := from != "" && p.inRoots(from), to != "" && p.inRoots(to)
	switch {
	case fromIn && toIn: // its marks moved with it
		p.folderLeft(from, "")
	case fromIn:
		p.folderLeft(from, to)
	}
	if toIn {
		p.folderAppeared(to)
	}
}

// remark walks the roots again after the FID queue overflowed.
func (p *fanotifyProbe) remark() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil || len(p.roots) == 0 {
		return
	}
	if err := p.applyMarksLocked(); err != nil {
		p.env.Log.Warn().Err(err).Msg("fileaccess: marking folders after an overflow")
	}
}
