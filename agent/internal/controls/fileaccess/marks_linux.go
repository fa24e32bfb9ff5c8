package fileaccess

import (
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

	"golang.org/x/sys/unix"

	"github.com/mamori/mamori/agent/internal/fswatch"
)

// Where the fanotify marks go. A mount or filesystem mark makes the kernel
// queue, and the agent read and drop, every access on the whole filesystem
// (a build or a browser cache elsewhere costs the agent CPU for nothing), so
// each folder under a root gets an inode mark in both groups instead: the fd
// group's with FAN_EVENT_ON_CHILD (its files' opens and writes), the FID
// group's for the dirent events reported on the folder itself. New folders
// are marked when the FID group reports their create or move in. Mount and
// filesystem marks remain only where that cannot work: a root without the FID
// group (nothing would report its new folders) or more folders than the mark
// budget.

// devIno identifies a marked folder; it survives renames, unlike its path.
type devIno struct{ dev, ino uint64 }

const (
	fdDirMask       = fanMask | unix.FAN_EVENT_ON_CHILD
	inodeMarkFlags  = unix.FAN_MARK_ADD | unix.FAN_MARK_ONLYDIR | unix.FAN_MARK_DONT_FOLLOW
	defaultMaxMarks = 8192 // the fixed per-group limit before Linux 5.13
	maxUserMarks    = "sys/fs/fanotify/max_user_marks"
)

// markBudgetLocked is how many folders get inode marks before every root falls
// back to mount/filesystem marks: a quarter of the user's fanotify marks
// (each folder takes one per group), leaving the rest to other software.
func (p *fanotifyProbe) markBudgetLocked() int {
	if p.budget > 0 {
		return p.budget
	}
	n := defaultMaxMarks
	if b, err := os.ReadFile(filepath.Join(p.proc, maxUserMarks)); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v > 0 {
			n = v
		}
	}
	p.budget = max(n/4, 1)
	return p.budget
}

// walkDirs calls fn for root and every folder under it, each before its
// entries are read (so a folder marked in fn cannot miss a child created
// while it is listed). Symlinks are not followed; unreadable folders are
// skipped. fn returning false stops the walk.
func walkDirs(root string, fn func(path string, id devIno) bool) {
	stop := errors.New("stop")
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil {
			return fs.SkipDir
		}
		if !fn(path, devIno{uint64(st.Dev), uint64(st.Ino)}) {
			return stop
		}
		return nil
	})
}

// markDirLocked puts inode marks on one folder: the fd group's always, the
// FID group's when fid. A FID mark refused (a filesystem without file
// handles mounted inside a root) leaves the folder to the fd group.
func (p *fanotifyProbe) markDirLocked(path string, id devIno, fid bool) error {
	if err := unix.FanotifyMark(int(p.f.Fd()), inodeMarkFlags, fdDirMask, unix.AT_FDCWD, path); err != nil {
		return fmt.Errorf("fileaccess: fanotify_mark %s: %w", path, err)
	}
	if !fid || p.fid == nil {
		return nil
	}
	if !p.fsReady[id.dev] {
		if err := p.ensureMountLocked(path); err != nil {
			p.env.Log.Debug().Err(err).Str("dir", path).Msg("fileaccess: no FID mark on this folder")
			return nil
		}
		p.fsReady[id.dev] = true
	}
	if err := unix.FanotifyMark(int(p.fid.f.Fd()), inodeMarkFlags, p.fidMaskLocked(path), unix.AT_FDCWD, path); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("fileaccess: fanotify_mark %s: %w", path, err)
		}
		p.env.Log.Debug().Err(err).Str("dir", path).Msg("fileaccess: no FID mark on this folder")
	}
	return nil
}

// unmarkDirLocked removes both groups' inode marks from a folder; a folder
// that was not marked is left as it is.
func (p *fanotifyProbe) unmarkDirLocked(path string) {
	fl := unix.FAN_MARK_REMOVE | unix.FAN_MARK_ONLYDIR | unix.FAN_MARK_DONT_FOLLOW
	_ = unix.FanotifyMark(int(p.f.Fd()), uint(fl), fdDirMask, unix.AT_FDCWD, path)
	if p.fid != nil {
		_ = unix.FanotifyMark(int(p.fid.f.Fd()), uint(fl), p.fid.mask()|rootSelfMask, unix.AT_FDCWD, path)
	}
}

