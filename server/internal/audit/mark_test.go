package audit

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// memMarks is a MarkStore in memory.
type memMarks struct {
	mu sync.Mutex
	b  []byte
}

func (m *memMarks) VerifiedMark(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.b, nil
}
func (m *memMarks) PutVerifiedMark(_ context.Context, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.b = b
	return nil
}
func (m *memMarks) DropVerifiedMark(context.Context) error {
	return m.PutVerifiedMark(context.Background(), nil)
}

// Start-up from a verified mark checks only the newer part; a row edited
// in the older part passes start-up but the scrubber finds it, records a
// violation and drops the mark, and the next start (a full check) refuses.
func TestMarkAndScrubber(t *testing.T) {
	defer func(n int64) { FullCheckBelow = n }(FullCheckBelow)
	FullCheckBelow = 0
	ctx := context.Background()
	r := newRig(t)
	r.fill(t, 3, 20)
	if _, err := r.cp.SignNow(ctx); err != nil {
		t.Fatal(err)
	}
	n, root, err := VerifyFromMark(ctx, r.log, r.verif, nil, nil, zerolog.Nop())
	if err != nil || n != 60 {
		t.Fatalf("full check: %d %v", n, err)
	}
	signer := r.cp.Signer
	marks := &memMarks{}
	msg, err := SignMark(Mark{Size: n, Root: root}, signer)
	if err != nil {
		t.Fatal(err)
	}
	marks.b = msg
	if m, err := OpenMark(msg, r.verif); err != nil || m.Size != 60 || m.Root != root {
		t.Fatalf("mark reads back as %+v, %v", m, err)
	}
	if _, err := OpenMark(append([]byte("x"), msg...), r.verif); err == nil {
		t.Fatal("altered mark opens")
	}
	// Newer events, signed.
	r.fill(t, 3, 5)
	if _, err := r.cp.SignNow(ctx); err != nil {
		t.Fatal(err)
	}

	// A row in the part the mark covers is edited while the server is down.
	r.log.Close()
	tamper(t, r.path, `UPDATE events SET object = 'D:\顧客\other.xlsx' WHERE idx = 7`)
	r.open(t)
	if a, b := CheckedFrom(ctx, r.log, r.verif, nil), CheckedFrom(ctx, r.log, r.verif, marks.b); a != 0 || b != 60 {
		t.Fatalf("checked from %d without the mark, %d with it; want 0 and 60", a, b)
	}
	n, _, err = VerifyFromMark(ctx, r.log, r.verif, nil, marks.b, zerolog.Nop())
	if err != nil || n != 75 {
		t.Fatalf("start from the mark: %d %v", n, err)
	}
	// A row in the newer part is always caught at start.
	r.log.Close()
	tamper(t, r.path, `UPDATE events SET object = 'x' WHERE idx = 70`)
	r.open(t)
	if _, _, err := VerifyFromMark(ctx, r.log, r.verif, nil, marks.b, zerolog.Nop()); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "log index 70") {
		t.Fatalf("newer part edited: %v", err)
	}
	r.log.Close()
	tamper(t, r.path, `UPDATE events SET object = (SELECT object FROM events WHERE idx = 67) WHERE idx = 70`)
	r.open(t)

	var recorded []event.Event
	sc := &Scrubber{Log: r.log, Verifier: r.verif, Signer: signer, Marks: marks, Budget: 1,
		Record: func(ctx context.Context, e event.Event) error { recorded = append(recorded, e); return nil }}
	if _, err := sc.Pass(ctx); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "log index 7 ") {
		t.Fatalf("scrubber: %v", err)
	}
	if len(recorded) != 1 || recorded[0].Type != ScrubFailedType || recorded[0].Severity != event.Violation || marks.b != nil || sc.Problem() == nil {
		t.Fatalf("recorded %+v, mark %q", recorded, marks.b)
	}
	sc.Pass(ctx) // recorded once, not every pass
	if len(recorded) != 1 {
		t.Fatalf("recorded again: %d", len(recorded))
	}
	if _, _, err := VerifyFromMark(ctx, r.log, r.verif, nil, marks.b, zerolog.Nop()); !errors.Is(err, ErrTampered) {
		t.Fatalf("next start without the mark: %v", err)
	}
}

// A clean scrubber pass signs a mark of the checkpoint it checked; a
// hand-pruned row in the trusted part is found at start through the
// pruned-rows index.
func TestScrubberCleanAndPrunedFromMark(t *testing.T) {
	defer func(n int64) { FullCheckBelow = n }(FullCheckBelow)
	FullCheckBelow = 0
	ctx := context.Background()
	r, ret, _ := retentionRig(t)
	if _, err := ret.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	marks := &memMarks{}
	sc := &Scrubber{Log: r.log, Verifier: r.verif, Signer: r.cp.Signer, Marks: marks, Budget: 1}
	n, err := sc.Pass(ctx)
	if err != nil || n != 21 || marks.b == nil {
		t.Fatalf("clean pass: %d %v", n, err)
	}
	if _, _, err := VerifyFromMark(ctx, r.log, r.verif, nil, marks.b, zerolog.Nop()); err != nil {
		t.Fatalf("start from the scrubber's mark: %v", err)
	}
	r.log.Close()
	tamper(t, r.path, `UPDATE events SET control = NULL, type = NULL, severity = NULL, user = NULL, process = NULL,
		object = NULL, register_id = NULL, attrs = NULL WHERE idx = 13`)
	r.open(t)
	_, _, err = VerifyFromMark(ctx, r.log, r.verif, nil, marks.b, zerolog.Nop())
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "log index 13") || !strings.Contains(err.Error(), "cleared by hand") {
		t.Fatalf("hand-pruned row under the mark: %v", err)
	}
}

