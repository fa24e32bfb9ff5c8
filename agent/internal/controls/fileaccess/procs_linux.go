package fileaccess

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// The kernel's process events connector (linux/cn_proc.h): every fork,
// exec, uid change and exit on the machine, told to listeners as it
// happens. x/sys/unix has the netlink calls, not these constants.
const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procCnMcastIgnore = 2

	procEventFork = 0x1
	procEventExec = 0x2
	procEventUID  = 0x4
	procEventExit = 0x80000000

	cnMsgLen = 20 // struct cn_msg without data
)

// procsKeep is how long a process's identity is kept after it exited, for
// file events read after that (the fanotify FID group retries a read once).
const procsKeep = 10 * time.Second

// procsMax bounds the table (about 100 bytes a process).
const procsMax = 200000

// procID is what is known of one process: its effective uid (numeric),
// executable, and the command name when the executable could not be read.
type procID struct {
	uid       string
	exe       string
	comm      string
	inherited bool // exe is the parent's: forked, its exec not seen (yet)
	exited    time.Time
}

// procTable follows the process events connector so a process's user and
// executable are known from its exec on: a file event from a process that
// has exited since (mv, cp, rm finish within a millisecond) still gets
// them. A child inherits its parent's uid at fork and changes it only
// through a uid event, so the user is always known for processes born
// while the table runs. The executable comes from a fanotify group of its
// own with FAN_OPEN_EXEC on the filesystems holding programs: the kernel
// hands over the opened program, whose path is read however soon the
// process exits; /proc at the exec event is the fallback.
type procTable struct {
	proc string
	log  zerolog.Logger
	fd   int
	exec *os.File // fanotify FAN_OPEN_EXEC group; nil when refused

	mu      sync.Mutex
	cond    *sync.Cond
	m       map[int32]*procID
	exits   []int32 // exited, oldest first, to forget after procsKeep
	exitAt  []time.Time
	events  uint64 // events handled, for waiters
	execs   uint64 // exec events seen
	dropped uint64 // ENOBUFS: the socket overflowed
	closed  bool
}

// startProcTable subscribes to the process events connector (root only).
func startProcTable(proc string, log zerolog.Logger) (*procTable, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("fileaccess: process events socket: %w", err)
	}
	// Room for bursts of thousands of processes a second.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	// Wake once a second so close() is seen even where shutdown(2) does
	// not interrupt a netlink read.
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fileaccess: process events bind: %w", err)
	}
	if err := sendProcOp(fd, procCnMcastListen); err != nil {
		unix.Close(fd)
		return nil, err
	}
	t := &procTable{proc: proc, log: log, fd: fd, m: map[int32]*procID{}}
	t.cond = sync.NewCond(&t.mu)
	if f, err := openExecGroup(); err != nil {
		log.Warn().Err(err).Msg("fileaccess: no exec events; a program that exits at once may be named by its command only")
	} else {
		t.exec = f
		go t.readExec(f)
	}
	go t.read()
	return t, nil
}

// execFilesystems are where programs live; each distinct filesystem gets
// one FAN_OPEN_EXEC mark (the kernel reports execs only, not other opens).
var execFilesystems = []string{"/", "/usr", "/usr/local", "/opt", "/home", "/snap", "/nix"}

func openExecGroup() (*os.File, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fileaccess: exec fanotify_init: %w", err)
	}
	seen := map[uint64]bool{}
	marked := 0
	var firstErr error
	for _, p := range execFilesystems {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || seen[st.Dev] {
			continue
		}
		seen[st.Dev] = true
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN_EXEC, unix.AT_FDCWD, p); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("fileaccess: exec mark on %s: %w", p, err)
			}
			continue
		}
		marked++
	}
	if marked == 0 {
		unix.Close(fd)
		return nil, firstErr
	}
	return os.NewFile(uintptr(fd), "fanotify-exec"), nil
}

// interpreter says whether an exec-opened file is the ELF interpreter the
// kernel opens after the program itself (not the program).
func interpreter(path string) bool {
	b := filepath.Base(path)
	return strings.HasPrefix(b, "ld-linux") || strings.HasPrefix(b, "ld-musl") || strings.HasPrefix(b, "ld.so") ||
		strings.HasPrefix(b, "ld64.so")
}

