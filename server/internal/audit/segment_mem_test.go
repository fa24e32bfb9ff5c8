package audit

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// The scrubber re-reads the log all the time and start-up reads it in
// parallel segments; what a segment keeps to link chains across segments
// must not be each agent's whole last event: an office of 10,000 agents
// would hold 10,000 events (their attributes and paths) for as long as a
// pass runs, per segment.
func TestSegmentKeepsOnlyChainEnds(t *testing.T) {
	r := newRig(t)
	const agents = 400
	big := strings.Repeat("個人情報", 1000) // 12 KB of attrs an event
	for a := 0; a < agents; a++ {
		id := fmt.Sprintf("ag-%d", a)
		e := event.Event{Agent: id, Seq: 1, Time: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), Control: "fileaccess",
			Type: "fileaccess.read", Severity: event.Info, User: "CORP\\佐藤", Object: `D:\顧客\名簿.xlsx`, Attrs: event.Attrs{"note": big}}
		if err := e.Seal(""); err != nil {
			t.Fatal(err)
		}
		if _, err := r.log.Append(context.Background(), id, []event.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g := &segment{from: 0, to: agents}
	var done atomic.Int64
	g.verify(context.Background(), r.log, nil, &done)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if g.problem.err != nil {
		t.Fatal(g.problem.err)
	}
	if len(g.first) != agents || len(g.last) != agents {
		t.Fatalf("first %d, last %d chain ends, want %d each", len(g.first), len(g.last), agents)
	}
	kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(g)
	if per := kept / agents; per > 1024 {
		t.Fatalf("a verified segment keeps %d bytes an agent (%d KB for %d agents): the events themselves, not their chain ends", per, kept>>10, agents)
	}
}
