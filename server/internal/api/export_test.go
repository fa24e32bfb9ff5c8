package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/wire"
)

// recEvidence records the filter and query of each export.
type recEvidence struct {
	mu    sync.Mutex
	f     Filter
	query map[string]string
}

func (r *recEvidence) Checkpoint(ctx context.Context) (CheckpointView, error) {
	return CheckpointView{}, nil
}

func (r *recEvidence) Bundle(ctx context.Context, w io.Writer, f Filter, since int64, query map[string]string) (ExportSummary, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.f, r.query = f, query
	_, err := io.WriteString(w, "{}\n")
	return ExportSummary{}, err
}

func (r *recEvidence) CSV(ctx context.Context, w io.Writer, f Filter, lang string, loc *time.Location) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.f, r.query = f, nil
	return 0, nil
}

func newExportEnv(t *testing.T, ev Evidence) *env {
	t.Helper()
	e := &env{t: t, store: newMemStore(), state: newMemState(), ca: newTestCA("test CA")}
	var err error
	e.api, err = New(Config{Store: e.store, State: e.state, CA: e.ca, AgentID: cnAgentID, NewAgentID: newTestAgentID,
		Evidence: ev, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(e.api.Handler())
	e.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: e.ca.pool()}
	e.srv.StartTLS()
	t.Cleanup(func() { e.srv.Close(); e.api.Close() })
	e.roots = x509.NewCertPool()
	e.roots.AddCert(e.srv.Certificate())
	e.admin = "admin-secret"
	e.state.api[e.admin] = APIToken{ID: "a1", Name: "admin", Role: RoleAdmin}
	e.enroll, _, _ = e.state.CreateEnrollToken(context.Background(), time.Hour, 100, "admin")
	return e
}

// An export's agent= may be a host name, as in the web UI: it is resolved
// to the agent's id when exactly one agent has that name. An agent that is
// neither, or an unknown control, is refused (400) instead of giving a
// bundle of nothing that verifies OK.
func TestExportResolvesAgentAndRefusesUnknown(t *testing.T) {
	ev := &recEvidence{}
	e := newExportEnv(t, ev)
	vm := e.enrollAgent("vm")
	d1, d2 := e.enrollAgent("dup"), e.enrollAgent("dup")
	// An agent no longer enrolled whose events are in the log.
	gone := e.enrollAgent("old-pc")
	if st := e.doJSON(gone.c, "POST", wire.PathEvents, "", wire.Batch{Events: gone.events(1)}, nil); st != http.StatusOK {
		t.Fatalf("ingest: %d", st)
	}
	e.state.mu.Lock()
	delete(e.state.agents, gone.id)
	e.state.mu.Unlock()

	export := func(q string) (int, string) {
		t.Helper()
		st, b, err := e.do(e.client(nil), "GET", "/api/v1/export?"+q, e.admin, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st >= 400 {
			var we wire.Error
			if err := json.Unmarshal(b, &we); err != nil {
				t.Fatalf("%s: %d %s", q, st, b)
			}
			return st, we.Error
		}
		return st, string(b)
	}
	for q, want := range map[string]string{
		"format=bundle&agent=vm":            vm.id,
		"format=bundle&agent=VM":            vm.id,
		"format=csv&agent=vm":               vm.id,
		"format=bundle&agent=" + vm.id:      vm.id,
		"format=bundle&agent=" + gone.id:    gone.id,
		"format=bundle&agent=server":        "server",
		"format=bundle&control=fileaccess":  "",
		"format=bundle&agent=vm&type=x.y.z": vm.id,
	} {
		if st, body := export(q); st != http.StatusOK {
			t.Errorf("%s: %d %s", q, st, body)
			continue
		}
		ev.mu.Lock()
		f, query := ev.f, ev.query
		ev.mu.Unlock()
		if f.Agent != want || (strings.HasPrefix(q, "format=bundle") && query["agent"] != want && want != "") {
			t.Errorf("%s: filter agent %q, query %v, want %q", q, f.Agent, query, want)
		}
	}
	for q, want := range map[string][]string{
		"format=bundle&agent=nosuch":      {"agent: \"nosuch\" is neither an agent id nor the host name of an agent"},
		"format=csv&agent=nosuch":         {"neither an agent id nor the host name"},
		"format=bundle&agent=dup":         {"several agents", d1.id, d2.id},
		"format=bundle&control=fileacess": {"control: unknown control \"fileacess\"", "fileaccess"},
	} {
		st, body := export(q)
		if st != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, st, body)
			continue
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: no %q in %s", q, w, body)
			}
		}
	}
}