func (t *procTable) readExec(f *os.File) {
	buf := make([]byte, 64<<10)
	self := int32(os.Getpid())
	for {
		n, err := f.Read(buf)
		if err != nil {
			return // closed
		}
		evs, _ := parseFanotify(buf[:n])
		for _, e := range evs {
			if e.fd < 0 {
				continue // overflow: /proc at the exec event is the fallback
			}
			path, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(e.fd)))
			// A set-uid or set-gid program changes the uid at exec without a
			// uid event: read it now, or take the file's owner.
			setuid := ""
			var st unix.Stat_t
			if err == nil && unix.Fstat(int(e.fd), &st) == nil && st.Mode&unix.S_ISUID != 0 {
				setuid = strconv.Itoa(int(st.Uid))
				if b, err := os.ReadFile(filepath.Join(t.proc, strconv.Itoa(int(e.pid)), "status")); err == nil {
					if uid, err := parseStatusUID(b); err == nil {
						setuid = uid
					}
				}
			}
			unix.Close(int(e.fd))
			if err != nil || e.pid == self || interpreter(path) {
				continue
			}
			t.mu.Lock()
			p := t.m[e.pid]
			if p == nil {
				p = &procID{}
				t.m[e.pid] = p
			}
			p.exe, p.inherited, p.comm = path, false, ""
			if setuid != "" {
				p.uid = setuid
			}
			t.events++
			t.cond.Broadcast()
			t.mu.Unlock()
		}
	}
}

func sendProcOp(fd int, op uint32) error {
	msg := make([]byte, unix.NLMSG_HDRLEN+cnMsgLen+4)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.NLMSG_DONE)
	binary.NativeEndian.PutUint32(msg[12:], uint32(os.Getpid()))
	cn := msg[unix.NLMSG_HDRLEN:]
	binary.NativeEndian.PutUint32(cn[0:], cnIdxProc)
	binary.NativeEndian.PutUint32(cn[4:], cnValProc)
	binary.NativeEndian.PutUint16(cn[16:], 4)
	binary.NativeEndian.PutUint32(cn[cnMsgLen:], op)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("fileaccess: process events subscribe: %w", err)
	}
	return nil
}

func (t *procTable) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.cond.Broadcast()
	t.mu.Unlock()
	_ = sendProcOp(t.fd, procCnMcastIgnore)
	if t.exec != nil {
		t.exec.Close()
	}
	// Shutdown wakes the reader blocked in Recvfrom; it closes the fd.
	_ = unix.Shutdown(t.fd, unix.SHUT_RDWR)
}

func (t *procTable) read() {
	defer unix.Close(t.fd)
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(t.fd, buf, 0)
		t.mu.Lock()
		closed := t.closed
		t.mu.Unlock()
		if closed {
			return
		}
		if errors.Is(err, unix.ENOBUFS) {
			t.mu.Lock()
			t.dropped++
			t.mu.Unlock()
			continue
		}
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil || n == 0 {
			t.log.Warn().Err(err).Msg("fileaccess: process events stopped")
			return
		}
		t.handle(buf[:n], time.Now())
	}
}

// handle parses one datagram of netlink messages.
func (t *procTable) handle(b []byte, now time.Time) {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return
		}
		msg := b[unix.NLMSG_HDRLEN:l]
		if len(msg) >= cnMsgLen+16 && binary.NativeEndian.Uint32(msg[0:]) == cnIdxProc {
			t.event(msg[cnMsgLen:], now)
		}
		adv := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if adv >= len(b) {
			return
		}
		b = b[adv:]
	}
}

