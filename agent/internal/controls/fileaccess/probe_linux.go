package fileaccess

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mamori/mamori/agent/internal/controls"
)

// fanotifyProbe attributes file accesses with fanotify (needs
// CAP_SYS_ADMIN): mount marks for open, modify, close-write and
// close-nowrite; each event's fd is resolved to a path, filtered by the
// watched roots, and its PID resolved at once to user and executable.
type fanotifyProbe struct {
	env  controls.Env
	proc string // /proc, injectable for tests
	self int
	out  chan access

	mu      sync.Mutex
	f       *os.File
	marked  map[string]bool
	roots   []string
	dropped uint64
	users   map[string]string // uid -> name
	pids    map[int32]pidInfo

	fidOff   bool            // tests: behave as a kernel without FID reporting
	fid      *fidGroup       // nil: no FID group (yet)
	fidErr   error           // why there is none, reported once
	fidRoots map[string]bool // roots whose filesystem has the FID mark
}

type pidInfo struct {
	user, exe string
	at        time.Time
}

const fanMask = unix.FAN_OPEN | unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE | unix.FAN_CLOSE_NOWRITE

func newProbe(env controls.Env) probe {
	return &fanotifyProbe{env: env, proc: "/proc", self: os.Getpid(), out: make(chan access, 8192),
		marked: map[string]bool{}, fidRoots: map[string]bool{}, users: map[string]string{}, pids: map[int32]pidInfo{}}
}

func (p *fanotifyProbe) accesses() <-chan access  { return p.out }
func (p *fanotifyProbe) joinDelay() time.Duration { return 0 }

// ack: fanotify events are not kept by the kernel, there is no position to save.
func (p *fanotifyProbe) ack(uint64) {}

func (p *fanotifyProbe) setRoots(ctx context.Context, roots []string, enforce bool) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.roots = append([]string(nil), roots...)
	if len(roots) == 0 {
		return "", nil
	}
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
	for _, r := range roots {
		if p.marked[r] {
			continue
		}
		// A mount mark sees the whole file system the root is on; events
		// are filtered by root below.
		if err := unix.FanotifyMark(int(p.f.Fd()), unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, fanMask, unix.AT_FDCWD, r); err != nil {
			return "", fmt.Errorf("fileaccess: fanotify_mark %s: %w", r, err)
		}
		p.marked[r] = true
	}
	return p.setFIDRootsLocked(roots), nil
}

// setFIDRootsLocked adds the FID group's marks where the kernel and the
// filesystem allow and returns the attribution method: "fanotify+fid" when
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
	for _, r := range roots {
		if p.fid == nil {
			without = append(without, r)
			continue
		}
		if p.fidRoots[r] {
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
	p.marked = map[string]bool{}
	if p.fid != nil {
		if ferr := p.fid.close(); err == nil {
			err = ferr
		}
		p.fid, p.fidRoots = nil, map[string]bool{}
	}
	p.fidErr = nil
	return err
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
	unix.Close(int(e.fd))
	if err != nil || int(e.pid) == p.self {
		return
	}
	p.mu.Lock()
	in := false
	for _, r := range p.roots {
		if within(path, r) {
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
	a := access{Path: path, Time: now, PID: int(e.pid), User: info.user, Process: info.exe, Mask: uint32(e.mask),
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
	if b, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		if uid, err := parseStatusUID(b); err == nil {
			name, ok := p.users[uid]
			if !ok {
				name = uid
				if u, err := user.LookupId(uid); err == nil {
					name = u.Username
				}
				p.users[uid] = name
			}
			in.user = name
		}
	}
	p.pids[pid] = in
	return in
}
