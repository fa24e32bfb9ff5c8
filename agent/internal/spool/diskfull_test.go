package spool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// mountTmpfs mounts a tmpfs of the given size (mount's syntax, "1m") on a
// temporary directory, unmounted when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFull fills a small tmpfs under the spool: Emit fails (and not with
// ErrFull, which means the bound), nothing stored before is lost, the failed
// events consume no seq, a reopen on the full disk works, and once space is
// back the next event is preceded by agent.dropped counting every event the
// disk refused.
func TestDiskFull(t *testing.T) {
	// bbolt grows its file by doubling (sparse on tmpfs), so the sizes make
	// the disk fill in a small and in a larger, several times grown file.
	for _, c := range []struct {
		tmpfs  string
		filler int
	}{{"1m", 192 << 10}, {"6m", 1 << 20}} {
		t.Run(c.tmpfs, func(t *testing.T) { testDiskFull(t, c.tmpfs, c.filler) })
	}
}

func testDiskFull(t *testing.T, tmpfsSize string, fillerSize int) {
	dir := mountTmpfs(t, tmpfsSize)
	ctx := context.Background()
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, bytes.Repeat([]byte{0xa5}, fillerSize), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "spool.db")
	clock := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); clock = clock.Add(time.Second); return clock }
	opt := Options{Now: now}
	s := open(t, p, opt)
	defer func() { s.Close() }()

	stored := 0
	var err error
	for ; stored < 100000; stored++ {
		if err = s.Emit(ctx, ev(event.Info, stored)); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("the disk never filled")
	}
	if errors.Is(err, ErrFull) {
		t.Fatalf("disk full reported as the spool's bound: %v", err)
	}
	before := s.Stats()
	t.Logf("disk full after %d events (%d bytes): %v", stored, before.Bytes, err)
	if before.LastSeq != uint64(stored) || before.Depth != uint64(stored) {
		t.Fatalf("stats after the failure %+v, %d stored", before, stored)
	}
	// Every severity fails alike while the disk is full; nothing moves.
	refused := 1
	for i, sev := range []event.Severity{event.Violation, event.Warning, event.Info} {
		if err := s.Emit(ctx, ev(sev, 1000+i)); err == nil {
			t.Fatalf("%s event stored on a full disk", sev)
		}
		refused++
	}
	// Concurrent emitters share a failing group commit: each is told, and
	// each is counted.
	var wg sync.WaitGroup
	var fails sync.Map
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				if err := s.Emit(ctx, ev(event.Info, 10000+g*10+i)); err != nil {
					fails.Store(g*10+i, err)
				}
			}
		})
	}
	wg.Wait()
	n := 0
	fails.Range(func(any, any) bool { n++; return true })
	if n != 40 {
		t.Fatalf("%d of 40 concurrent emits failed on the full disk", n)
	}
	refused += n
	if st := s.Stats(); st.LastSeq != before.LastSeq || st.Bytes != before.Bytes || st.Dropped != uint64(refused) {
		t.Fatalf("stats after %d failed commits: %+v, was %+v", refused, st, before)
	}
	checkStored := func(s *Spool) {
		t.Helper()
		evs := verify(t, s, "agent-1", 0, "")
		if len(evs) < stored {
			t.Fatalf("%d events in the spool, %d were stored", len(evs), stored)
		}
		for i := range stored {
			if want := ev(event.Info, i).Object; evs[i].Object != want {
				t.Fatalf("event %d is %q, want %q", i, evs[i].Object, want)
			}
		}
	}
	checkStored(s)

	// Close and reopen on the full disk.
	if err := s.Close(); err != nil {
		t.Fatalf("close on a full disk: %v", err)
	}
	s = open(t, p, opt)
	// The refusals were counted durably: their meta page fit where the
	// events did not.
	if st := s.Stats(); st.LastSeq != before.LastSeq || st.Bytes != before.Bytes || st.Dropped != uint64(refused) {
		t.Fatalf("reopened with %+v, had %+v and %d refused", st, before, refused)
	}
	checkStored(s)
	if err := s.Emit(ctx, ev(event.Violation, 2000)); err == nil {
		t.Fatal("violation stored on the full disk after reopen")
	} else {
		t.Logf("after reopen on the full disk: %v", err)
	}
	refused++

	// Acks still work on the full disk (bbolt writes them into pages the
	// file already has), so shipping keeps going.
	head, _ := s.Peek(10)
	if err := s.Ack(10); err != nil {
		t.Fatalf("ack on the full disk: %v", err)
	}

	// Space returns: the next event is stored after an agent.dropped that
	// counts what the disk refused, and the chain runs on without a gap.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Emit(ctx, ev(event.Info, 3000)); err != nil {
		t.Fatalf("emit after freeing space: %v", err)
	}
	evs := verify(t, s, "agent-1", 10, head[9].Hash)
	d, last := evs[len(evs)-2], evs[len(evs)-1]
	if last.Object != ev(event.Info, 3000).Object || last.Seq != before.LastSeq+2 {
		t.Fatalf("last event %+v", last)
	}
	if d.Type != DroppedType || d.Severity != event.Warning || droppedCount(t, d, "count") != int64(refused) ||
		droppedCount(t, d, "write_failed") != int64(refused) {
		t.Fatalf("before the accepted event: %+v, want agent.dropped counting %d refused by the disk", d, refused)
	}
	if st := s.Stats(); st.Dropped != 0 {
		t.Fatalf("dropped not reset: %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, p, opt)
	if got := verify(t, s, "agent-1", 10, head[9].Hash); len(got) != len(evs) {
		t.Fatalf("%d events after reopen, had %d", len(got), len(evs))
	}
	emitN(t, s, event.Info, 10)
	if len(s.mustPeekType(t, DroppedType)) != 1 {
		t.Fatal("agent.dropped reported more than once")
	}
}

func droppedCount(t *testing.T, d event.Event, key string) int64 {
	t.Helper()
	v, _ := d.Attrs[key].(json.Number)
	n, err := v.Int64()
	if err != nil {
		t.Fatalf("%s %v: %v", key, d.Attrs[key], err)
	}
	return n
}
