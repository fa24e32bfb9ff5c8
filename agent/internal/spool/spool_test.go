package spool

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
)

var _ controls.Emitter = (*Spool)(nil)

func open(t testing.TB, path string, opt Options) *Spool {
	t.Helper()
	if opt.Agent == "" {
		opt.Agent = "agent-1"
	}
	s, err := Open(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ev(sev event.Severity, i int) event.Event {
	return event.Event{Control: "fileaccess", Type: "file.modified", Severity: sev,
		Object: fmt.Sprintf(`C:\顧客\file-%d.xlsx`, i), Attrs: event.Attrs{"size": i, "ratio": 1.5}}
}

func emitN(t testing.TB, s *Spool, sev event.Severity, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := s.Emit(context.Background(), ev(sev, i)); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
}

// all returns every stored event and checks the chain from acked+1.
func verify(t *testing.T, s *Spool, agent string, prevSeq uint64, prevHash string) []event.Event {
	t.Helper()
	evs, err := s.Peek(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	if i, err := event.VerifyChain(agent, prevSeq, prevHash, evs); err != nil {
		t.Fatalf("chain broken at index %d: %v", i, err)
	}
	return evs
}

func TestFileMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix file modes only")
	}
	p := filepath.Join(tempDir(t), "spool.db")
	s := open(t, p, Options{})
	defer s.Close()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

// A second agent on the same state dir is told another holds the spool,
// not "timeout".
func TestOpenWhileHeldIsInUse(t *testing.T) {
	defer func(d time.Duration) { lockTimeout = d }(lockTimeout)
	lockTimeout = 100 * time.Millisecond
	p := filepath.Join(tempDir(t), "spool.db")
	s := open(t, p, Options{})
	defer s.Close()
	if _, err := Open(p, Options{Agent: "agent-1"}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second open: %v, want ErrInUse", err)
	}
}

func TestOpenRejectsMissingAgent(t *testing.T) {
	if _, err := Open(filepath.Join(tempDir(t), "s.db"), Options{}); err == nil {
		t.Fatal("Open without agent id succeeded")
	}
}

func TestReopenKeepsChain(t *testing.T) {
	p := filepath.Join(tempDir(t), "spool.db")
	s := open(t, p, Options{})
	emitN(t, s, event.Info, 5)
	first := verify(t, s, "agent-1", 0, "")
	if err := s.Ack(3); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Emit(context.Background(), ev(event.Info, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("emit after close: %v", err)
	}

	s = open(t, p, Options{})
	defer s.Close()
	st := s.Stats()
	if st.LastSeq != 5 || st.AckedSeq != 3 || st.Depth != 2 {
		t.Fatalf("stats after reopen %+v", st)
	}
	emitN(t, s, event.Warning, 3)
	evs := verify(t, s, "agent-1", 3, first[2].Hash)
	if len(evs) != 5 || evs[0].Seq != 4 || evs[4].Seq != 8 {
		t.Fatalf("got %d events %d..%d", len(evs), evs[0].Seq, evs[len(evs)-1].Seq)
	}
	if evs[2].Prev != first[4].Hash {
		t.Fatal("first event after reopen does not link to the last one before")
	}
}

func TestEmitFillsFields(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 123, time.FixedZone("JST", 9*3600))
	s := open(t, filepath.Join(tempDir(t), "s.db"), Options{Agent: "pc-42", Now: func() time.Time { return now }})
	defer s.Close()
	e := ev(event.Info, 1)
	e.Agent, e.Seq, e.Prev, e.Hash = "forged", 99, "x", "y"
	if err := s.Emit(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	given := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.Time = given
	if err := s.Emit(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	evs := verify(t, s, "pc-42", 0, "")
	if evs[0].Seq != 1 || !evs[0].Time.Equal(now) || evs[0].Time.Location() != time.UTC {
		t.Fatalf("first event %+v", evs[0])
	}
	if !evs[1].Time.Equal(given) {
		t.Fatalf("given time replaced: %v", evs[1].Time)
	}
}

func TestEmitRejectsInvalidWithoutConsumingSeq(t *testing.T) {
	s := open(t, filepath.Join(tempDir(t), "s.db"), Options{})
	defer s.Close()
	bad := []event.Event{
		{Control: "", Type: "t", Severity: event.Info},
		{Control: "c", Type: "t", Severity: "loud"},
		{Control: "c", Type: "t", Severity: event.Info, User: "\xff"},
	}
	for i, e := range bad {
		if err := s.Emit(context.Background(), e); err == nil {
			t.Fatalf("bad event %d accepted", i)
		}
	}
	emitN(t, s, event.Info, 1)
	if st := s.Stats(); st.LastSeq != 1 || st.Depth != 1 {
		t.Fatalf("stats %+v", st)
	}
	verify(t, s, "agent-1", 0, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Emit(ctx, ev(event.Info, 0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("emit with cancelled ctx: %v", err)
	}
}

func TestPeekAck(t *testing.T) {
	s := open(t, filepath.Join(tempDir(t), "s.db"), Options{})
	defer s.Close()
	if evs, err := s.Peek(10); err != nil || len(evs) != 0 {
		t.Fatalf("empty peek: %v %v", evs, err)
	}
	emitN(t, s, event.Info, 10)
	evs, err := s.Peek(4)
	if err != nil || len(evs) != 4 || evs[0].Seq != 1 || evs[3].Seq != 4 {
		t.Fatalf("peek 4: %d %v", len(evs), err)
	}
	if again, _ := s.Peek(4); again[0].Hash != evs[0].Hash {
		t.Fatal("peek is not repeatable")
	}
	before := s.Stats()
	if err := s.Ack(4); err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if after.AckedSeq != 4 || after.Depth != 6 || after.Bytes >= before.Bytes || after.Bytes <= 0 {
		t.Fatalf("after ack: before %+v after %+v", before, after)
	}
	if err := s.Ack(4); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := s.Ack(2); err != nil { // below the ack point: ignored
		t.Fatal(err)
	}
	if s.Stats() != after {
		t.Fatalf("repeated/lower ack changed stats: %+v", s.Stats())
	}
	if err := s.Ack(11); err == nil {
		t.Fatal("ack beyond last seq accepted")
	}
	if s.Stats() != after {
		t.Fatal("rejected ack changed stats")
	}
	evs, _ = s.Peek(100)
	if len(evs) != 6 || evs[0].Seq != 5 {
		t.Fatalf("after ack peek: %d from %d", len(evs), evs[0].Seq)
	}
	// PeekAfter tops up a batch with what is new, never with acked events.
	if evs, _ := s.PeekAfter(7, 2); len(evs) != 2 || evs[0].Seq != 8 || evs[1].Seq != 9 {
		t.Fatalf("peek after 7: %v", evs)
	}
	if evs, _ := s.PeekAfter(2, 1); len(evs) != 1 || evs[0].Seq != 5 {
		t.Fatalf("peek after an acked seq: %v", evs)
	}
	if evs, _ := s.PeekAfter(10, 5); len(evs) != 0 {
		t.Fatalf("peek after the last seq: %v", evs)
	}
	if err := s.Ack(10); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Depth != 0 || st.Bytes != 0 {
		t.Fatalf("all acked: %+v", st)
	}
	if evs, _ := s.Peek(0); evs != nil {
		t.Fatal("peek 0 returned events")
	}
}

func TestWaitSignalsAppend(t *testing.T) {
	s := open(t, filepath.Join(tempDir(t), "s.db"), Options{})
	defer s.Close()
	select {
	case <-s.Wait():
		t.Fatal("signalled before any append")
	default:
	}
	emitN(t, s, event.Info, 3) // coalesced into one pending signal
	select {
	case <-s.Wait():
	case <-time.After(5 * time.Second):
		t.Fatal("no signal after append")
	}
	select {
	case <-s.Wait():
		t.Fatal("signals not coalesced")
	default:
	}
}

func TestBoundRefusesInfoAndReportsDropped(t *testing.T) {
	p := filepath.Join(tempDir(t), "s.db")
	clock := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); clock = clock.Add(time.Second); return clock }
	// Measure one event's stored size to set a bound of about 40 events.
	probe := open(t, filepath.Join(tempDir(t), "probe.db"), Options{Now: now})
	emitN(t, probe, event.Info, 1)
	first := probe.Stats().Bytes
	emitN(t, probe, event.Info, 1)
	one := probe.Stats().Bytes - first // a chained event (with prev)
	probe.Close()

	opt := Options{MaxBytes: 40 * one, Now: now}
	s := open(t, p, opt)
	stored := 0
	for ; stored < 100; stored++ {
		if err := s.Emit(context.Background(), ev(event.Info, stored)); errors.Is(err, ErrFull) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if stored < 35 || stored > 41 || s.Stats().Bytes < opt.MaxBytes {
		t.Fatalf("bound of ~40 events took %d (%d bytes of %d)", stored, s.Stats().Bytes, opt.MaxBytes)
	}
	const refused = 7
	for i := 0; i < refused; i++ {
		if i > 0 {
			if err := s.Emit(context.Background(), ev(event.Info, i)); !errors.Is(err, ErrFull) {
				t.Fatalf("info %d at bound: %v", i, err)
			}
		}
		// Warnings and violations are never refused.
		if err := s.Emit(context.Background(), ev(event.Violation, i)); err != nil {
			t.Fatalf("violation refused: %v", err)
		}
	}
	if err := s.Emit(context.Background(), ev(event.Warning, 0)); err != nil {
		t.Fatalf("warning refused: %v", err)
	}
	st := s.Stats()
	if st.Dropped != refused || st.LastSeq != uint64(stored+refused+1) {
		t.Fatalf("stats at bound %+v", st)
	}
	// The count survives a restart.
	s.Close()
	s = open(t, p, opt)
	defer s.Close()
	if s.Stats().Dropped != refused {
		t.Fatalf("dropped after reopen %d", s.Stats().Dropped)
	}
	// Ack from the oldest. Between 90% and 100% info is still refused
	// (hysteresis); below 90% the next emit first reports the exact count.
	evs, _ := s.Peek(100)
	wantDropped := uint64(refused)
	remaining := s.Stats().Bytes
	sawBand := false
	for _, e := range evs {
		raw, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		remaining -= int64(len(raw))
		if err := s.Ack(e.Seq); err != nil {
			t.Fatal(err)
		}
		if got := s.Stats().Bytes; got != remaining {
			t.Fatalf("bytes after ack %d: %d, want %d", e.Seq, got, remaining)
		}
		if remaining < opt.MaxBytes*resumePercent/100 {
			break
		}
		if remaining < opt.MaxBytes {
			sawBand = true
			if err := s.Emit(context.Background(), ev(event.Info, 0)); !errors.Is(err, ErrFull) {
				t.Fatalf("info accepted at %d of %d bytes after being full: %v", remaining, opt.MaxBytes, err)
			}
			wantDropped++
		}
	}
	if !sawBand {
		t.Fatal("no ack left the spool between 90% and 100%; hysteresis band not exercised")
	}
	if err := s.Emit(context.Background(), ev(event.Info, 99)); err != nil {
		t.Fatalf("info after space returned: %v", err)
	}
	if st := s.Stats(); st.Dropped != 0 {
		t.Fatalf("dropped not reset: %+v", st)
	}
	evs, _ = s.Peek(100)
	if i, err := event.VerifyChain("agent-1", evs[0].Seq-1, evs[0].Prev, evs); err != nil {
		t.Fatalf("chain broken at %d: %v", i, err)
	}
	d, last := evs[len(evs)-2], evs[len(evs)-1]
	if d.Type != DroppedType || d.Control != "agent" || d.Severity != event.Warning {
		t.Fatalf("expected agent.dropped before the accepted event, got %+v", d)
	}
	if n, err := d.Attrs["count"].(json.Number).Int64(); err != nil || uint64(n) != wantDropped {
		t.Fatalf("count %v, want %d", d.Attrs["count"], wantDropped)
	}
	since, err1 := time.Parse(time.RFC3339Nano, d.Attrs["since"].(string))
	until, err2 := time.Parse(time.RFC3339Nano, d.Attrs["until"].(string))
	if err1 != nil || err2 != nil || !since.Before(until) {
		t.Fatalf("since/until %v %v", d.Attrs["since"], d.Attrs["until"])
	}
	if last.Object != `C:\顧客\file-99.xlsx` || last.Seq != d.Seq+1 {
		t.Fatalf("last event %+v", last)
	}
	// Nothing is reported twice.
	emitN(t, s, event.Warning, 1)
	if len(s.mustPeekType(t, DroppedType)) != 1 {
		t.Fatal("agent.dropped reported more than once")
	}
}

func (s *Spool) mustPeekType(t *testing.T, typ string) []event.Event {
	t.Helper()
	evs, err := s.Peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func TestConcurrentEmit(t *testing.T) {
	s := open(t, filepath.Join(tempDir(t), "s.db"), Options{})
	defer s.Close()
	const workers, each = 16, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	seen := make(chan int, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := s.Emit(context.Background(), ev(event.Info, w*each+i)); err != nil {
					errs <- err
					return
				}
				seen <- w*each + i
			}
		}(w)
	}
	// Ack and peek while emitters run.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s.Stats().LastSeq < workers*each/2 {
			if evs, err := s.Peek(8); err == nil && len(evs) > 0 {
				if err := s.Ack(evs[len(evs)-1].Seq); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	wg.Wait()
	<-done
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	close(seen)
	st := s.Stats()
	if st.LastSeq != workers*each {
		t.Fatalf("last seq %d, want %d", st.LastSeq, workers*each)
	}
	evs, _ := s.Peek(1 << 20)
	if uint64(len(evs)) != st.Depth {
		t.Fatalf("peek %d, depth %d", len(evs), st.Depth)
	}
	if i, err := event.VerifyChain("agent-1", evs[0].Seq-1, evs[0].Prev, evs); err != nil {
		t.Fatalf("chain broken at %d: %v", i, err)
	}
}

// TestCrashChild is the child of TestKillDuringEmit: it emits until killed
// and prints each seq once Emit has returned.
func TestCrashChild(t *testing.T) {
	path := os.Getenv("SPOOL_CRASH_CHILD")
	if path == "" {
		t.Skip("run by TestKillDuringEmit only")
	}
	s, err := Open(path, Options{Agent: "crash", Log: zerolog.Nop()})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	for w := 0; w < 4; w++ {
		go func() {
			for i := 0; ; i++ {
				if err := s.Emit(context.Background(), ev(event.Info, i)); err != nil {
					fmt.Println("ERR", err)
					os.Exit(2)
				}
				mu.Lock()
				// LastSeq moves only after a commit, so it is >= this emit's seq
				// and everything up to it is durable.
				fmt.Println(s.Stats().LastSeq)
				mu.Unlock()
			}
		}()
	}
	select {}
}

func TestKillDuringEmit(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(tempDir(t), "crash.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), "SPOOL_CRASH_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var maxSeq uint64
	lines := 0
	for sc.Scan() && lines < 300 {
		n, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			cmd.Process.Kill()
			t.Fatalf("child said %q", sc.Text())
		}
		maxSeq = max(maxSeq, n)
		lines++
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred Close runs
		t.Fatal(err)
	}
	for sc.Scan() { // lines printed before the kill landed count too
		if n, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil {
			maxSeq = max(maxSeq, n)
		}
	}
	cmd.Wait()
	if lines < 300 {
		t.Fatalf("child printed only %d seqs", lines)
	}
	s := open(t, path, Options{Agent: "crash"})
	defer s.Close()
	evs, err := s.Peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if i, err := event.VerifyChain("crash", 0, "", evs); err != nil {
		t.Fatalf("chain after kill broken at %d: %v", i, err)
	}
	if got := s.Stats().LastSeq; got < maxSeq || uint64(len(evs)) != got {
		t.Fatalf("after kill: last seq %d, %d events, child reported seq %d durable", got, len(evs), maxSeq)
	}
	// The chain goes on where the killed process left it.
	emitN(t, s, event.Info, 1)
	evs2, _ := s.Peek(1 << 20)
	if i, err := event.VerifyChain("crash", 0, "", evs2); err != nil {
		t.Fatalf("chain after resume broken at %d: %v", i, err)
	}
	t.Logf("child emitted at least %d durable events before SIGKILL; %d on disk", maxSeq, len(evs))
}

func benchEmit(b *testing.B, workers int) {
	s := open(b, filepath.Join(tempDir(b), "s.db"), Options{})
	defer s.Close()
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / workers
	if per == 0 {
		per = 1
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if err := s.Emit(context.Background(), ev(event.Info, i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(per*workers)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkEmit1(b *testing.B)  { benchEmit(b, 1) }
func BenchmarkEmit16(b *testing.B) { benchEmit(b, 16) }

// tempDir is t.TempDir without failing the test when removal fails: under
// Wine, Go's RemoveAll gets "Invalid function" from unlinkat even on empty
// directories, which says nothing about the spool.
func tempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "spooltest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	return dir
}
