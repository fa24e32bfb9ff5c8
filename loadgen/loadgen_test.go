package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
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
	for _, enc := range []string{"gzip", "zstd"} {
		batchEncoding = enc
		body, err := compressBatch(evs)
		if err != nil {
			t.Fatal(err)
		}
		if got := encodingOf(body); got != enc {
			t.Errorf("%s batch sniffed as %s", enc, got)
		}
		if per := len(body) / len(evs); per < 60 || per > 250 {
			t.Errorf("%d %s bytes per event on the wire, want about 100-200", per, enc)
		}
	}
	batchEncoding = "zstd"
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

func TestBatchesAhead(t *testing.T) {
	for _, c := range []struct {
		agents, batch, rate int
		dur                 time.Duration
		want                int
	}{
		{100, 500, 50000, 20 * time.Second, 21}, // one a second each, and the one at the deadline
		{32, 500, 0, 20 * time.Second, 187},     // saturating: 150,000/s, capped at prebuildMax
		{32, 500, 0, 2 * time.Second, 19},       // saturating: 150,000/s for 2 s
		{10000, 10, 200, 40 * time.Second, 1},   // each agent sends once in 500 s
		{0, 500, 0, 20 * time.Second, 0},
		{10000, 1000, 0, 30 * time.Second, 0}, // one batch each is over prebuildMax: all built while shipping
	} {
		cfg := &config{batch: c.batch, rate: c.rate, duration: c.dur}
		if got := batchesAhead(cfg, c.agents); got != c.want {
			t.Errorf("%d agents x %d, rate %d, %s: %d batches each, want %d", c.agents, c.batch, c.rate, c.dur, got, c.want)
		}
	}
}

// TestPrebuiltBatches: the batches built before the clock continue each
// agent's chain in order, and a run that sends only some of them leaves
// the chain head after the last one sent.
func TestPrebuiltBatches(t *testing.T) {
	cfg := &config{batch: 20, rate: 100, duration: 2 * time.Second}
	agents := make([]*simAgent, 3)
	for i := range agents {
		id := fmt.Sprintf("ag-%016x", i)
		agents[i] = &simAgent{id: identity{ID: id}, src: newEventSource(id, 0, "", uint64(i)+1)}
	}
	if err := prebuild(context.Background(), cfg, agents, &stats{}); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		// 60 events a second each: 20-event batches every 0.6 s, 2 s.
		if len(a.ready) != 4 {
			t.Fatalf("%s: %d batches ready", a.id.ID, len(a.ready))
		}
		seq, prev := uint64(0), ""
		for _, b := range a.ready {
			if b.seq0 != seq || b.prev0 != prev {
				t.Fatalf("%s: batch starts after seq %d, want %d", a.id.ID, b.seq0, seq)
			}
			zr, err := zstd.NewReader(bytes.NewReader(b.body))
			if err != nil {
				t.Fatal(err)
			}
			var wb wire.Batch
			err = json.NewDecoder(zr).Decode(&wb)
			zr.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(wb.Events) != b.n || wb.Events[b.n-1].Seq != b.last {
				t.Fatalf("%s: batch of %d events ending at %d, said %d ending at %d", a.id.ID, len(wb.Events), wb.Events[len(wb.Events)-1].Seq, b.n, b.last)
			}
			if _, err := event.VerifyChain(a.id.ID, seq, prev, wb.Events); err != nil {
				t.Fatalf("%s: %v", a.id.ID, err)
			}
			seq, prev = b.last, wb.Events[b.n-1].Hash
		}
	}
	// One batch sent: the next run continues after it, not after the
	// batches built and never sent.
	a := agents[0]
	sent := a.ready[0]
	a.ready = a.ready[1:]
	if got := keepHeads(agents)[0]; got.Seq != sent.last || got.Seq != a.ready[0].seq0 || got.Prev != a.ready[0].prev0 {
		t.Fatalf("head after one batch sent: seq %d, want %d", got.Seq, sent.last)
	}
	a.ready = nil
	if got := keepHeads(agents)[0]; got.Seq != a.src.seq || got.Prev != a.src.prev {
		t.Fatalf("head with every batch sent: seq %d, want %d", got.Seq, a.src.seq)
	}
}

func TestParseIndexLag(t *testing.T) {
	text := "# HELP mamori_store_index_lag_events Stored events not yet in the query indexes.\n" +
		"# TYPE mamori_store_index_lag_events gauge\nmamori_store_index_lag_events 4096\nmamori_store_index_runs 7\n"
	if n, err := parseIndexLag(strings.NewReader(text)); err != nil || n != 4096 {
		t.Fatalf("parseIndexLag = %d, %v; want 4096", n, err)
	}
	if n, err := parseIndexLag(strings.NewReader("mamori_store_index_lag_events 1.5e+06\n")); err != nil || n != 1500000 {
		t.Fatalf("parseIndexLag = %d, %v; want 1500000", n, err)
	}
	for _, bad := range []string{"mamori_store_index_runs 7\n", "mamori_store_index_lag_events many\n", ""} {
		if _, err := parseIndexLag(strings.NewReader(bad)); err == nil {
			t.Errorf("parseIndexLag(%q) accepted", bad)
		}
	}
}
