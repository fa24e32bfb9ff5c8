package main

import (
	"io"
	"strings"
	"testing"

	"github.com/mamori/mamori/shared/event"
)

// TestEventsRealistic: events verify as a chain, are about 600 bytes in
// canonical form and about 100 bytes each on the wire, with paths that
// differ from event to event.
func TestEventsRealistic(t *testing.T) {
	const id = "ag-0123456789abcdef"
	src := newEventSource(id, 0, "", 1)
	evs, err := src.next(500)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := event.VerifyChain(id, 0, "", evs); err != nil {
		t.Fatalf("chain: %v", err)
	}
	total, paths := 0, map[string]bool{}
	for _, e := range evs {
		if err := e.Validate(); err != nil {
			t.Fatalf("event %d: %v", e.Seq, err)
		}
		c, err := e.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		total += len(c)
		paths[e.Object] = true
	}
	if avg := total / len(evs); avg < 450 || avg > 750 {
		t.Errorf("canonical size %d bytes on average, want about 600", avg)
	}
	if len(paths) < 490 {
		t.Errorf("%d distinct paths in 500 events", len(paths))
	}
	body, err := gzipBatch(evs)
	if err != nil {
		t.Fatal(err)
	}
	if per := len(body) / len(evs); per < 60 || per > 250 {
		t.Errorf("%d gzip bytes per event on the wire, want about 100-200", per)
	}
	// The next batch continues the chain.
	more, _ := src.next(2)
	if more[0].Seq != 501 || more[0].Prev != evs[499].Hash {
		t.Fatalf("next batch does not continue the chain")
	}
}

func TestParseProc(t *testing.T) {
	stat := []byte("4242 (mamori server) S 1 4242 4242 0 -1 4194560 123 0 0 0 250 75 0 0 20 0 12 0 100 0 0")
	ticks, err := parseStat(stat)
	if err != nil || ticks != 325 {
		t.Fatalf("parseStat = %d, %v; want 325", ticks, err)
	}
	if _, err := parseStat([]byte("garbage")); err == nil {
		t.Fatal("parseStat accepted garbage")
	}
	var p procSample
	status := "Name:\tmamori-server\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t12\n"
	if err := parseStatus([]byte(status), &p); err != nil || p.RSS != 100<<20 || p.Peak != 200<<20 || p.Threads != 12 {
		t.Fatalf("parseStatus = %+v, %v", p, err)
	}
	if err := parseStatus([]byte("Name:\tx\n"), &p); err == nil {
		t.Fatal("parseStatus accepted a status without VmRSS")
	}
}

func TestFlagsRefuseBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--ca", "x", "--token", "t", "--agents", "-1"},
		{"--ca", "x", "--token", "t", "--batch", "1001"},
		{"--ca", "x", "--token", "t", "--duration", "11m"},
		{"--ca", "x", "--token", "t", "--server", "http://127.0.0.1:8443"},
		{"--ca", "x", "--token", "t", "--policy-change", "5s"},
		{"--ca", "x", "--token", "t", "--connect-over", "5s"},
		{"--ca", "x", "--token", "t", "--long-poll", "--connect-over", "-1s"},
		{"--token", "t"},
		{"--ca", "x"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%s: accepted", strings.Join(args, " "))
		}
	}
	c, err := parseFlags([]string{"--ca", "x", "--token", "t", "--long-poll", "--admin-token", "a", "--policy-change", "5s"}, io.Discard)
	if err != nil || c.agents != 32 || c.batch != 500 {
		t.Fatalf("good flags: %+v, %v", c, err)
	}
}
