package main

import (
	"fmt"
	"os"
)

// readProc samples /proc/PID (PID 0 is this process).
func readProc(pid int) (procSample, error) {
	dir := "/proc/self"
	if pid > 0 {
		dir = fmt.Sprintf("/proc/%d", pid)
	}
	var p procSample
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return p, fmt.Errorf("loadgen: %w", err)
	}
	if p.CPUTicks, err = parseStat(b); err != nil {
		return p, err
	}
	if b, err = os.ReadFile(dir + "/status"); err != nil {
		return p, fmt.Errorf("loadgen: %w", err)
	}
	if err := parseStatus(b, &p); err != nil {
		return p, err
	}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return p, fmt.Errorf("loadgen: %w", err)
	}
	p.FDs = len(fds)
	return p, nil
}
