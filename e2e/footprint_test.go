package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux we ship for.
const clockTicks = 100

// procCPU returns user and system CPU seconds of pid from /proc/<pid>/stat.
func procCPU(pid int) (user, sys float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseUint(f[11], 10, 64) // field 14
	st, _ := strconv.ParseUint(f[12], 10, 64) // field 15
	return float64(ut) / clockTicks, float64(st) / clockTicks, nil
}

// procRSS returns VmRSS and VmHWM (peak) in bytes from /proc/<pid>/status.
func procRSS(pid int) (rss, hwm uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm, nil
}

// BenchmarkAgentFootprint measures the real mamori-agent process, enrolled
// with a real server, for MAMORI_FOOTPRINT_SECONDS (default 60) idle and
// under 1,000 events/s: CPU from /proc/<pid>/stat, RSS from /proc/<pid>/status.
// Run with -benchtime=1x: each sub-benchmark is one measurement window.
// Targets: RSS <= 30 MB, idle CPU <= 0.5% of one core.
func BenchmarkAgentFootprint(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc")
	}
	window := 60 * time.Second
	if s, err := strconv.Atoi(os.Getenv("MAMORI_FOOTPRINT_SECONDS")); err == nil && s > 0 {
		window = time.Duration(s) * time.Second
	}
	srvBin, agentBin := binaries(b)
	s := startServer(b, srvBin, filepath.Join(b.TempDir(), "data"), freePort(b))
	for _, c := range []struct {
		name   string
		rate   int
		maxCPU float64 // percent of one core; 0 = report only
	}{{"idle", 0, 0.5}, {"1000eps", 1000, 0}} {
		b.Run(c.name, func(b *testing.B) {
			a := enroll(b, agentBin, s)
			p := a.start(b, c.rate)
			defer p.stop(b, syscall.SIGTERM)
			time.Sleep(5 * time.Second) // start-up: inventory, first policy, first batches
			pid := p.cmd.Process.Pid
			u0, s0, err := procCPU(pid)
			if err != nil {
				b.Fatal(err)
			}
			var maxRSS uint64
			t0 := time.Now()
			for time.Since(t0) < window {
				time.Sleep(time.Second)
				rss, _, err := procRSS(pid)
				if err != nil {
					b.Fatal(err)
				}
				maxRSS = max(maxRSS, rss)
			}
			u1, s1, _ := procCPU(pid)
			_, hwm, _ := procRSS(pid)
			el := time.Since(t0).Seconds()
			cpuPct := (u1 + s1 - u0 - s0) / el * 100
			sysPct := (s1 - s0) / el * 100 // kernel: fsync, network
			b.ReportMetric(cpuPct, "cpu_%")
			b.ReportMetric(float64(maxRSS)/(1<<20), "rss_MB")
			b.ReportMetric(float64(hwm)/(1<<20), "peak_rss_MB")
			st := a.status(b)
			b.Logf("%s: cpu %.3f%% of one core (%.3f%% in the kernel) over %v, rss max %.1f MB, peak %.1f MB, spool depth %v, last seq %v",
				c.name, cpuPct, sysPct, time.Since(t0).Round(time.Second), float64(maxRSS)/(1<<20), float64(hwm)/(1<<20),
				st["spool_depth"], st["last_seq"])
			if maxRSS > 30<<20 {
				b.Errorf("RSS %.1f MB over the 30 MB target", float64(maxRSS)/(1<<20))
			}
			if c.maxCPU > 0 && cpuPct > c.maxCPU {
				b.Errorf("CPU %.3f%% over the %.1f%% target", cpuPct, c.maxCPU)
			}
		})
	}
}
