//go:build unix

package audit

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/eventlog"
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

// TestRestartFiguresOnStore measures a restart's store work on an existing
// large SQLite store (MAMORI_RESTART_STORE=path/events.db, e.g. the page
// benchmark's 10M-event fixture; skipped when unset): open, then the check
// from a verified mark at its end. It writes no event and no checkpoint.
//
//	MAMORI_RESTART_STORE=/tmp/mamori-web-bench-10000000/events.db go test ./server/internal/audit -run TestRestartFiguresOnStore -v
func TestRestartFiguresOnStore(t *testing.T) {
	path := os.Getenv("MAMORI_RESTART_STORE")
	if path == "" {
		t.Skip("set MAMORI_RESTART_STORE to a large store's events.db to measure")
	}
	defer func(n int64) { FullCheckBelow = n }(FullCheckBelow)
	FullCheckBelow = 0
	ctx := context.Background()
	skey, vkey, _ := note.GenerateKey(rand.Reader, "mamori/restart")
	signer, _ := note.NewSigner(skey)
	verif, _ := note.NewVerifier(vkey)
	open := func() (*eventlog.SQLite, time.Duration) {
		w0 := time.Now()
		l, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		return l, time.Since(w0)
	}
	l, first := open()
	n, _ := l.TreeSize(ctx)
	root, err := l.TreeHash(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	mark, err := SignMark(Mark{Size: n, Root: root}, signer)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	l, again := open()
	defer l.Close()
	c0, w0 := processCPU(), time.Now()
	size, got, err := VerifyFromMark(ctx, l, verif, nil, mark, zerolog.Nop())
	wall, cpu := time.Since(w0), processCPU()-c0
	if err != nil || size != n || got != root {
		t.Fatalf("from the mark: %d %v", size, err)
	}
	t.Logf("%d events: open %s (first, cold) and %s (again); check from a mark at the end: wall %s, cpu %s; restart work %s",
		n, first.Round(time.Millisecond), again.Round(time.Millisecond), wall.Round(time.Millisecond), cpu.Round(time.Millisecond),
		(again + wall).Round(time.Millisecond))
}