// event applies one struct proc_event: what, cpu, timestamp, then the data.
func (t *procTable) event(ev []byte, now time.Time) {
	what := binary.NativeEndian.Uint32(ev[0:])
	d := ev[16:]
	u32 := func(i int) int32 {
		if len(d) < 4*(i+1) {
			return -1
		}
		return int32(binary.NativeEndian.Uint32(d[4*i:]))
	}
	t.mu.Lock()
	defer func() {
		t.events++
		t.cond.Broadcast()
		t.mu.Unlock()
	}()
	switch what {
	case procEventFork:
		ppid, cpid, ctgid := u32(1), u32(2), u32(3)
		if cpid != ctgid || cpid <= 0 {
			return // a thread: same process
		}
		parent := t.m[ppid]
		if parent == nil {
			p := t.readLocked(ppid)
			parent = &p
			t.m[ppid] = parent
		}
		if len(t.m) > procsMax { // exits missed (socket overflow): start over
			t.m, t.exits, t.exitAt = map[int32]*procID{}, nil, nil
		}
		c := t.m[cpid]
		if c == nil || !c.exited.IsZero() { // new, or a pid reused
			c = &procID{exe: parent.exe, comm: parent.comm, inherited: true}
			t.m[cpid] = c
		}
		// Its exec may have been read first (another socket): keep that.
		c.uid = parent.uid
	case procEventExec:
		pid := u32(1)
		if pid <= 0 {
			return
		}
		t.execs++
		var p procID
		if t.exec == nil {
			p = t.readLocked(pid)
		} // else: the program (and a set-uid program's uid) come from the exec group
		old := t.m[pid]
		if old == nil {
			t.m[pid] = &p
			return
		}
		if p.uid != "" {
			old.uid = p.uid
		}
		// Exited already: the uid from fork or a uid event stays, and the
		// program from the exec group if it told.
		if p.exe != "" || p.comm != "" {
			old.exe, old.comm, old.inherited = p.exe, p.comm, false
		}
		if t.exec != nil && old.inherited {
			old.exe, old.comm, old.inherited = "", "", false // exec'd: its program comes from the exec group
		}
	case procEventUID:
		pid, euid := u32(1), u32(3)
		if pid <= 0 || euid < 0 {
			return
		}
		if p := t.m[pid]; p != nil {
			p.uid = strconv.Itoa(int(uint32(euid)))
		}
	case procEventExit:
		pid, tgid := u32(0), u32(1)
		if pid != tgid || pid <= 0 {
			return
		}
		if p := t.m[pid]; p != nil {
			p.exited = now
			t.exits = append(t.exits, pid)
			t.exitAt = append(t.exitAt, now)
		}
		for len(t.exits) > 0 && now.Sub(t.exitAt[0]) > procsKeep {
			if p := t.m[t.exits[0]]; p != nil && !p.exited.IsZero() && now.Sub(p.exited) > procsKeep {
				delete(t.m, t.exits[0])
			}
			t.exits, t.exitAt = t.exits[1:], t.exitAt[1:]
		}
	}
}

// readLocked reads a live process's identity from /proc; what it cannot
// read stays empty (the process is gone).
func (t *procTable) readLocked(pid int32) procID {
	dir := filepath.Join(t.proc, strconv.Itoa(int(pid)))
	var p procID
	p.exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	if b, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		p.uid, _ = parseStatusUID(b)
	}
	if p.exe == "" {
		if b, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
			p.comm = strings.TrimSpace(string(b))
		}
	}
	return p
}

// lookup returns what the table knows of pid, waiting up to wait for the
// connector's events to catch up (a file event can be read before the exec
// event that preceded it); complete says the uid and program are both
// known from the exec on, not only inherited from the parent.
func (t *procTable) lookup(pid int32, wait time.Duration) (id procID, complete bool) {
	deadline := time.Now().Add(wait)
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		p := t.m[pid]
		// With the exec group, its program path will come: wait for it
		// rather than settle for the command name.
		if p != nil && !p.inherited && p.uid != "" && (p.exe != "" || p.comm != "" && t.exec == nil) {
			return *p, true
		}
		if t.closed || !time.Now().Before(deadline) {
			if p != nil {
				return *p, false // what is known; forked without exec: the parent's program is its own
			}
			return procID{}, false
		}
		// Woken by the next event; a timer wakes the wait at the deadline.
		timer := time.AfterFunc(time.Until(deadline), func() {
			t.mu.Lock()
			t.cond.Broadcast()
			t.mu.Unlock()
		})
		t.cond.Wait()
		timer.Stop()
	}
}

// size is how many processes the table holds.
func (t *procTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
