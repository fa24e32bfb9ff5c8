package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/agent/internal/uplink"
	"github.com/mamori/mamori/shared/wire"
)

// newTestRuntime is an offline Runtime on an enrolled dir with fc as its
// only control and the server list the service would use at start.
func newTestRuntime(t *testing.T, dir string, fc *fakeControl, log zerolog.Logger) *Runtime {
	t.Helper()
	id, err := uplink.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, FileSpool), spool.Options{Agent: id.State.AgentID, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	urls, err := uplink.ServersOf(dir, id.State)
	if err != nil {
		t.Fatal(err)
	}
	r := &Runtime{opt: Options{StateDir: dir, Log: log,
		Factories: []controls.Factory{func(controls.Env) controls.Control { return fc }}},
		id: id, spool: sp, started: time.Now(), hbChanged: make(chan struct{}, 1), servers: uplink.NewServerList(urls)}
	r.polVersion.Store("")
	r.heartbeat.Store(int64(time.Hour))
	if err := r.buildControls(); err != nil {
		t.Fatal(err)
	}
	return r
}

// statusJSON runs `mamori-agent status` and returns its exit code, its JSON
// and its stderr.
func statusJSON(t *testing.T, dir string) (int, map[string]any, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main([]string{"status", "--state-dir", dir}, nil, &out, &errb)
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("status printed no JSON (exit %d): %v\n%s\n%s", code, err, out.String(), errb.String())
	}
	return code, m, errb.String()
}

func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "https://" + l.Addr().String()
}

// A policy the controls refuse shows in status (its version and why) until
// a policy applies; the version in force stays the previous one.
func TestStatusShowsRefusedPolicy(t *testing.T) {
	dir := writeIdentity(t)
	r := newTestRuntime(t, dir, &fakeControl{}, zerolog.Nop())
	ctx := context.Background()
	good, goodRaw := mustPolicy(t, "good")
	if err := r.applyPolicy(ctx, good.Version(), good, goodRaw, true); err != nil {
		t.Fatal(err)
	}
	bad, badRaw := mustPolicy(t, "refuse")
	if err := r.applyPolicy(ctx, bad.Version(), bad, badRaw, true); err == nil {
		t.Fatal("refused policy applied")
	}
	r.writeStatus(true)
	_, m, stderr := statusJSON(t, dir)
	if m["policy_version"] != good.Version() {
		t.Fatalf("policy_version %v, want the one in force %s", m["policy_version"], good.Version())
	}
	f, _ := m["policy_failed"].(map[string]any)
	if f == nil || f["version"] != bad.Version() || !strings.Contains(f["error"].(string), "cannot use this") || f["at"] == nil {
		t.Fatalf("status does not show the refused policy: %v", m)
	}
	if !strings.Contains(stderr, bad.Version()) || !strings.Contains(stderr, "cannot use this") {
		t.Fatalf("stderr does not say the policy was refused: %q", stderr)
	}
	// A policy that does not parse is reported the same way.
	r.policyRejected(ctx, "v-garbled", errors.New("policy: bad yaml"))
	r.writeStatus(true)
	if _, m, _ = statusJSON(t, dir); m["policy_failed"].(map[string]any)["version"] != "v-garbled" {
		t.Fatalf("rejected policy not shown: %v", m)
	}

	next, nextRaw := mustPolicy(t, "next")
	if err := r.applyPolicy(ctx, next.Version(), next, nextRaw, true); err != nil {
		t.Fatal(err)
	}
	if _, m, _ = statusJSON(t, dir); m["policy_failed"] != nil || m["policy_version"] != next.Version() {
		t.Fatalf("after a policy applied: %v", m)
	}
}

// configure refuses a config that can never enroll: no token and no
// identity. An enrolled PC needs none, and the installer's upgrade path
// (no SERVER) still keeps the config.
func TestConfigureRefusesWithoutTokenOrIdentity(t *testing.T) {
	hash := "sha256:" + strings.Repeat("ab", 32)
	dir := filepath.Join(t.TempDir(), "state")
	for _, args := range [][]string{
		{"configure", "--server", "https://a.example:8443", "--ca-hash", hash},
		{"configure", "-installer", "-server", "https://a.example:8443", "-token", "", "-ca-hash", hash, "-department", "", "-proxy", ""},
	} {
		var out, errb bytes.Buffer
		code := Main(append(args, "--state-dir", dir), nil, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), "--token") || !strings.Contains(errb.String(), "TOKEN") {
			t.Fatalf("%q without a token on an unenrolled dir: exit %d\nstdout %s\nstderr %s", args, code, out.String(), errb.String())
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("refused configure created %s", dir)
		}
	}
	enrolled := writeIdentity(t)
	var out, errb bytes.Buffer
	if code := Main([]string{"configure", "--server", "https://a.example:8443", "--ca-hash", hash, "--state-dir", enrolled}, nil, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "already enrolled") {
		t.Fatalf("enrolled PC without token: exit %d %s %s", code, out.String(), errb.String())
	}
}

