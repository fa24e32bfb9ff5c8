package main

import (
	"errors"
	"fmt"
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
// silently on its own lock). It creates dir when missing.
func lockDataDir(dir string) (*dataDirLock, error) {
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
		who := strings.TrimSpace(string(holder))
		if who == "" {
			who = "another process"
		}
		return nil, fmt.Errorf("%w: %s is held by %s: stop that server first (or give this one another --data-dir)", errDataDirInUse, dir, who)
	}
	host, _ := os.Hostname()
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte("mamori-server pid "+strconv.Itoa(os.Getpid())+" on "+host+" since "+time.Now().UTC().Format(time.RFC3339)+"\n"), 0)
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
