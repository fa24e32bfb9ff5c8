//go:build unix

package report

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user+system) the process has used; on a
// shared machine it says more about cost than wall time does.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