// The service's enrollment attempts show in status: the last error and when
// it happened; the log says when it retries as a duration.
func TestStatusShowsLastEnrollError(t *testing.T) {
	old := enrollBackoff
	enrollBackoff = uplink.Backoff{Base: 10 * time.Millisecond, Max: 20 * time.Millisecond}
	defer func() { enrollBackoff = old }()
	hash := "sha256:" + strings.Repeat("ab", 32)

	// A used-up token: the server answers 401.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wire.PathEnroll {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(wire.Error{Error: "enrollment token invalid, expired or used up"})
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	used := uplink.Config{Servers: []string{srv.URL}, Token: "used-token", CAHash: uplink.Fingerprint(srv.Certificate().Raw)}
	// A config without a token (written before configure refused it).
	none := uplink.Config{Servers: []string{closedURL(t)}, CAHash: hash}

	for _, tc := range []struct {
		name string
		c    uplink.Config
		want string
	}{{"used-up token", used, "used up"}, {"no token", none, "no token"}} {
		dir := filepath.Join(t.TempDir(), "state")
		if err := uplink.SaveConfig(dir, tc.c); err != nil {
			t.Fatal(err)
		}
		var logs syncWriter
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- enrollAtStart(ctx, dir, zerolog.New(&logs)) }()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(logs.String(), "enrollment failed") < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no failed attempts logged:\n%s", tc.name, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if !strings.Contains(logs.String(), `"retry_in":"`) {
			t.Errorf("%s: retry_in has no unit: %s", tc.name, logs.String())
		}
		if strings.Contains(logs.String(), "used-token") {
			t.Errorf("%s: the log shows the token", tc.name)
		}
		_, m, stderr := statusJSON(t, dir)
		e, _ := m["last_enroll_error"].(map[string]any)
		if e == nil || !strings.Contains(e["error"].(string), tc.want) || e["at"] == nil {
			t.Fatalf("%s: status lacks the last enrollment error: %v", tc.name, m)
		}
		if !strings.Contains(stderr, tc.want) {
			t.Fatalf("%s: stderr does not name the enrollment error: %q", tc.name, stderr)
		}
		if strings.Contains(stderr, "used-token") {
			t.Errorf("%s: status shows the token", tc.name)
		}
	}
}

// status names the server the agent uses now, after a reconfigure and a
// restart and after a failover, and the list; so does the start-up log.
func TestStatusShowsServerInUse(t *testing.T) {
	dir := writeIdentity(t)
	st, _ := uplink.LoadState(dir)
	hash := "sha256:" + strings.Repeat("ab", 32)
	first, second := closedURL(t), closedURL(t)
	// configure --server NEW on the enrolled PC, then a restart.
	if err := uplink.SaveConfig(dir, uplink.Config{Servers: []string{first, second}, CAHash: hash}); err != nil {
		t.Fatal(err)
	}
	// Not running: status shows the server the service starts with.
	if _, m, _ := statusJSON(t, dir); m["server"] != first {
		t.Fatalf("stopped agent: server %v, want %s (enrolled with %s)", m["server"], first, st.Server)
	}
	var logs syncWriter
	r := newTestRuntime(t, dir, &fakeControl{}, zerolog.New(&logs))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "mamori-agent running") {
		if time.Now().After(deadline) {
			t.Fatal("no start-up line")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "mamori-agent running") && !strings.Contains(line, `"server":"`+first+`"`) {
			t.Errorf("start-up line names another server than %s: %s", first, line)
		}
	}
	r.servers.Failed(first) // failover
	r.writeStatus(true)
	_, m, _ := statusJSON(t, dir)
	list, _ := json.Marshal(m["servers"])
	if m["server"] != second || string(list) != `["`+first+`","`+second+`","`+st.Server+`"]` {
		t.Errorf("after failover: server %v servers %s, want %s of %s,%s,%s", m["server"], list, second, first, second, st.Server)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
