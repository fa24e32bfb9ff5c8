package eventlog

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/event"
)

// An agent's events whose time runs back more than MaxClockRewind behind
// the latest time of its chain (a clock set back, or an event forged with
// an earlier date at the end of the chain) start one episode, recorded as
// one ClockRewoundType server event; within the bound (NTP corrections)
// nothing is said.
func TestClockRewindRecorded(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Second)
	var prev string
	var seq uint64
	ev := func(at time.Time) event.Event {
		seq++
		e := event.Event{Agent: "pc-1", Seq: seq, Time: at, Control: "fileaccess", Type: "file.read", Severity: event.Info}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		return e
	}
	batches := [][]event.Event{
		{ev(now.Add(-2 * time.Minute)), ev(now.Add(-time.Minute)), ev(now.Add(-time.Minute - 30*time.Second))}, // 30 s back: NTP
		{ev(now.Add(-30 * 24 * time.Hour)), ev(now.Add(-30*24*time.Hour + time.Second))},                       // a month back: one episode
		{ev(now)},                           // on time again
		{ev(now.Add(-10 * 24 * time.Hour))}, // a second episode
	}
	for _, b := range batches {
		if _, err := s.Append(ctx, "pc-1", b); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Query(ctx, Filter{Type: ClockRewoundType})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 2 || p.Events[0].Attrs["agent"] != "pc-1" || fmt.Sprint(p.Events[0].Attrs["seq"]) != "4" ||
		p.Events[0].Attrs["latest_time"] != now.Add(-time.Minute).Format(time.RFC3339Nano) || fmt.Sprint(p.Events[1].Attrs["seq"]) != "7" ||
		p.Events[0].Severity != event.Warning {
		t.Fatalf("rewinds recorded: %+v", p.Events)
	}
}
