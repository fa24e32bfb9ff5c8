package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// fileServeLock is the lock a serving server holds in its data dir; it
// names the holder (pid, start time) for the next one's refusal.
const fileServeLock = "serve.lock"

// errDataDirInUse says which process holds the data dir.
var errDataDirInUse = errors.New("data dir in use")

// dataDirLock is held while serving; Release lets go of it.
type dataDirLock struct {
	f *os.File
}

// lockDataDir takes the data dir for this process at once, or refuses
// naming the process that holds it (embedded etcd would otherwise wait
// silently on its own lock). It creates dir when missing. The lock file
// also says where the server listens, so the admin commands given the
// data dir reach it without --server (serverOf).
func lockDataDir(dir, listen string) (*dataDirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, fileServeLock)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := tryLock(f); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		who, _, _ := strings.Cut(strings.TrimSpace(string(holder)), "\n")
		if who == "" {
			who = "another process"
		}
		return nil, fmt.Errorf("%w: %s is held by %s: stop that server first (or give this one another --data-dir)", errDataDirInUse, dir, who)
	}
	host, _ := os.Hostname()
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte("mamori-server pid "+strconv.Itoa(os.Getpid())+" on "+host+" since "+time.Now().UTC().Format(time.RFC3339)+"\n"+
		listenPrefix+listen+"\n"), 0)
	return &dataDirLock{f: f}, nil
}

// Release unlocks (the OS also does when the process dies).
func (l *dataDirLock) Release() {
	if l == nil || l.f == nil {
		return
	}
	_ = unlock(l.f)
	l.f.Close()
	l.f = nil
}

// dirIsEmpty reports whether dir is missing or empty: a serve that fails
// before it is up removes what it made in such a dir.
func dirIsEmpty(dir string) bool {
	entries, err := os.ReadDir(dir)
	return errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0)
}

const listenPrefix = "listen "

// serverOf is the URL of the server that serves (or last served) dir, from
// its lock file; "" when it does not say. A wildcard address is reached
// on localhost, since the admin commands run on the server's machine.
func serverOf(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, fileServeLock))
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), listenPrefix)
		if !ok {
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "" {
			return ""
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "localhost"
		}
		return "https://" + net.JoinHostPort(host, port)
	}
	return ""
}