// rootSelfMask is what a root's own FID mark reports besides the dirent
// events of its entries: the root itself moved away or removed (its
// parent, not marked, would report the rename or delete).
const rootSelfMask = fanMoveSelf | fanDelSelf

// fidMaskLocked is the FID group's mask for the folder at path: with
// rootSelfMask when it is a root.
func (p *fanotifyProbe) fidMaskLocked(path string) uint64 {
	if slices.Contains(p.roots, path) {
		return p.fid.mask() | rootSelfMask
	}
	return p.fid.mask()
}

// applyMarksLocked brings the marks in line with p.roots and p.fidRoots:
// inode marks on every folder of the roots with the FID group, mount (and
// filesystem) marks on the others, or on all of them when the folders
// exceed the budget. New marks are added before old ones are removed, so a
// root is never without any.
func (p *fanotifyProbe) applyMarksLocked() error {
	budget := p.markBudgetLocked()
	var inodeRoots, wideRoots []string
	for _, r := range p.roots {
		if p.fidRoots[r] {
			inodeRoots = append(inodeRoots, r)
		} else {
			wideRoots = append(wideRoots, r)
		}
	}
	dirs := map[devIno]string{}
	for _, r := range inodeRoots {
		walkDirs(r, func(path string, id devIno) bool {
			dirs[id] = path
			return len(dirs) <= budget
		})
	}
	if len(dirs) > budget {
		return p.goWideLocked()
	}
	p.wideAll = false
	rootOf := func(path string) string {
		for _, r := range inodeRoots {
			if fswatch.Within(path, r) {
				return r
			}
		}
		return ""
	}
	for id, d := range dirs {
		if err := p.markDirLocked(d, id, rootOf(d) != ""); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				return p.goWideLocked()
			}
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				delete(dirs, id) // removed since the walk
				continue
			}
			return err
		}
	}
	if err := p.setWideLocked(wideRoots); err != nil {
		return err
	}
	// Folders no longer under a root: unmarked where they still are (one
	// renamed away keeps its mark until the kernel drops the folder; its
	// events are filtered out by path).
	for id, d := range p.dirs {
		if _, ok := dirs[id]; ok {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(d, &st) == nil && (devIno{uint64(st.Dev), uint64(st.Ino)}) == id {
			p.unmarkDirLocked(d)
		}
	}
	p.setDirsLocked(dirs)
	return nil
}

func (p *fanotifyProbe) setDirsLocked(dirs map[devIno]string) {
	p.dirs = dirs
	p.dirPaths = make(map[string]devIno, len(dirs))
	for id, d := range dirs {
		p.dirPaths[d] = id
	}
}

// goWideLocked falls back to mount and filesystem marks for every root.
func (p *fanotifyProbe) goWideLocked() error {
	if !p.wideAll {
		p.env.Log.Info().Int("budget", p.markBudgetLocked()).Msg("fileaccess: more folders than the fanotify mark budget; watching whole mounts and filesystems instead")
	}
	p.wideAll = true
	if err := p.setWideLocked(p.roots); err != nil {
		return err
	}
	if len(p.dirs) > 0 {
		_ = unix.FanotifyMark(int(p.f.Fd()), unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, "")
		if p.fid != nil {
			_ = unix.FanotifyMark(int(p.fid.f.Fd()), unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, "")
		}
	}
	p.setDirsLocked(map[devIno]string{})
	return nil
}

