package app_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/shared/event"
)

// TestLogRecordsServerStartsAndStops: the log says when the server began and
// ended recording, and a start after a kill says the stop was not recorded.
// An auditor reading a year of access logs otherwise cannot tell a quiet
// night from a server that was down, nor a crash from a planned stop.
func TestLogRecordsServerStartsAndStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd, base := startChild(t, dir)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	lifeTypes := map[string]bool{app.TypeWriterStarted: true, app.TypeWriterStopped: true, app.TypeUncleanStop: true}
	life := func(srv *app.Server) []event.Event {
		var out []event.Event
		for _, e := range allEvents(t, srv, event.ServerStream) {
			if lifeTypes[e.Type] {
				out = append(out, e)
			}
		}
		return out
	}
	want := func(got []event.Event, types ...string) {
		t.Helper()
		if len(got) != len(types) {
			t.Fatalf("server life events %v, want %v", typesOf(got), types)
		}
		for i := range types {
			if got[i].Type != types[i] {
				t.Fatalf("server life events %v, want %v", typesOf(got), types)
			}
		}
	}

	// On the child's address, as a service restarted after a crash: the
	// node's own old election key is ended at once instead of after its
	// lease, so this start is the writer.
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := app.Start(context.Background(), app.Config{DataDir: dir, Listen: u.Host,
		Hostnames: []string{"127.0.0.1"}, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Role() != "writer" {
		t.Fatalf("restarted on the same address as %s", srv.Role())
	}
	got := life(srv)
	want(got, app.TypeWriterStarted, app.TypeUncleanStop, app.TypeWriterStarted)
	if p := got[0].Attrs["previous_stop"]; p != "none" {
		t.Errorf("first start: previous_stop %v, want none", p)
	}
	if got[1].Severity != event.Warning {
		t.Errorf("unclean stop: severity %s, want warning", got[1].Severity)
	}
	if got[1].Attrs["last_record_seq"] == nil || got[1].Attrs["last_record_time"] == nil {
		t.Errorf("unclean stop does not say what the last record before it was: %v", got[1].Attrs)
	}
	if fmt.Sprint(got[1].Attrs["node"]) != fmt.Sprint(got[0].Attrs["node"]) || fmt.Sprint(got[1].Attrs["epoch"]) != fmt.Sprint(got[0].Attrs["epoch"]) || got[1].Attrs["node"] == nil {
		t.Errorf("unclean stop %v does not name the term that ended unrecorded %v", got[1].Attrs, got[0].Attrs)
	}
	if p := got[2].Attrs["previous_stop"]; p != "unclean" {
		t.Errorf("start after a kill: previous_stop %v, want unclean", p)
	}
	for _, k := range []string{"node", "epoch", "version"} {
		if got[2].Attrs[k] == nil || got[2].Attrs[k] == "" {
			t.Errorf("start event without %s: %v", k, got[2].Attrs)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv = start(t, dir) // after a clean stop
	defer srv.Close()
	got = life(srv)
	want(got, app.TypeWriterStarted, app.TypeUncleanStop, app.TypeWriterStarted, app.TypeWriterStopped, app.TypeWriterStarted)
	if p := got[4].Attrs["previous_stop"]; p != "clean" {
		t.Errorf("start after Close: previous_stop %v, want clean", p)
	}
	if got[3].Attrs["node"] != got[2].Attrs["node"] || got[3].Attrs["epoch"] != got[2].Attrs["epoch"] {
		t.Errorf("stop %v does not name the term it ends %v", got[3].Attrs, got[2].Attrs)
	}
}

func typesOf(evs []event.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}
