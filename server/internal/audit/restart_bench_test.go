//go:build unix

package audit

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog/storetest"
)

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRestartFigures measures start-up verification on a store of
// MAMORI_RESTART_EVENTS events (skipped when unset; e.g. 1000000): the
// full check, the check from a verified mark at the end of the log and one
// 10,000 events behind it, and the scrubber's share of a core over
// MAMORI_SCRUB_SECONDS (default 10) of a pass at the default budget.
//
//	MAMORI_RESTART_EVENTS=1000000 go test ./server/internal/audit -run TestRestartFigures -v -timeout 10m
func TestRestartFigures(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("MAMORI_RESTART_EVENTS"))
	if total <= 0 {
		t.Skip("set MAMORI_RESTART_EVENTS (e.g. 1000000) to measure")
	}
	defer func(n int64) { FullCheckBelow = n }(FullCheckBelow)
	FullCheckBelow = 0
	ctx := context.Background()
	r := newRig(t)
	const agents, batch = 100, 500
	began := time.Now()
	fillTo := func(n int) {
		for {
			size, _ := r.log.TreeSize(ctx)
			if size >= int64(n) {
				return
			}
			for a := 0; a < agents; a++ {
				id := fmt.Sprintf("pc-%03d", a)
				h, _ := r.log.Head(ctx, id)
				if _, err := r.log.Append(ctx, id, storetest.Chain(id, h.Seq+1, batch, h.Hash)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	fillTo(total - 10000) // in steps of agents*batch
	cp, err := r.cp.SignNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	behind, err := SignMark(Mark{Size: cp.Size, Root: cp.Root}, r.cp.Signer)
	if err != nil {
		t.Fatal(err)
	}
	for a := 0; a < agents; a++ { // exactly 10,000 newer events
		id := fmt.Sprintf("pc-%03d", a)
		h, _ := r.log.Head(ctx, id)
		if _, err := r.log.Append(ctx, id, storetest.Chain(id, h.Seq+1, 10000/agents, h.Hash)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.cp.SignNow(ctx); err != nil {
		t.Fatal(err)
	}
	n, _ := r.log.TreeSize(ctx)
	t.Logf("filled %d events in %s", n, time.Since(began).Round(time.Millisecond))

	measure := func(name string, mark []byte) ([]byte, time.Duration) {
		c0, w0 := processCPU(), time.Now()
		size, root, err := VerifyFromMark(ctx, r.log, r.verif, nil, mark, zerolog.Nop())
		wall, cpu := time.Since(w0), processCPU()-c0
		if err != nil || size != n {
			t.Fatalf("%s: %d %v", name, size, err)
		}
		t.Logf("%-34s wall %9s  cpu %9s  (%.2f us cpu/event)", name, wall.Round(time.Millisecond), cpu.Round(time.Millisecond),
			float64(cpu.Microseconds())/float64(n))
		m, _ := SignMark(Mark{Size: size, Root: root}, r.cp.Signer)
		return m, wall
	}
	atEnd, _ := measure("full check (no mark)", nil)
	measure("from a mark at the end", atEnd)
	measure("from a mark 10,000 events behind", behind)

	secs, _ := strconv.Atoi(os.Getenv("MAMORI_SCRUB_SECONDS"))
	if secs <= 0 {
		secs = 10
	}
	sc := &Scrubber{Log: r.log, Verifier: r.verif}
	sctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second)
	defer cancel()
	c0, w0 := processCPU(), time.Now()
	sc.Pass(sctx)
	wall, cpu := time.Since(w0), processCPU()-c0
	rate := float64(sc.Progress()) / wall.Seconds()
	t.Logf("scrubber (budget %.0f%%): %s wall, %s cpu = %.1f%% of one core; %d events checked = %.0f events/s: "+
		"a full pass over 10M events takes %s, over 100M %s", DefaultScrubBudget*100,
		wall.Round(time.Millisecond), cpu.Round(time.Millisecond), 100*float64(cpu)/float64(wall), sc.Progress(), rate,
		time.Duration(1e7/rate*float64(time.Second)).Round(time.Minute), time.Duration(1e8/rate*float64(time.Second)).Round(time.Minute))
}
