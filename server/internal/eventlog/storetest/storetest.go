// Package storetest is the conformance suite every eventlog.Store backend
// must pass, in the manner of golang.org/x/mod/sumdb/storage's TestStorage.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// Run runs the suite. newStore must return a fresh, empty store for each call;
// Run closes every store it gets.
func Run(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s eventlog.Store)
	}{
		{"AppendAndQuery", testAppendAndQuery},
		{"Dedup", testDedup},
		{"ChainError", testChainError},
		{"InvalidEvents", testInvalidEvents},
		{"Gap", testGap},
		{"ServerStream", testServerStream},
		{"Filters", testFilters},
		{"Paging", testPaging},
		{"Heads", testHeads},
		{"TreeHashes", testTreeHashes},
		{"Concurrent", testConcurrent},
		{"ConcurrentResend", testConcurrentResend},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			defer s.Close()
			tt.fn(t, s)
		})
	}
	t.Run("Close", func(t *testing.T) { testClose(t, newStore(t)) })
}

// Base is the event time of the first generated event.
var Base = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// Chain returns n sealed events of agent with seqs from, from+1, ..., the
// first linked to prev. Fields vary with seq so that filters have work to do.
func Chain(agent string, from uint64, n int, prev string) []event.Event {
	controls := []string{"fileaccess", "media", "screenlock"}
	types := map[string][]string{
		"fileaccess": {"file.read", "file.modified"},
		"media":      {"media.inserted", "media.write"},
		"screenlock": {"screenlock.status"},
	}
	users := []string{"CORP\\tanaka", "CORP\\佐藤", ""}
	objects := []string{`D:\顧客\2026\a.xlsx`, `D:\顧客\2025\b.docx`, `D:\顧客_old\c.csv`, `E:\`, `D:\100%_done\x`, ""}
	evs := make([]event.Event, n)
	for i := range evs {
		seq := from + uint64(i)
		c := controls[seq%3]
		e := event.Event{
			Agent: agent, Seq: seq, Time: Base.Add(time.Duration(seq) * time.Minute).Add(time.Duration(seq%7) * 1234567),
			Control: c, Type: types[c][seq%uint64(len(types[c]))], Severity: event.Info,
			User: users[seq%3], Process: `C:\Windows\explorer.exe`, Object: objects[seq%6],
		}
		if seq%5 == 0 {
			e.Severity = event.Violation
			e.RegisterID = fmt.Sprintf("PI-%03d", seq%20)
		}
		if seq%2 == 0 {
			var a event.Attrs
			if err := a.UnmarshalJSON([]byte(fmt.Sprintf(`{"files":%d,"ratio":1.50,"big":123456789012345678901,"tags":["a","<b>"],"m":{"z":1,"a":"x"}}`, seq))); err != nil {
				panic(err)
			}
			e.Attrs = a
		}
		if err := e.Seal(prev); err != nil {
			panic(err)
		}
		prev = e.Hash
		evs[i] = e
	}
	return evs
}

func mustAppend(t *testing.T, s eventlog.Store, agent string, evs []event.Event) eventlog.Result {
	t.Helper()
	r, err := s.Append(context.Background(), agent, evs)
	if err != nil {
		t.Fatalf("Append(%s, %d events): %v", agent, len(evs), err)
	}
	return r
}

// All returns every stored event, paging through Query.
func All(t *testing.T, s eventlog.Store, f eventlog.Filter) []eventlog.Stored {
	t.Helper()
	var out []eventlog.Stored
	for {
		p, err := s.Query(context.Background(), f)
		if err != nil {
			t.Fatalf("Query(%+v): %v", f, err)
		}
		out = append(out, p.Events...)
		if p.Next == "" {
			return out
		}
		if len(p.Events) == 0 {
			t.Fatalf("Query(%+v): empty page with next %q", f, p.Next)
		}
		f.Cursor = p.Next
	}
}

func treeSize(t *testing.T, s eventlog.Store) int64 {
	t.Helper()
	n, err := s.TreeSize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func sameEvent(a, b event.Event) bool {
	ha, _ := a.ComputeHash()
	hb, _ := b.ComputeHash()
	return ha == hb && a.Hash == b.Hash && a.Time.Equal(b.Time) && a.Seq == b.Seq && a.Agent == b.Agent
}

func testAppendAndQuery(t *testing.T, s eventlog.Store) {
	evs := Chain("pc-001", 1, 10, "")
	before := time.Now().Add(-time.Second)
	r := mustAppend(t, s, "pc-001", evs)
	if r != (eventlog.Result{AckedSeq: 10, Stored: 10}) {
		t.Fatalf("Result = %+v, want AckedSeq 10, Stored 10", r)
	}
	got := All(t, s, eventlog.Filter{})
	if len(got) != 10 {
		t.Fatalf("stored %d events, want 10", len(got))
	}
	for i, st := range got {
		if st.Index != int64(i) {
			t.Errorf("event %d has index %d", i, st.Index)
		}
		if err := st.Event.Validate(); err != nil {
			t.Errorf("stored event %d does not validate: %v", i, err)
		}
		if !sameEvent(st.Event, evs[i]) || !slices.Equal([]string{st.User, st.Object, st.RegisterID, st.Process},
			[]string{evs[i].User, evs[i].Object, evs[i].RegisterID, evs[i].Process}) {
			t.Errorf("event %d: stored %+v, appended %+v", i, st.Event, evs[i])
		}
		if st.Received.Before(before) || st.Received.After(time.Now().Add(time.Second)) {
			t.Errorf("event %d received at %v", i, st.Received)
		}
	}
	if n := treeSize(t, s); n != 10 {
		t.Errorf("TreeSize = %d, want 10", n)
	}
	st, err := s.Stats(context.Background())
	if err != nil || st.Events != 10 || st.BytesOnDisk <= 0 {
		t.Errorf("Stats = %+v, %v; want 10 events and some bytes", st, err)
	}
	if r, err := s.Append(context.Background(), "pc-001", nil); err != nil || r.AckedSeq != 10 {
		t.Errorf("empty Append = %+v, %v; want AckedSeq 10", r, err)
	}
}

func testDedup(t *testing.T, s eventlog.Store) {
	evs := Chain("pc-001", 1, 15, "")
	mustAppend(t, s, "pc-001", evs[:10])
	if r := mustAppend(t, s, "pc-001", evs[:10]); r != (eventlog.Result{AckedSeq: 10, Duplicates: 10}) {
		t.Errorf("resend: Result = %+v, want 10 duplicates", r)
	}
	if r := mustAppend(t, s, "pc-001", evs[5:]); r != (eventlog.Result{AckedSeq: 15, Stored: 5, Duplicates: 5}) {
		t.Errorf("overlap: Result = %+v, want 5 stored, 5 duplicates", r)
	}
	if r := mustAppend(t, s, "pc-001", evs[2:4]); r != (eventlog.Result{AckedSeq: 15, Duplicates: 2}) {
		t.Errorf("old: Result = %+v, want AckedSeq 15, 2 duplicates", r)
	}
	// A "resend" whose content differs from what is stored (say, a spool that
	// started over under the same id) must not be acked as a duplicate.
	h, _ := s.Head(context.Background(), "pc-001")
	other := slices.Clone(evs[:5])
	other[3].User = `CORP\someone-else`
	if err := other[3].Seal(other[2].Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), "pc-001", other); !errors.Is(err, event.ErrChain) {
		t.Errorf("conflicting resend: err = %v, want ErrChain", err)
	}
	unchanged(t, s, 15, "pc-001", h)
	got := All(t, s, eventlog.Filter{})
	if len(got) != 15 {
		t.Fatalf("stored %d events, want 15", len(got))
	}
	if i, err := event.VerifyChain("pc-001", 0, "", storedEvents(got)); err != nil {
		t.Errorf("chain broken at %d: %v", i, err)
	}
}

// testConcurrentResend sends every batch from several goroutines at once, as
// an agent retrying over several connections might: each event is stored
// once and no copy is refused.
func testConcurrentResend(t *testing.T, s eventlog.Store) {
	const copies, batches, size = 6, 30, 20
	evs := Chain("pc-001", 1, batches*size, "")
	for b := range batches {
		batch := evs[b*size : (b+1)*size]
		var wg sync.WaitGroup
		stored := make([]int, copies)
		for c := range copies {
			wg.Go(func() {
				r, err := s.Append(context.Background(), "pc-001", batch)
				if err != nil || r.Stored+r.Duplicates != size || r.AckedSeq != uint64((b+1)*size) {
					t.Errorf("batch %d copy %d: %+v, %v", b, c, r, err)
				}
				stored[c] = r.Stored
			})
		}
		wg.Wait()
		total := 0
		for _, n := range stored {
			total += n
		}
		if total != size {
			t.Fatalf("batch %d stored %d times over", b, total)
		}
	}
	if n := treeSize(t, s); n != batches*size {
		t.Errorf("TreeSize = %d, want %d", n, batches*size)
	}
}

func storedEvents(st []eventlog.Stored) []event.Event {
	out := make([]event.Event, len(st))
	for i := range st {
		out[i] = st[i].Event
	}
	return out
}

// unchanged checks that nothing was stored since size and head were taken.
func unchanged(t *testing.T, s eventlog.Store, size int64, agent string, h eventlog.Head) {
	t.Helper()
	if n := treeSize(t, s); n != size {
		t.Errorf("TreeSize = %d after a refused batch, want %d", n, size)
	}
	got, err := s.Head(context.Background(), agent)
	if err != nil || got != h {
		t.Errorf("Head = %+v, %v after a refused batch, want %+v", got, err, h)
	}
}

func testChainError(t *testing.T, s eventlog.Store) {
	ctx := context.Background()
	evs := Chain("pc-001", 1, 20, "")
	mustAppend(t, s, "pc-001", evs[:10])
	h, _ := s.Head(ctx, "pc-001")

	bad := Chain("pc-001", 11, 1, strings.Repeat("0", 64))
	if _, err := s.Append(ctx, "pc-001", bad); !errors.Is(err, event.ErrChain) {
		t.Errorf("wrong prev: err = %v, want ErrChain", err)
	}
	unchanged(t, s, 10, "pc-001", h)

	// All or nothing: the break is in the middle of the batch.
	batch := slices.Clone(evs[10:15])
	tail := Chain("pc-001", 13, 3, strings.Repeat("ab", 32))
	copy(batch[2:], tail)
	if _, err := s.Append(ctx, "pc-001", batch); !errors.Is(err, event.ErrChain) {
		t.Errorf("break mid-batch: err = %v, want ErrChain", err)
	}
	unchanged(t, s, 10, "pc-001", h)

	// The good continuation still goes in.
	if r := mustAppend(t, s, "pc-001", evs[10:]); r.Stored != 10 || r.AckedSeq != 20 {
		t.Errorf("continuation: Result = %+v", r)
	}
}

func testInvalidEvents(t *testing.T, s eventlog.Store) {
	ctx := context.Background()
	mustAppend(t, s, "pc-001", Chain("pc-001", 1, 3, ""))
	h, _ := s.Head(ctx, "pc-001")
	next := Chain("pc-001", 1, 8, "")[3:]

	tampered := slices.Clone(next)
	tampered[2].User = "CORP\\mallory" // hash no longer matches
	other := slices.Clone(next)
	other[1] = Chain("pc-002", 5, 1, "")[0]
	descending := []event.Event{next[1], next[0]}
	repeated := []event.Event{next[0], next[0]}
	missing := slices.Clone(next)
	missing[0].Control = ""
	for _, c := range []struct {
		name  string
		agent string
		evs   []event.Event
		want  error
	}{
		{"tampered", "pc-001", tampered, event.ErrHash},
		{"wrong agent", "pc-001", other, event.ErrWrongAgent},
		{"batch for another agent", "pc-002", next, event.ErrWrongAgent},
		{"server stream", event.ServerStream, Chain(event.ServerStream, 1, 1, ""), event.ErrWrongAgent},
		{"descending", "pc-001", descending, event.ErrSeq},
		{"repeated", "pc-001", repeated, event.ErrSeq},
		{"missing control", "pc-001", missing, event.ErrInvalid},
	} {
		if _, err := s.Append(ctx, c.agent, c.evs); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		unchanged(t, s, 3, "pc-001", h)
	}
	if hs, _ := s.Agents(ctx); len(hs) != 1 {
		t.Errorf("Agents = %+v after refused batches, want only pc-001", hs)
	}
}

func testGap(t *testing.T, s eventlog.Store) {
	evs := Chain("pc-001", 1, 12, "")
	mustAppend(t, s, "pc-001", evs[:3])
	// seqs 4..6 were lost on the agent; 7's prev names 6, which we never saw.
	r := mustAppend(t, s, "pc-001", evs[6:9])
	if r != (eventlog.Result{AckedSeq: 9, Stored: 3, Gap: true}) {
		t.Errorf("gap: Result = %+v", r)
	}
	// A gap inside a batch, and an agent whose first event is not seq 1.
	inner := []event.Event{evs[9], evs[11]}
	if r := mustAppend(t, s, "pc-001", inner); r != (eventlog.Result{AckedSeq: 12, Stored: 2, Gap: true}) {
		t.Errorf("inner gap: Result = %+v", r)
	}
	if r := mustAppend(t, s, "pc-002", Chain("pc-002", 5, 2, "")); !r.Gap || r.Stored != 2 {
		t.Errorf("late start: Result = %+v", r)
	}

	gaps := All(t, s, eventlog.Filter{Agent: event.ServerStream})
	want := [][3]string{{"pc-001", "4", "6"}, {"pc-001", "11", "11"}, {"pc-002", "1", "4"}}
	if len(gaps) != len(want) {
		t.Fatalf("server stream has %d events, want %d gap events", len(gaps), len(want))
	}
	for i, g := range gaps {
		got := [3]string{fmt.Sprint(g.Attrs["agent"]), fmt.Sprint(g.Attrs["from_seq"]), fmt.Sprint(g.Attrs["to_seq"])}
		if g.Control != eventlog.GapControl || g.Type != eventlog.GapType || g.Severity != event.Warning || got != want[i] {
			t.Errorf("gap event %d = %+v, want %v", i, g.Event, want[i])
		}
		if err := g.Event.Validate(); err != nil {
			t.Errorf("gap event %d: %v", i, err)
		}
	}
	// Each gap event comes right before the event after the gap.
	all := All(t, s, eventlog.Filter{})
	for i, st := range all {
		if st.Agent == event.ServerStream && (i+1 >= len(all) || all[i+1].Agent != st.Attrs["agent"]) {
			t.Errorf("gap event at %d not followed by the agent's event", i)
		}
	}
	if i, err := event.VerifyChain(event.ServerStream, 0, "", storedEvents(gaps)); err != nil {
		t.Errorf("server stream chain broken at %d: %v", i, err)
	}
}

func testServerStream(t *testing.T, s eventlog.Store) {
	ctx := context.Background()
	var sealed []event.Event
	for i := range 3 {
		e := event.Event{Control: "admin", Type: "policy.updated", Severity: event.Info, User: "admin",
			Object: "policies/default", Attrs: event.Attrs{"n": i}}
		if i == 2 {
			e.Time = Base
		}
		got, err := s.AppendServer(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if got.Agent != event.ServerStream || got.Seq != uint64(i+1) || got.Time.IsZero() {
			t.Errorf("AppendServer %d = %+v", i, got)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("AppendServer %d: %v", i, err)
		}
		sealed = append(sealed, got)
	}
	if !sealed[2].Time.Equal(Base) {
		t.Errorf("given time replaced: %v", sealed[2].Time)
	}
	if i, err := event.VerifyChain(event.ServerStream, 0, "", sealed); err != nil {
		t.Errorf("returned chain broken at %d: %v", i, err)
	}
	stored := All(t, s, eventlog.Filter{Agent: event.ServerStream})
	if len(stored) != 3 {
		t.Fatalf("stored %d server events, want 3", len(stored))
	}
	for i := range stored {
		if !sameEvent(stored[i].Event, sealed[i]) {
			t.Errorf("stored %+v, returned %+v", stored[i].Event, sealed[i])
		}
	}
	h, _ := s.Head(ctx, event.ServerStream)
	if _, err := s.AppendServer(ctx, event.Event{Type: "x", Severity: event.Info}); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("server event without control: err = %v, want ErrInvalid", err)
	}
	unchanged(t, s, 3, event.ServerStream, h)
}

// load stores three agents' interleaved chains and returns everything stored.
func load(t *testing.T, s eventlog.Store) []eventlog.Stored {
	t.Helper()
	agents := []string{"pc-001", "pc-002", "pc-003"}
	chains := map[string][]event.Event{}
	for _, a := range agents {
		chains[a] = Chain(a, 1, 60, "")
	}
	for i := 0; i < 60; i += 15 {
		for _, a := range agents {
			mustAppend(t, s, a, chains[a][i:i+15])
		}
	}
	return All(t, s, eventlog.Filter{Limit: eventlog.MaxLimit})
}

func testFilters(t *testing.T, s eventlog.Store) {
	all := load(t, s)
	if len(all) != 180 {
		t.Fatalf("stored %d, want 180", len(all))
	}
	from, to := Base.Add(10*time.Minute), Base.Add(30*time.Minute)
	for _, c := range []struct {
		f     eventlog.Filter
		match func(e event.Event) bool
	}{
		{eventlog.Filter{Agent: "pc-002"}, func(e event.Event) bool { return e.Agent == "pc-002" }},
		{eventlog.Filter{Control: "media"}, func(e event.Event) bool { return e.Control == "media" }},
		{eventlog.Filter{Control: "fileaccess", Type: "file.modified"}, func(e event.Event) bool {
			return e.Control == "fileaccess" && e.Type == "file.modified"
		}},
		{eventlog.Filter{Type: "media.write"}, func(e event.Event) bool { return e.Type == "media.write" }},
		{eventlog.Filter{User: "CORP\\佐藤"}, func(e event.Event) bool { return e.User == "CORP\\佐藤" }},
		{eventlog.Filter{ObjectPrefix: `D:\顧客\`}, func(e event.Event) bool { return strings.HasPrefix(e.Object, `D:\顧客\`) }},
		{eventlog.Filter{ObjectPrefix: `D:\顧客`}, func(e event.Event) bool { return strings.HasPrefix(e.Object, `D:\顧客`) }},
		{eventlog.Filter{ObjectPrefix: `D:\100%`}, func(e event.Event) bool { return strings.HasPrefix(e.Object, `D:\100%`) }},
		{eventlog.Filter{ObjectPrefix: `d:\`}, func(e event.Event) bool { return strings.HasPrefix(e.Object, `d:\`) }},
		{eventlog.Filter{RegisterID: "PI-010"}, func(e event.Event) bool { return e.RegisterID == "PI-010" }},
		{eventlog.Filter{From: from}, func(e event.Event) bool { return !e.Time.Before(from) }},
		{eventlog.Filter{To: to}, func(e event.Event) bool { return e.Time.Before(to) }},
		{eventlog.Filter{Agent: "pc-003", From: from, To: to, Control: "media"}, func(e event.Event) bool {
			return e.Agent == "pc-003" && !e.Time.Before(from) && e.Time.Before(to) && e.Control == "media"
		}},
		{eventlog.Filter{Agent: "pc-404"}, func(event.Event) bool { return false }},
	} {
		var want []int64
		for _, st := range all {
			if c.match(st.Event) {
				want = append(want, st.Index)
			}
		}
		var got []int64
		for _, st := range All(t, s, c.f) {
			got = append(got, st.Index)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Query(%+v) = %v, want %v", c.f, got, want)
		}
	}
	for _, f := range []eventlog.Filter{{Limit: -1}, {From: to, To: from}} {
		if _, err := s.Query(context.Background(), f); !errors.Is(err, eventlog.ErrBadFilter) {
			t.Errorf("Query(%+v): err = %v, want ErrBadFilter", f, err)
		}
	}
}

func testPaging(t *testing.T, s eventlog.Store) {
	ctx := context.Background()
	all := load(t, s)
	p, err := s.Query(ctx, eventlog.Filter{})
	if err != nil || len(p.Events) != eventlog.DefaultLimit || p.Next == "" {
		t.Fatalf("default page: %d events, next %q, %v", len(p.Events), p.Next, err)
	}
	for _, f := range []eventlog.Filter{{Limit: 7}, {Limit: 1, Agent: "pc-001", Control: "media"}, {Limit: 180}} {
		var got, want []int64
		pages := 0
		for {
			p, err := s.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(p.Events) > f.Limit {
				t.Fatalf("page of %d events with limit %d", len(p.Events), f.Limit)
			}
			for _, st := range p.Events {
				got = append(got, st.Index)
			}
			if p.Next == "" {
				break
			}
			f.Cursor = p.Next
		}
		f.Cursor = ""
		for _, st := range all {
			if (f.Agent == "" || st.Agent == f.Agent) && (f.Control == "" || st.Control == f.Control) {
				want = append(want, st.Index)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("paged %+v: %v, want %v", f, got, want)
		}
		if min := (len(want) + f.Limit - 1) / f.Limit; pages < min || pages > min+1 {
			t.Errorf("paged %+v in %d pages for %d events", f, pages, len(want))
		}
	}
	// The cursor is a log index: any index, not only one of the agent's
	// own events, pages the agent's stream from there (the web UI steps
	// back through the log and merges several PCs' pages).
	for _, agent := range []string{"pc-001", "pc-002"} {
		for c := int64(0); c < int64(len(all)); c += 7 {
			f := eventlog.Filter{Agent: agent, Cursor: strconv.FormatInt(c, 10), Limit: 5}
			p, err := s.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []int64
			for _, st := range p.Events {
				got = append(got, st.Index)
			}
			for _, st := range all {
				if st.Agent == agent && st.Index > c && len(want) < 5 {
					want = append(want, st.Index)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("agent %s after index %d: %v, want %v", agent, c, got, want)
			}
		}
	}
	for _, c := range []string{"x", "-1", "1.5", "01", " 5", "99999999999999999999999"} {
		if _, err := s.Query(ctx, eventlog.Filter{Cursor: c}); !errors.Is(err, eventlog.ErrBadCursor) {
			t.Errorf("cursor %q: err = %v, want ErrBadCursor", c, err)
		}
	}
	if p, err := s.Query(ctx, eventlog.Filter{Limit: 5000}); err != nil || len(p.Events) != 180 || p.Next != "" {
		t.Errorf("limit above max: %d events, next %q, %v", len(p.Events), p.Next, err)
	}
	// A sparse stream: its event before the cursor lies further back than
	// a short walk through the log reaches.
	sparse := Chain("pc-sparse", 1, 2, "")
	mustAppend(t, s, "pc-sparse", sparse[:1])
	mustAppend(t, s, "pc-busy", Chain("pc-busy", 1, 5000, ""))
	mustAppend(t, s, "pc-sparse", sparse[1:])
	size := treeSize(t, s)
	for _, c := range []int64{size - 2, size - 5, size - 4900} {
		p, err := s.Query(ctx, eventlog.Filter{Agent: "pc-sparse", Cursor: strconv.FormatInt(c, 10)})
		if err != nil || len(p.Events) != 1 || p.Events[0].Seq != 2 {
			t.Errorf("sparse agent after index %d: %+v, %v; want its second event", c, p.Events, err)
		}
	}
	if p, err := s.Query(ctx, eventlog.Filter{Agent: "pc-sparse", Cursor: strconv.FormatInt(size-1, 10)}); err != nil || len(p.Events) != 0 {
		t.Errorf("sparse agent after its last event: %d events, %v", len(p.Events), err)
	}
}

func testHeads(t *testing.T, s eventlog.Store) {
	ctx := context.Background()
	if h, err := s.Head(ctx, "pc-001"); err != nil || h != (eventlog.Head{}) {
		t.Errorf("Head of unknown agent = %+v, %v", h, err)
	}
	if hs, err := s.Agents(ctx); err != nil || len(hs) != 0 {
		t.Errorf("Agents of empty store = %+v, %v", hs, err)
	}
	start := time.Now().Add(-time.Second)
	b := Chain("pc-b", 1, 4, "")
	a := Chain("pc-a", 1, 7, "")
	mustAppend(t, s, "pc-b", b)
	mustAppend(t, s, "pc-a", a[:5])
	mustAppend(t, s, "pc-a", a[3:])
	hs, err := s.Agents(ctx)
	if err != nil || len(hs) != 2 {
		t.Fatalf("Agents = %+v, %v", hs, err)
	}
	want := []eventlog.Head{
		{Agent: "pc-a", Seq: 7, Hash: a[6].Hash, Events: 7},
		{Agent: "pc-b", Seq: 4, Hash: b[3].Hash, Events: 4},
	}
	for i, h := range hs {
		if h.LastSeen.Before(start) || h.LastSeen.After(time.Now().Add(time.Second)) {
			t.Errorf("%s last seen %v", h.Agent, h.LastSeen)
		}
		h.LastSeen = time.Time{}
		if h != want[i] {
			t.Errorf("Agents[%d] = %+v, want %+v", i, h, want[i])
		}
		one, err := s.Head(ctx, want[i].Agent)
		if err != nil || one != hs[i] {
			t.Errorf("Head(%s) = %+v, %v; Agents says %+v", want[i].Agent, one, err, hs[i])
		}
	}
}

// mth is the RFC 6962 Merkle tree hash, written out independently of tlog.
func mth(leaves [][]byte) [32]byte {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, leaves[0]...))
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := mth(leaves[:k]), mth(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

// Record is a stored event's Merkle record: its hash and the received time,
// which the server signs with it (bundle format v3).
func Record(hash []byte, received time.Time) []byte {
	var ns [8]byte
	binary.BigEndian.PutUint64(ns[:], uint64(received.UnixNano()))
	return append(hash, ns[:]...)
}

func testTreeHashes(t *testing.T, s eventlog.Store) {
	ctx := context.Background()
	load(t, s)
	for i := range 5 {
		if _, err := s.AppendServer(ctx, event.Event{Control: "admin", Type: "token.created", Severity: event.Info, Attrs: event.Attrs{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	all := All(t, s, eventlog.Filter{Limit: eventlog.MaxLimit})
	n := int64(len(all))
	if size := treeSize(t, s); size != n || n != 185 {
		t.Fatalf("TreeSize = %d, events = %d, want 185", size, n)
	}
	// An independent log over the same leaves, in memory.
	mem := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			h, ok := mem[x]
			if !ok {
				return nil, fmt.Errorf("no hash %d", x)
			}
			out[i] = h
		}
		return out, nil
	})
	var leaves [][]byte
	for i, st := range all {
		raw, err := hex.DecodeString(st.Hash)
		if err != nil {
			t.Fatal(err)
		}
		raw = Record(raw, st.Received)
		leaves = append(leaves, raw)
		hs, err := tlog.StoredHashes(int64(i), raw, reader)
		if err != nil {
			t.Fatal(err)
		}
		for j, h := range hs {
			mem[tlog.StoredHashIndex(0, int64(i))+int64(j)] = h
		}
	}
	for _, size := range []int64{1, 2, 3, 7, 64, 100, 128, 184, 185} {
		want, err := tlog.TreeHash(size, reader)
		if err != nil {
			t.Fatal(err)
		}
		if want != tlog.Hash(mth(leaves[:size])) {
			t.Fatalf("test's own tree hash disagrees at %d", size)
		}
		got, err := tlog.TreeHash(size, s)
		if err != nil || got != want {
			t.Errorf("TreeHash(%d) over the store = %v, %v; want %v", size, got, err, want)
		}
	}
	// Every stored hash equals the independent one.
	var ix []int64
	for x := range tlog.StoredHashCount(n) {
		ix = append(ix, x)
	}
	got, err := s.ReadHashes(ix)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range ix {
		if got[i] != mem[x] {
			t.Errorf("stored hash %d = %v, want %v", x, got[i], mem[x])
		}
	}
	if _, err := s.ReadHashes([]int64{tlog.StoredHashCount(n) + 5}); err == nil {
		t.Error("ReadHashes beyond the tree: no error")
	}
	// Proofs from the store check out against the independent root.
	root, _ := tlog.TreeHash(n, reader)
	for _, leaf := range []int64{0, 1, 99, 184} {
		p, err := tlog.ProveRecord(n, leaf, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, n, root, leaf, tlog.RecordHash(leaves[leaf])); err != nil {
			t.Errorf("inclusion proof of %d: %v", leaf, err)
		}
	}
	old, _ := tlog.TreeHash(100, reader)
	tp, err := tlog.ProveTree(n, 100, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(tp, n, root, 100, old); err != nil {
		t.Errorf("consistency proof 100 -> %d: %v", n, err)
	}
}

func testConcurrent(t *testing.T, s eventlog.Store) {
	const (
		agents  = 24
		batches = 12
		size    = 10
	)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, agents*2)
	for a := range agents {
		id := fmt.Sprintf("pc-%03d", a)
		evs := Chain(id, 1, batches*size, "")
		wg.Go(func() {
			for b := range batches {
				r, err := s.Append(ctx, id, evs[b*size:(b+1)*size])
				if err != nil || r.Stored != size || r.AckedSeq != uint64((b+1)*size) {
					errs <- fmt.Errorf("%s batch %d: %+v, %v", id, b, r, err)
					return
				}
				if b%4 == 3 { // an agent that did not get the ack resends
					if r, err := s.Append(ctx, id, evs[b*size:(b+1)*size]); err != nil || r.Duplicates != size {
						errs <- fmt.Errorf("%s resend %d: %+v, %v", id, b, r, err)
						return
					}
				}
			}
		})
		if a%6 == 0 {
			wg.Go(func() {
				for i := range 5 {
					if _, err := s.AppendServer(ctx, event.Event{Control: "admin", Type: "login", Severity: event.Info, Attrs: event.Attrs{"i": i}}); err != nil {
						errs <- err
						return
					}
					if _, err := s.Query(ctx, eventlog.Filter{Agent: id, Limit: 5}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := int64(agents*batches*size + 4*5)
	if n := treeSize(t, s); n != want {
		t.Fatalf("TreeSize = %d, want %d", n, want)
	}
	all := All(t, s, eventlog.Filter{Limit: eventlog.MaxLimit})
	if int64(len(all)) != want {
		t.Fatalf("stored %d, want %d", len(all), want)
	}
	byAgent := map[string][]event.Event{}
	for i, st := range all {
		if st.Index != int64(i) {
			t.Fatalf("index %d at position %d", st.Index, i)
		}
		byAgent[st.Agent] = append(byAgent[st.Agent], st.Event)
	}
	for id, evs := range byAgent {
		if i, err := event.VerifyChain(id, 0, "", evs); err != nil {
			t.Errorf("%s: chain broken at %d: %v", id, i, err)
		}
	}
	if got, err := tlog.TreeHash(want, s); err != nil {
		t.Error(err)
	} else {
		var leaves [][]byte
		for _, st := range all {
			raw, _ := hex.DecodeString(st.Hash)
			leaves = append(leaves, Record(raw, st.Received))
		}
		if got != tlog.Hash(mth(leaves)) {
			t.Error("tree hash after concurrent appends differs from the recomputed one")
		}
	}
}

func testClose(t *testing.T, s eventlog.Store) {
	ctx := context.Background()
	evs := Chain("pc-001", 1, 4, "")
	mustAppend(t, s, "pc-001", evs[:2])
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Append(ctx, "pc-001", evs[2:]); err == nil {
		t.Error("Append after Close: no error")
	}
	if _, err := s.AppendServer(ctx, event.Event{Control: "admin", Type: "x", Severity: event.Info}); err == nil {
		t.Error("AppendServer after Close: no error")
	}
}
