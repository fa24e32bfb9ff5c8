package fileaccess

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/controlstest"
	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// burst is run in a child process (MAMORI_FA_BURST=dir) so the agent-side
// CPU figures below do not include the writer: it creates `rate` files per
// second for `secs` seconds, 1,000 per subfolder, on a fixed schedule.
func burst(dir string, rate, secs int) {
	start := time.Now()
	total := rate * secs
	for i := 0; i < total; i++ {
		if i%1000 == 0 {
			os.Mkdir(filepath.Join(dir, fmt.Sprintf("d%03d", i/1000)), 0o755)
		}
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("d%03d", i/1000), fmt.Sprintf("f%06d.csv", i)), []byte("id,name\n"), 0o644)
		if due := start.Add(time.Duration(i+1) * time.Second / time.Duration(rate)); time.Until(due) > 0 && i%10 == 9 {
			time.Sleep(time.Until(due))
		}
	}
	fmt.Printf("wrote %d files in %v\n", total, time.Since(start).Round(time.Millisecond))
}

func init() {
	if d := os.Getenv("MAMORI_FA_BURST"); d != "" {
		rate, _ := strconv.Atoi(os.Getenv("MAMORI_FA_RATE"))
		secs, _ := strconv.Atoi(os.Getenv("MAMORI_FA_SECS"))
		burst(d, rate, secs)
		os.Exit(0)
	}
}

// spoolRecorder stores events in a real spool (with the snapshot) and
// records them for the test to count.
type spoolRecorder struct {
	*spool.Spool
	rec *controlstest.Recorder
}

func (s spoolRecorder) Emit(ctx context.Context, e event.Event) error {
	return s.EmitState(ctx, e, nil)
}

func (s spoolRecorder) EmitState(ctx context.Context, e event.Event, st *spool.State) error {
	if err := s.Spool.EmitState(ctx, e, st); err != nil {
		return err
	}
	return s.rec.Emit(ctx, e)
}

func procStatus(field string) string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			return strings.TrimSpace(l[len(field)+1:])
		}
	}
	return "?"
}

// TestBurstLoad: 10,000 file creations per second for 10 s in a watched
// folder. Every change is either an individual file.created event or counted
// in a fileaccess.bulk summary: the sum must be exact. Run with
//
//	MAMORI_BENCH=1 go test -run BurstLoad -v ./agent/internal/controls/fileaccess/
//
// (MAMORI_BENCH_NOFID=1: without the fanotify FID group, for comparison;
// MAMORI_BENCH_SPOOL=1: events into a real spool, the folder's snapshot
// saved with them, as in the agent.)
func TestBurstLoad(t *testing.T) {
	if os.Getenv("MAMORI_BENCH") != "1" {
		t.Skip("set MAMORI_BENCH=1 to run the 10,000 changes/s x 10 s load test")
	}
	rate, secs := 10000, 10
	if v, err := strconv.Atoi(os.Getenv("MAMORI_BENCH_SECS")); err == nil {
		secs = v
	}
	root := t.TempDir()
	rec := &controlstest.Recorder{}
	env := controls.Env{Emit: rec, Clock: controls.RealClock{}, Log: zerolog.Nop(), StateDir: t.TempDir()}
	if os.Getenv("MAMORI_BENCH_SPOOL") == "1" {
		sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{Agent: "bench"})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		env.Emit = spoolRecorder{sp, rec}
	}
	pr := newProbe(env).(*fanotifyProbe)                   // fanotify too, when root
	pr.fidOff = os.Getenv("MAMORI_BENCH_NOFID") == "1"     // to compare with the fd-only group
	pr.procsOff = os.Getenv("MAMORI_BENCH_NOPROCS") == "1" // to compare without process tracking
	c := newControl(env, pr)
	p := pol(func(f *policy.FileAccess) {
		f.Paths = []string{root}
		f.Debounce = policy.Duration(300 * time.Millisecond)
	})
	if err := c.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	h := &harness{t: t, c: c, rec: rec}
	st := h.waitStatus(controls.Pass, "")

	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "MAMORI_FA_BURST="+root, "MAMORI_FA_RATE="+strconv.Itoa(rate), "MAMORI_FA_SECS="+strconv.Itoa(secs))
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	writeDur := time.Since(t0)
	files := rate * secs
	dirs := (files + 999) / 1000
	want := files + dirs
	count := func(evs []event.Event) (individual, summarised, overflows int) {
		for _, e := range evs {
			switch e.Type {
			case TypeCreated:
				individual++
			case TypeBulk:
				summarised += int(num(e.Attrs["suppressed"]))
			case TypeOverflow:
				overflows++
			}
		}
		return
	}
	h.waitFor("every change accounted", func(evs []event.Event) bool {
		i, s, _ := count(evs)
		return i+s >= want
	})
	caughtUp := time.Since(t0)
	time.Sleep(time.Second) // anything extra would show up as a mismatch
	cancel()
	<-done
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	evs := rec.Events()
	ind, sum, ovf := count(evs)
	for _, e := range evs {
		if e.Type == TypeModified || e.Type == TypeDeleted {
			t.Fatalf("unexpected %s %s", e.Type, e.Object)
		}
	}
	cpu := func(r syscall.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	t.Logf("writer: %s", strings.TrimSpace(out.String()))
	t.Logf("attribution: %v", st.Attrs["attribution"])
	t.Logf("changes %d (files %d + folders %d): individual file.created %d + in fileaccess.bulk %d; overflows %d; events emitted %d",
		want, files, dirs, ind, sum, ovf, len(evs))
	t.Logf("writing took %v, agent caught up %v after start", writeDur.Round(time.Millisecond), caughtUp.Round(time.Millisecond))
	t.Logf("agent CPU %v (user %v, sys %v) = %.0f%% of one core over %v; VmHWM %s, VmRSS %s",
		(cpu(ru1) - cpu(ru0)).Round(time.Millisecond),
		time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()).Round(time.Millisecond),
		time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano()).Round(time.Millisecond),
		100*float64(cpu(ru1)-cpu(ru0))/float64(caughtUp), caughtUp.Round(time.Millisecond),
		procStatus("VmHWM"), procStatus("VmRSS"))
	if ind+sum != want {
		t.Fatalf("changes accounted %d, want exactly %d", ind+sum, want)
	}
}

