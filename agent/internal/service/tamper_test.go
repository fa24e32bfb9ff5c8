package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/agent/internal/uplink"
	"github.com/mamori/mamori/shared/event"
)

// TestRuntimeRefusesEditedPolicy: a policy.json edited on the PC (content
// changed, version string kept) is not enforced. The agent reports
// agent.policy_tampered (violation) with both versions and the file, and
// runs what a fresh agent runs before its first policy (every control off,
// version ""), so its long-poll fetches the real policy at once.
func TestRuntimeRefusesEditedPolicy(t *testing.T) {
	dir := writeIdentity(t)
	saved, raw := mustPolicy(t, "saved")
	if err := uplink.SavePolicy(dir, saved.Version(), raw); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, uplink.FilePolicy)
	b, _ := os.ReadFile(path)
	edited := strings.Replace(string(b), `"heartbeat":"10m0s"`, `"heartbeat":"20m0s"`, 1)
	if edited == string(b) {
		t.Fatalf("nothing to edit in %s", b)
	}
	os.WriteFile(path, []byte(edited), 0o600)
	if _, _, _, err := uplink.LoadPolicy(dir); !errors.Is(err, uplink.ErrPolicyTampered) {
		t.Fatalf("edited file loads: %v", err)
	}

	fc := &fakeControl{}
	factory := func(env controls.Env) controls.Control { fc.env = env; return fc }
	id, _ := uplink.LoadIdentity(dir)
	sp, err := spool.Open(filepath.Join(dir, FileSpool), spool.Options{Agent: id.State.AgentID})
	if err != nil {
		t.Fatal(err)
	}
	rt := &Runtime{opt: Options{StateDir: dir, Log: zerolog.Nop(), Factories: []controls.Factory{factory}},
		id: id, spool: sp, started: time.Now(), hbChanged: make(chan struct{}, 1)}
	rt.polVersion.Store("")
	rt.heartbeat.Store(int64(time.Hour))
	if err := rt.buildControls(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(fc.appliedNames()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no policy applied at boot")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := fc.appliedNames(); got[0] != "none" {
		t.Fatalf("applied at boot %v, want the fresh agent's all-off policy", got)
	}
	if v := rt.polVersion.Load().(string); v != "" {
		t.Fatalf("running version %q, want none", v)
	}
	evs, err := sp.Peek(1000)
	sp.Close()
	if err != nil {
		t.Fatal(err)
	}
	var tampered, started *event.Event
	for i, e := range evs {
		switch e.Type {
		case "agent.policy_tampered":
			tampered = &evs[i]
		case "agent.started":
			started = &evs[i]
		}
	}
	if tampered == nil || tampered.Severity != event.Violation {
		t.Fatalf("no violation agent.policy_tampered in %v", evs)
	}
	a := tampered.Attrs
	if a["stored_version"] != saved.Version() || a["actual_version"] == "" || a["actual_version"] == saved.Version() || a["path"] != path {
		t.Fatalf("tampered attrs %v", a)
	}
	if started == nil || started.Attrs["policy_version"] != "" {
		t.Fatalf("agent.started %v, want policy_version \"\"", started)
	}
}
