package fileaccess

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// spawn starts /bin/true `rate` times a second for `secs` seconds from a
// process of its own (MAMORI_FA_SPAWN=rate), so its cost is not counted.
func spawn(rate, secs int) {
	start := time.Now()
	for i := 0; i < rate*secs; i++ {
		_ = exec.Command("/bin/true").Run()
		if due := start.Add(time.Duration(i+1) * time.Second / time.Duration(rate)); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
	}
	os.Stdout.WriteString(strconv.Itoa(rate*secs) + " processes in " + time.Since(start).Round(time.Millisecond).String() + "\n")
}

func init() {
	if r := os.Getenv("MAMORI_FA_SPAWN"); r != "" {
		rate, _ := strconv.Atoi(r)
		secs, _ := strconv.Atoi(os.Getenv("MAMORI_FA_SECS"))
		spawn(rate, secs)
		os.Exit(0)
	}
}

// TestProcTrackingCost: what following every process costs the agent (the
// process events connector and the exec group), idle and while another
// process starts 1,000 processes a second, 10 s each. Root only:
//
//	MAMORI_BENCH=1 go test -run ProcTrackingCost -v ./agent/internal/controls/fileaccess/
func TestProcTrackingCost(t *testing.T) {
	if os.Getenv("MAMORI_BENCH") != "1" {
		t.Skip("set MAMORI_BENCH=1 to measure process tracking (about 20 s)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the process events connector needs root")
	}
	secs := 10
	if v, err := strconv.Atoi(os.Getenv("MAMORI_BENCH_SECS")); err == nil {
		secs = v
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	base := cpu()
	t0 := time.Now()
	time.Sleep(time.Duration(secs) * time.Second)
	bareCPU, bareWall := cpu()-base, time.Since(t0)

	pt, err := startProcTable("/proc", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer pt.close()
	if pt.exec == nil {
		t.Log("no exec group here: /proc at the exec event only")
	}
	rss0 := procStatus("VmRSS")
	base, t0 = cpu(), time.Now()
	time.Sleep(time.Duration(secs) * time.Second)
	idleCPU, idleWall := cpu()-base, time.Since(t0)
	pt.mu.Lock()
	idleExecs := pt.execs
	pt.mu.Unlock()

	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "MAMORI_FA_SPAWN=1000", "MAMORI_FA_SECS="+strconv.Itoa(secs))
	base, t0 = cpu(), time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the last events read
	loadCPU, loadWall := cpu()-base, time.Since(t0)
	pt.mu.Lock()
	execs, dropped := pt.execs-idleExecs, pt.dropped
	pt.mu.Unlock()
	pct := func(c, w time.Duration) float64 { return 100 * float64(c) / float64(w) }
	t.Logf("without the table: %.2f%% of one core (test process at rest)", pct(bareCPU, bareWall))
	t.Logf("idle: %.2f%% of one core over %v (%d execs elsewhere on the machine), VmRSS %s after start",
		pct(idleCPU, idleWall), idleWall.Round(time.Millisecond), idleExecs, rss0)
	t.Logf("spawner: %s", out)
	t.Logf("1,000 processes/s: %.2f%% of one core over %v, %d execs seen, %d socket overflows, table %d processes, VmRSS %s, VmHWM %s",
		pct(loadCPU, loadWall), loadWall.Round(time.Millisecond), execs, dropped, pt.size(), procStatus("VmRSS"), procStatus("VmHWM"))
}