// setWideLocked puts mount marks (fd group) and filesystem marks (FID
// group, where the root has it) on roots and removes those of other roots.
// The kernel removes such marks only all at once, so a change re-adds them.
func (p *fanotifyProbe) setWideLocked(roots []string) error {
	want := map[string]bool{}
	for _, r := range roots {
		want[r] = true
	}
	if maps.Equal(want, p.wide) {
		return nil
	}
	if len(p.wide) > 0 {
		_ = unix.FanotifyMark(int(p.f.Fd()), unix.FAN_MARK_FLUSH|unix.FAN_MARK_MOUNT, 0, unix.AT_FDCWD, "")
		if p.fid != nil {
			_ = unix.FanotifyMark(int(p.fid.f.Fd()), unix.FAN_MARK_FLUSH|unix.FAN_MARK_FILESYSTEM, 0, unix.AT_FDCWD, "")
		}
	}
	p.wide = map[string]bool{}
	for _, r := range roots {
		if err := unix.FanotifyMark(int(p.f.Fd()), unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, fanMask, unix.AT_FDCWD, r); err != nil {
			return fmt.Errorf("fileaccess: fanotify_mark %s: %w", r, err)
		}
		p.wide[r] = true
		if p.fid != nil && p.fidRoots[r] {
			if err := unix.FanotifyMark(int(p.fid.f.Fd()), unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, p.fid.mask(), unix.AT_FDCWD, r); err != nil {
				p.env.Log.Info().Err(err).Str("root", r).Msg("fileaccess: no fanotify FID filesystem mark")
			}
		}
	}
	return nil
}

// unmarkAllLocked removes every mark of both groups (no roots left).
func (p *fanotifyProbe) unmarkAllLocked() {
	if p.f == nil {
		return
	}
	for _, fl := range []uint{unix.FAN_MARK_FLUSH, unix.FAN_MARK_FLUSH | unix.FAN_MARK_MOUNT, unix.FAN_MARK_FLUSH | unix.FAN_MARK_FILESYSTEM} {
		_ = unix.FanotifyMark(int(p.f.Fd()), fl, 0, unix.AT_FDCWD, "")
		if p.fid != nil {
			_ = unix.FanotifyMark(int(p.fid.f.Fd()), fl, 0, unix.AT_FDCWD, "")
		}
	}
	p.wide, p.wideAll = map[string]bool{}, false
	p.setDirsLocked(map[devIno]string{})
}

// folderAppeared marks a folder created in, or moved into, a root with
// inode marks, and the folders already inside it (mkdir -p, a moved tree).
// A file written in it before its mark lands is not attributed; the
// watcher still records the change.
func (p *fanotifyProbe) folderAppeared(path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil || p.wideAll {
		return
	}
	root := ""
	for _, r := range p.roots {
		if fswatch.Within(path, r) && p.fidRoots[r] && len(r) > len(root) {
			root = r
		}
	}
	if root == "" {
		return
	}
	budget := p.markBudgetLocked()
	var err error
	walkDirs(path, func(d string, id devIno) bool {
		if err = p.markDirLocked(d, id, true); err != nil {
			return false
		}
		p.dirs[id], p.dirPaths[d] = d, id
		return len(p.dirs) <= budget
	})
	if len(p.dirs) > budget || errors.Is(err, unix.ENOSPC) {
		err = p.goWideLocked()
	}
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
		p.env.Log.Warn().Err(err).Str("dir", path).Msg("fileaccess: marking a new folder")
	}
}

// folderLeft forgets a folder removed from a root (the kernel drops its
// mark with it) or unmarks one moved out of the roots, with its subfolders.
func (p *fanotifyProbe) folderLeft(path, movedTo string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return
	}
	if movedTo != "" {
		walkDirs(movedTo, func(d string, id devIno) bool {
			if _, ok := p.dirs[id]; ok {
				p.unmarkDirLocked(d)
				delete(p.dirs, id)
			}
			return true
		})
	}
	if id, ok := p.dirPaths[path]; ok {
		delete(p.dirPaths, path)
		delete(p.dirs, id)
	}
}

// markScope says where the marks are, for the status attrs.
func (p *fanotifyProbe) markScope() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.f == nil || len(p.roots) == 0:
		return ""
	case p.wideAll:
		return fmt.Sprintf("mount (more than %d folders)", p.markBudgetLocked())
	case len(p.wide) == 0:
		return "folders"
	}
	w := make([]string, 0, len(p.wide))
	for r := range p.wide {
		w = append(w, r)
	}
	sort.Strings(w)
	if len(w) == len(p.roots) {
		return "mount"
	}
	return "folders; mount: " + strings.Join(w, ", ")
}
