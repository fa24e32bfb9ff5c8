package fileaccess

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/fswatch"
)

// fanotifyProbe attributes file accesses with fanotify (needs
// CAP_SYS_ADMIN): inode marks on the watched folders (mount marks as a
// fallback, marks_linux.go) for open, modify, close-write and
// close-nowrite; each event's fd is resolved to a path, filtered by the
// watched roots, and its PID resolved at once to user and executable.
type fanotifyProbe struct {
	env  controls.Env
	proc string // /proc, injectable for tests
	self int
	out  chan access

	mu       sync.Mutex
	f        *os.File
	roots    []string
	method   string            // of the last setRoots, kept while the roots stay the same
	budget   int               // folders that get inode marks; 0: from max_user_marks
	dirs     map[devIno]string // inode-marked folders
	dirPaths map[string]devIno
	wide     map[string]bool // roots with mount (and FID filesystem) marks
	wideAll  bool            // over the budget: every root has them
	fsReady  map[uint64]bool // st_dev whose filesystem has a mount fd in fid.mounts
	dropped  uint64
	users    map[string]string // uid -> name
	pids     map[int32]pidInfo

	procs    *procTable // identities from exec on (process events connector); nil: none
	procsErr error
	procsOff bool // tests: resolve from /proc only

	fidOff   bool            // tests: behave as a kernel without FID reporting
	fid      *fidGroup       // nil: no FID group (yet)
	fidErr   error           // why there is none, reported once
	fidRoots map[string]bool // roots whose filesystem has the FID mark
	// rootKeys: file handle key (fidRecord.key) -> root, for the roots
	// whose own FID mark also reports FAN_MOVE_SELF and FAN_DELETE_SELF:
	// the watched folder itself moved away or removed.
	rootKeys map[string]string
}

type pidInfo struct {
	user, exe string
	at        time.Time
}

// deletedSuffix is what Linux appends to /proc/self/fd links of unlinked files.
const deletedSuffix = " (deleted)"

const fanMask = unix.FAN_OPEN | unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE | unix.FAN_CLOSE_NOWRITE

func newProbe(env controls.Env) probe {
	return &fanotifyProbe{env: env, proc: "/proc", self: os.Getpid(), out: make(chan access, 8192),
		dirs: map[devIno]string{}, dirPaths: map[string]devIno{}, wide: map[string]bool{}, fsReady: map[uint64]bool{}, fidRoots: map[string]bool{}, users: map[string]string{}, pids: map[int32]pidInfo{}}
}

func (p *fanotifyProbe) accesses() <-chan access  { return p.out }
func (p *fanotifyProbe) joinDelay() time.Duration { return 0 }

// ack: fanotify events are not kept by the kernel, there is no position to save.
func (p *fanotifyProbe) ack(uint64) {}

func (p *fanotifyProbe) setRoots(ctx context.Context, roots []string, enforce bool) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(roots) == 0 {
		p.roots, p.method = nil, ""
		p.unmarkAllLocked()
		return "", nil
	}
	if p.f != nil && p.method != "" && slices.Equal(roots, p.roots) && p.rootsKeyedLocked() {
		return p.method, nil // new folders are marked as the FID group reports them
	}
	p.roots = append([]string(nil), roots...)
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("fileaccess: fanotify needs root (CAP_SYS_ADMIN): %w", errors.ErrUnsupported)
	}
	if p.f == nil {
		fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE)
		if err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
				return "", fmt.Errorf("fileaccess: fanotify_init: %w: %w", err, errors.ErrUnsupported)
			}
			return "", fmt.Errorf("fileaccess: fanotify_init: %w", err)
		}
		p.f = os.NewFile(uintptr(fd), "fanotify")
		go p.read(p.f)
	}
	if p.procs == nil && !p.procsOff {
		if p.procs, p.procsErr = startProcTable(p.proc, p.env.Log); p.procsErr != nil {
			p.env.Log.Warn().Err(p.procsErr).Msg("fileaccess: no process events; processes that exit at once stay unattributed")
		}
	}
	method := p.setFIDRootsLocked(roots)
	if err := p.applyMarksLocked(); err != nil {
		p.method = ""
		return "", err
	}
	p.method = method
	return method, nil
}

