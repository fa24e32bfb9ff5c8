package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// procSample is what /proc says about a process at one moment.
type procSample struct {
	CPUTicks int64 // utime + stime, in clock ticks (USER_HZ, 100 on Linux)
	RSS      int64 // bytes (VmRSS)
	Peak     int64 // bytes (VmHWM, the high-water mark)
	FDs      int
	Threads  int
}

// ticksPerSecond is USER_HZ, 100 on every Linux architecture Go supports.
const ticksPerSecond = 100

// parseStat reads utime and stime (fields 14 and 15) from /proc/PID/stat;
// the command name (field 2) may hold spaces and parentheses, so fields are
// counted after the last ')'.
func parseStat(b []byte) (int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("loadgen: /proc stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, f[11]; stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("loadgen: /proc stat: %d fields", len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("loadgen: /proc stat: %w", err)
	}
	return u + s, nil
}

// parseStatus reads VmRSS, VmHWM and Threads from /proc/PID/status.
func parseStatus(b []byte, p *procSample) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	seen := 0
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			p.RSS, seen = n<<10, seen+1
		case "VmHWM":
			p.Peak, seen = n<<10, seen+1
		case "Threads":
			p.Threads, seen = int(n), seen+1
		}
	}
	if seen < 3 {
		return errors.New("loadgen: /proc status: VmRSS, VmHWM or Threads missing")
	}
	return nil
}
