//go:build linux || darwin

package app

import (
	"fmt"
	"syscall"
)

// raiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit and returns
// the limit in force. Go's start-up already does this on most systems; doing
// it here too makes the figure the connection cap is derived from the real
// one. macOS refuses a soft limit above kern.maxfilesperproc (its hard
// limit is often "unlimited"): then the limit Go set at start stays.
func raiseFDLimit() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("app: fd limit: %w", err)
	}
	if r.Cur < r.Max {
		want := r
		want.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			r = want
		}
	}
	return r.Cur, nil
}