// setFIDRootsLocked finds the roots whose filesystem takes the FID group's
// marks (p.fidRoots) and returns the attribution method: "fanotify+fid" when
// every root has them, "fanotify" (deletes and renames joined to the last
// writer) when none has.
func (p *fanotifyProbe) setFIDRootsLocked(roots []string) string {
	if p.fid == nil && p.fidErr == nil {
		if p.fidOff {
			p.fidErr = errors.New("fileaccess: FID group turned off")
		} else if p.fidErr = p.initFIDLocked(); p.fidErr != nil {
			p.env.Log.Info().Err(p.fidErr).Msg("fileaccess: no fanotify FID group; deletes and renames are attributed to the last writer")
		}
	}
	var without []string
	had := p.fidRoots
	p.fidRoots = map[string]bool{}
	for _, r := range roots {
		if p.fid == nil {
			without = append(without, r)
			continue
		}
		if had[r] {
			p.fidRoots[r] = true
			p.rootKeyLocked(r) // the folder there may be another one by now
			continue
		}
		if err := p.markFIDLocked(r); err != nil {
			p.env.Log.Info().Err(err).Str("root", r).Msg("fileaccess: no fanotify FID mark; deletes and renames there are attributed to the last writer")
			without = append(without, r)
			continue
		}
		p.fidRoots[r] = true
	}
	switch {
	case len(without) == 0:
		return "fanotify+fid"
	case len(without) == len(roots):
		return "fanotify"
	}
	return "fanotify+fid (not on " + strings.Join(without, ", ") + ")"
}

func (p *fanotifyProbe) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return nil
	}
	err := p.f.Close()
	p.f = nil
	p.method = ""
	p.wide, p.wideAll, p.fsReady = map[string]bool{}, false, map[uint64]bool{}
	p.setDirsLocked(map[devIno]string{})
	if p.fid != nil {
		if ferr := p.fid.close(); err == nil {
			err = ferr
		}
		p.fid, p.fidRoots = nil, map[string]bool{}
	}
	p.fidErr = nil
	if p.procs != nil {
		p.procs.close()
		p.procs = nil
	}
	return err
}

// processEvents says how processes are known for the status: from their
// exec on (the connector), or from /proc when an event is read.
func (p *fanotifyProbe) processEvents() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.procs != nil:
		return "exec (process events connector)"
	case p.procsErr != nil:
		return "proc only: " + p.procsErr.Error()
	}
	return ""
}

func (p *fanotifyProbe) read(f *os.File) {
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				p.env.Log.Warn().Err(err).Msg("fileaccess: fanotify read stopped")
			}
			return
		}
		evs, perr := parseFanotify(buf[:n])
		now := p.env.Clock.Now()
		for _, e := range evs {
			p.handle(e, now)
		}
		if perr != nil {
			p.env.Log.Warn().Err(perr).Msg("fileaccess: fanotify")
		}
	}
}