// stopAfter is a Log whose owner "stops the server" (cancels the pass's
// context) when the scrubber asks for its stop-th page of events.
type stopAfter struct {
	Log
	stop, n int
	cancel  context.CancelFunc
}

func (s *stopAfter) Query(ctx context.Context, f eventlog.Filter) (eventlog.Page, error) {
	if f.Type == "" {
		if s.n++; s.n == s.stop {
			s.cancel()
		}
	}
	return s.Log.Query(ctx, f)
}

// A server restarted more often than one scrubber pass takes (a 100M-event
// store, nightly reboots) must still have the whole old part re-checked:
// each run resumes where the last stopped, through the signed mark, so a
// row edited near the end of the old part is found. Before, every run
// began at index 0 and the edit was never reached.
func TestScrubberResumesAcrossRestarts(t *testing.T) {
	defer func(n int64, c int64) { FullCheckBelow, scrubChunk = n, c }(FullCheckBelow, scrubChunk)
	FullCheckBelow, scrubChunk = 0, 8
	ctx := context.Background()
	r := newRig(t)
	r.fill(t, 4, 16) // 64 events: eight steps of 8
	if _, err := r.cp.SignNow(ctx); err != nil {
		t.Fatal(err)
	}
	marks := &memMarks{}
	first := &Scrubber{Log: r.log, Verifier: r.verif, Signer: r.cp.Signer, Marks: marks, Budget: 1}
	if err := first.MarkCurrent(ctx); err != nil || marks.b == nil {
		t.Fatalf("mark: %v", err)
	}
	r.log.Close()
	tamper(t, r.path, `UPDATE events SET object = 'x' WHERE idx = 50`) // in the part the mark covers
	r.open(t)

	var recorded []event.Event
	for run := 1; run <= 6; run++ {
		// Start-up trusts the old part (the mark), then the scrubber runs
		// for two steps and the server stops (its shutdown signs a mark).
		n, root, err := VerifyFromMark(ctx, r.log, r.verif, nil, marks.b, zerolog.Nop())
		if err != nil {
			t.Fatalf("run %d: start from the mark: %v", run, err)
		}
		if marks.b, err = StartMark(marks.b, r.verif, n, root, r.cp.Signer); err != nil { // as the server does
			t.Fatal(err)
		}
		pctx, cancel := context.WithCancel(ctx)
		sc := &Scrubber{Log: &stopAfter{Log: r.log, stop: 3, cancel: cancel}, Verifier: r.verif, Signer: r.cp.Signer, Marks: marks, Budget: 1,
			Record: func(ctx context.Context, e event.Event) error { recorded = append(recorded, e); return nil }}
		_, err = sc.Pass(pctx)
		cancel()
		if errors.Is(err, ErrTampered) {
			if !strings.Contains(err.Error(), "log index 50 ") || len(recorded) != 1 || marks.b != nil {
				t.Fatalf("run %d: %v, recorded %d, mark %q", run, err, len(recorded), marks.b)
			}
			t.Logf("found in run %d: %v", run, err)
			return
		}
		if err := sc.MarkCurrent(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("six runs of two scrubber steps each never reached the row edited at index 50")
}

// A resumed pass reads back the retention records before its start: rows
// after it cleared under such a record are not called hand-cleared.
func TestScrubberResumedPassKeepsRetention(t *testing.T) {
	defer func(n int64, c int64) { FullCheckBelow, scrubChunk = n, c }(FullCheckBelow, scrubChunk)
	FullCheckBelow, scrubChunk = 0, 8
	ctx := context.Background()
	r, ret, t0 := retentionRig(t)
	if n, err := ret.RunOnce(ctx); err != nil || n != 10 { // the record is index 20
		t.Fatalf("retention: %d, %v", n, err)
	}
	// Late arrivals received before the cutoff (index 21-30), cleared as
	// retention would, and signed.
	r.log.SetClock(func() time.Time { return t0 })
	r.fill(t, 2, 5)
	if _, err := r.cp.SignNow(ctx); err != nil {
		t.Fatal(err)
	}
	r.log.Close()
	for idx := 24; idx <= 30; idx++ {
		tamper(t, r.path, `UPDATE events SET control = NULL, type = NULL, severity = NULL, user = NULL, process = NULL,
		object = NULL, register_id = NULL, attrs = NULL WHERE idx = `+strconv.Itoa(idx))
	}
	r.open(t)
	msg, err := SignMark(Mark{Size: 31, Root: mustRoot(t, r, 31), Scrubbed: 24}, r.cp.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := OpenMark(msg, r.verif); err != nil || m.Scrubbed != 24 {
		t.Fatalf("mark with a place: %+v, %v", m, err)
	}
	if bad, _ := SignMark(Mark{Size: 31, Root: mustRoot(t, r, 31), Scrubbed: 32}, r.cp.Signer); bad != nil {
		if _, err := OpenMark(bad, r.verif); err == nil {
			t.Fatal("a mark whose scrubber place is past its size opens")
		}
	}
	marks := &memMarks{b: msg}
	sc := &Scrubber{Log: r.log, Verifier: r.verif, Signer: r.cp.Signer, Marks: marks, Budget: 1}
	if n, err := sc.Pass(ctx); err != nil || n != 31 {
		t.Fatalf("resumed pass: %d, %v", n, err)
	}
	if m, err := OpenMark(marks.b, r.verif); err != nil || m.Scrubbed != 0 || m.Size != 31 {
		t.Fatalf("mark after the pass: %+v, %v", m, err)
	}
}

func mustRoot(t *testing.T, r *rig, n int64) tlog.Hash {
	t.Helper()
	h, err := r.log.TreeHash(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
