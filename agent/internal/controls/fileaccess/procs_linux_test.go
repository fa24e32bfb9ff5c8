package fileaccess

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// procMsg builds one netlink datagram holding a cn_proc event, as the
// kernel sends it (linux/cn_proc.h): nlmsghdr, cn_msg, proc_event.
func procMsg(what uint32, data ...uint32) []byte {
	ev := make([]byte, 16+4*len(data))
	binary.NativeEndian.PutUint32(ev[0:], what)
	for i, d := range data {
		binary.NativeEndian.PutUint32(ev[16+4*i:], d)
	}
	cn := make([]byte, cnMsgLen, cnMsgLen+len(ev))
	binary.NativeEndian.PutUint32(cn[0:], cnIdxProc)
	binary.NativeEndian.PutUint32(cn[4:], cnValProc)
	binary.NativeEndian.PutUint16(cn[16:], uint16(len(ev)))
	cn = append(cn, ev...)
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(cn))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.NLMSG_HDRLEN+len(cn)))
	binary.NativeEndian.PutUint16(msg[4:], unix.NLMSG_DONE)
	return append(msg, cn...)
}

// fakeProcDir writes /proc/<pid>/{exe,status,comm} for a live process.
func fakeProcDir(t *testing.T, proc string, pid int, exe string, uid int, comm string) {
	t.Helper()
	d := filepath.Join(proc, strconv.Itoa(pid))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if exe != "" {
		os.Symlink(exe, filepath.Join(d, "exe"))
	}
	os.WriteFile(filepath.Join(d, "status"), []byte("Name:\t"+comm+"\nUid:\t"+strconv.Itoa(uid)+"\t"+strconv.Itoa(uid)+"\t"+strconv.Itoa(uid)+"\t"+strconv.Itoa(uid)+"\n"), 0o644)
	os.WriteFile(filepath.Join(d, "comm"), []byte(comm+"\n"), 0o644)
}

// The table follows fork (uid and program inherited), exec (program read
// at once, or the command name when the process is already a zombie), uid
// changes and exit (kept procsKeep, then forgotten), from the kernel's
// bytes; a thread's fork is not a process; malformed datagrams change
// nothing.
func TestProcTableEvents(t *testing.T) {
	proc := t.TempDir()
	fakeProcDir(t, proc, 100, "/usr/bin/bash", 1000, "bash")
	tb := &procTable{proc: proc, log: zerolog.Nop(), m: map[int32]*procID{}}
	tb.cond = sync.NewCond(&tb.mu)
	now := time.Now()
	tb.handle(procMsg(procEventFork, 100, 100, 200, 200), now) // bash forks 200
	tb.handle(procMsg(procEventFork, 100, 100, 201, 100), now) // a thread of bash
	if id, complete := tb.lookup(200, 0); id.uid != "1000" || id.exe != "/usr/bin/bash" || !id.inherited || complete {
		t.Fatalf("after fork: %+v complete %v", id, complete)
	}
	if _, ok := tb.m[201]; ok {
		t.Fatal("a thread entered the table")
	}
	// 200 execs mv and exits before /proc is read: uid from the fork, the
	// command name from comm (a zombie still has it).
	fakeProcDir(t, proc, 200, "", 0, "mv")
	tb.handle(procMsg(procEventExec, 200, 200), now)
	if id, complete := tb.lookup(200, 0); id.uid != "0" && id.uid != "1000" || id.comm != "mv" || id.inherited || !complete {
		t.Fatalf("after exec: %+v complete %v", id, complete)
	}
	// A uid change (setuid) is followed.
	tb.handle(procMsg(procEventUID, 200, 200, 0, 0), now)
	if id, _ := tb.lookup(200, 0); id.uid != "0" {
		t.Fatalf("after setuid: %+v", id)
	}
	// Exit: kept for file events read later, then forgotten.
	tb.handle(procMsg(procEventExit, 200, 200, 0, 0, 100, 100), now)
	if _, ok := tb.lookup(200, 0); !ok {
		t.Fatal("forgotten at exit")
	}
	tb.handle(procMsg(procEventExit, 999, 999, 0, 0, 1, 1), now.Add(procsKeep+time.Second))
	if _, ok := tb.m[200]; ok {
		t.Fatal("kept after procsKeep")
	}
	// Garbage: short, bad lengths, another connector.
	n := len(tb.m)
	for _, b := range [][]byte{{1, 2, 3}, procMsg(procEventFork)[:20], func() []byte {
		m := procMsg(procEventFork, 100, 100, 300, 300)
		binary.NativeEndian.PutUint32(m[0:], 9999)
		return m
	}(), func() []byte {
		m := procMsg(procEventFork, 100, 100, 301, 301)
		binary.NativeEndian.PutUint32(m[unix.NLMSG_HDRLEN:], 7)
		return m
	}()} {
		tb.handle(b, now)
	}
	if len(tb.m) != n {
		t.Fatalf("garbage changed the table: %d -> %d entries", n, len(tb.m))
	}
}