func (p *fanotifyProbe) handle(e fanEvent, now time.Time) {
	if e.fd < 0 { // FAN_NOFD: queue overflow
		if e.mask&unix.FAN_Q_OVERFLOW != 0 {
			p.env.Log.Warn().Msg("fileaccess: fanotify queue overflowed; some accesses are unattributed")
		}
		return
	}
	path, err := os.Readlink(filepath.Join(p.proc, "self", "fd", strconv.Itoa(int(e.fd))))
	unlinked := false
	if err == nil && strings.HasSuffix(path, deletedSuffix) {
		// Linux appends " (deleted)" to the link of a file unlinked since
		// (sed -i closes the original after renaming its output over it).
		// Only a link count of 0 says so: a file may be named that.
		var st unix.Stat_t
		if unix.Fstat(int(e.fd), &st) == nil && st.Nlink == 0 {
			path, unlinked = strings.TrimSuffix(path, deletedSuffix), true
		}
	}
	unix.Close(int(e.fd))
	if err != nil || int(e.pid) == p.self {
		return
	}
	p.mu.Lock()
	in := false
	for _, r := range p.roots {
		if fswatch.Within(path, r) {
			in = true
			break
		}
	}
	if !in {
		p.mu.Unlock()
		return
	}
	info := p.pidLocked(e.pid, now)
	p.mu.Unlock()
	a := access{Path: path, Time: now, PID: int(e.pid), User: info.user, Process: info.exe, Mask: uint32(e.mask), Unlinked: unlinked,
		Write:  e.mask&(unix.FAN_MODIFY|unix.FAN_CLOSE_WRITE) != 0,
		Read:   e.mask&unix.FAN_CLOSE_NOWRITE != 0 && e.mask&(unix.FAN_MODIFY|unix.FAN_CLOSE_WRITE) == 0,
		Delete: false}
	if e.mask&unix.FAN_OPEN != 0 && !a.Write && !a.Read {
		return // the close that follows says whether it was a read or a write
	}
	p.send(a)
}

// send hands an access to the control; when it is behind, the access is
// dropped (counted) rather than stalling the kernel queue.
func (p *fanotifyProbe) send(a access) {
	select {
	case p.out <- a:
	default:
		p.mu.Lock()
		p.dropped++
		p.mu.Unlock()
	}
}

// pidLocked resolves a PID to user and executable, right away: short-lived
// processes are gone by the time anyone asks later.
func (p *fanotifyProbe) pidLocked(pid int32, now time.Time) pidInfo {
	if in, ok := p.pids[pid]; ok && now.Sub(in.at) < time.Second {
		return in
	}
	if len(p.pids) > 4096 {
		p.pids = map[int32]pidInfo{}
	}
	dir := filepath.Join(p.proc, strconv.Itoa(int(pid)))
	in := pidInfo{at: now}
	in.exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	uid := ""
	if b, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		uid, _ = parseStatusUID(b)
	}
	if (in.exe == "" || uid == "") && p.procs != nil {
		// Gone already: what the process events said from its exec on (if
		// they are read by now; identify asks again when the change is
		// recorded).
		if id, ok := p.procs.lookup(pid, 0); ok {
			if uid == "" {
				uid = id.uid
			}
			if in.exe == "" {
				in.exe = id.exe
			}
			if in.exe == "" {
				in.exe = id.comm // exited before its executable could be read: the command name
			}
		}
	}
	in.user = p.userLocked(uid)
	if in.exe != "" && in.user != "" {
		p.pids[pid] = in // incomplete answers are not kept: identify may know more later
	}
	return in
}

func (p *fanotifyProbe) userLocked(uid string) string {
	if uid == "" {
		return ""
	}
	name, ok := p.users[uid]
	if !ok {
		name = uid
		if u, err := user.LookupId(uid); err == nil {
			name = u.Username
		}
		p.users[uid] = name
	}
	return name
}

// identify is asked when a change is recorded, a debounce after its
// access was read, for a PID whose user or program was not known then: by
// now the process events that came before the access have been read.
func (p *fanotifyProbe) identify(pid int) (user, exe string) {
	p.mu.Lock()
	procs := p.procs
	p.mu.Unlock()
	if procs == nil || pid <= 0 {
		return "", ""
	}
	id, _ := procs.lookup(int32(pid), procsWait) // incomplete by now: forked without exec, or unknown
	exe = id.exe
	if exe == "" {
		exe = id.comm
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.userLocked(id.uid), exe
}

// procsWait bounds how long identify waits for process events still
// unread (a loaded machine).
const procsWait = 20 * time.Millisecond