// BenchmarkFIDDeletes: parse and attribute one read of 500 delete events
// (a 64 KiB read holds about that many) in one folder, with the folder's
// handle resolved through open_by_handle_at as the kernel reports it. Root only:
//
//	go test -run '^$' -bench FIDDeletes -benchtime 2000x ./agent/internal/controls/fileaccess/
func BenchmarkFIDDeletes(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("open_by_handle_at needs root (CAP_DAC_READ_SEARCH)")
	}
	root := b.TempDir()
	dir := filepath.Join(root, "顧客")
	os.Mkdir(dir, 0o755)
	p, fsid := fidProbeOn(b, root)
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		b.Skipf("no file handles here: %v", err)
	}
	const n = 500
	var buf []byte
	for i := 0; i < n; i++ {
		buf = append(buf, fidEventBytes(fanDelete, int32(os.Getppid()),
			fidInfoBytes(fanInfoDFIDName, fsid, fh.Type(), fh.Bytes(), fmt.Sprintf("f%06d.csv", i)))...)
	}
	var got atomic.Int64
	go func() {
		for range p.out {
			got.Add(1)
		}
	}()
	dirs := map[string]string{}
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		evs, err := parseFanotifyFID(buf)
		if err != nil || len(evs) != n {
			b.Fatal(len(evs), err)
		}
		if carry := p.handleFID(p.fid, dirs, nil, time.Time{}, evs, time.Now()); len(carry) != 0 {
			b.Fatalf("%d unresolved", len(carry))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
	p.mu.Lock()
	dropped := p.dropped
	p.mu.Unlock()
	if dropped+uint64(got.Load()) < uint64(b.N*n)*9/10 { // the reader may be a few behind
		b.Fatalf("%d accesses, %d dropped, of %d events", got.Load(), dropped, b.N*n)
	}
}

// fidProbeOn is a fanotify probe watching root whose FID group resolves
// file handles of root's filesystem (as the kernel reports them) without a
// fanotify group of its own; fsid is that filesystem's id.
func fidProbeOn(tb testing.TB, root string) (p *fanotifyProbe, fsid [2]int32) {
	tb.Helper()
	p = newProbe(controlsEnvForProbe()).(*fanotifyProbe)
	p.roots = []string{root}
	g := &fidGroup{mounts: map[[2]int32]*os.File{}}
	p.fid = g
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		tb.Fatal(err)
	}
	fsid = [2]int32{st.Fsid.Val[0], st.Fsid.Val[1]}
	m, err := os.Open(root)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	g.mounts[fsid] = m
	return p, fsid
}
