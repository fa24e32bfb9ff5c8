package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

func start(tb testing.TB, dir string) *app.Server {
	tb.Helper()
	srv, err := app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1", "localhost"}, Log: zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)})
	if err != nil {
		tb.Fatal(err)
	}
	return srv
}

type queried struct {
	Events []event.Event `json:"events"`
	Next   string        `json:"next"`
}

// allEvents pages through one agent's stored events.
func allEvents(tb testing.TB, srv *app.Server, agent string) []event.Event {
	tb.Helper()
	var all []event.Event
	cursor := ""
	for {
		var q queried
		v := url.Values{"agent": {agent}, "limit": {"1000"}}
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		if st := adminGet(tb, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/api/v1/events", v, &q); st != 200 {
			tb.Fatalf("query: %d", st)
		}
		all = append(all, q.Events...)
		if q.Next == "" {
			return all
		}
		cursor = q.Next
	}
}

func TestFirstStartFilesAndRestart(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir)
	for _, f := range []string{app.FileCA, app.FileEnrollToken, app.FileAdminToken, app.FileAdminPassword, app.FileLogKey, app.FileLogKeyPub} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		secret := f != app.FileCA && f != app.FileLogKeyPub
		if runtime.GOOS != "windows" && secret && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if strings.TrimSpace(string(readFile(t, filepath.Join(dir, app.FileEnrollToken)))) != srv.EnrollToken() {
		t.Fatal("enroll-token file differs from the server's token")
	}
	if _, err := note.NewVerifier(strings.TrimSpace(string(readFile(t, filepath.Join(dir, app.FileLogKeyPub))))); err != nil {
		t.Fatalf("log-key.pub: %v", err)
	}
	if !strings.HasPrefix(srv.LogVerifierKey(), "mamori/127.0.0.1+") {
		t.Fatalf("log key origin: %q", srv.LogVerifierKey())
	}
	want := "mamori-agent enroll --server https://127.0.0.1:" + strings.Split(srv.Addr(), ":")[1] + " --token " + srv.EnrollToken() + " --ca-hash sha256:"
	if !strings.HasPrefix(srv.EnrollCommand(), want) {
		t.Fatalf("enroll command %q", srv.EnrollCommand())
	}

	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-001")
	acked, err := a.send(a.events(10))
	if err != nil || acked != 10 {
		t.Fatalf("ingest: %d %v", acked, err)
	}
	tok, fp, vkey := srv.EnrollToken(), srv.CAFingerprint(), srv.LogVerifierKey()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv = start(t, dir)
	defer srv.Close()
	if srv.EnrollToken() != tok || srv.CAFingerprint() != fp || srv.LogVerifierKey() != vkey {
		t.Fatal("second start made new secrets")
	}
	if got := allEvents(t, srv, a.id); len(got) != 10 || got[9].Seq != 10 {
		t.Fatalf("after restart: %d events", len(got))
	}
	// The agent's certificate still works and its chain continues.
	a.base = srv.URL()
	if acked, err := a.send(a.events(5)); err != nil || acked != 15 {
		t.Fatalf("ingest after restart: %d %v", acked, err)
	}
}

func TestEndToEnd(t *testing.T) {
	srv := start(t, t.TempDir())
	defer srv.Close()
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-a")
	b := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-b")
	for i := 0; i < 3; i++ {
		if _, err := a.send(a.events(100)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.send(b.events(1)); err != nil {
		t.Fatal(err)
	}

	var agents struct {
		Agents []struct {
			ID       string `json:"id"`
			Hostname string `json:"hostname"`
			LastSeq  uint64 `json:"last_seq"`
			Events   int64  `json:"events"`
			LastSeen *string
		} `json:"agents"`
	}
	if st := adminGet(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/api/v1/agents", nil, &agents); st != 200 || len(agents.Agents) != 2 {
		t.Fatalf("agents: %d %+v", st, agents)
	}
	for _, g := range agents.Agents {
		if (g.ID == a.id && (g.LastSeq != 300 || g.Events != 300 || g.Hostname != "pc-a")) || (g.ID == b.id && g.LastSeq != 1) {
			t.Fatalf("agent row %+v", g)
		}
	}
	got := allEvents(t, srv, a.id)
	if len(got) != 300 {
		t.Fatalf("%d events", len(got))
	}
	for i := range got {
		if err := got[i].Validate(); err != nil {
			t.Fatalf("stored event %d: %v", i, err)
		}
	}
	var q queried
	adminGet(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/api/v1/events",
		url.Values{"agent": {event.ServerStream}, "type": {"agent.enrolled"}}, &q)
	if len(q.Events) != 2 {
		t.Fatalf("agent.enrolled events: %d", len(q.Events))
	}
	// A policy long-poll over the real state answers the built-in default.
	req, _ := http.NewRequest("GET", srv.URL()+wire.PathPolicy, nil)
	resp, err := a.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pr wire.PolicyResponse
	json.NewDecoder(resp.Body).Decode(&pr)
	resp.Body.Close()
	if resp.StatusCode != 200 || pr.Version == "" {
		t.Fatalf("policy: %d %+v", resp.StatusCode, pr)
	}
}
