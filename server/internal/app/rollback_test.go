package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
)

// Hole 3: PostgreSQL restored to an older copy under a running server (what
// restoring a dump or promoting an async replica does). The writer finds
// the database behind what it committed: ingest stops with a named reason,
// /healthz is not ready, etcd's checkpoint stays where it was, and the
// agent keeps its unacknowledged events; the next start is refused.
func TestPostgresRestoredUnderRunningServer(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.Schema(t)
	dir := t.TempDir()
	cfg := app.Config{DataDir: dir, Listen: "127.0.0.1:0", EventsDSN: dsn,
		Hostnames: []string{"127.0.0.1", "localhost"}, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)}
	srv, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-rb")
	if _, err := a.send(a.events(50)); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The "dump": a copy of every table of the store as it is now.
	tables := []string{"events", "heads", "checkpoints", "event_spans"}
	for _, tb := range tables {
		if _, err := conn.Exec(ctx, "CREATE TABLE bak_"+tb+" AS TABLE "+tb); err != nil {
			t.Fatal(err)
		}
	}
	// More events, acknowledged, and a checkpoint over them mirrored to etcd
	// (an export signs one).
	if acked, err := a.send(a.events(50)); err != nil || acked != 100 {
		t.Fatalf("acked %d, %v", acked, err)
	}
	if st, _ := adminDownload(t, srv, "/api/v1/export", url.Values{"format": {"bundle"}, "agent": {a.id}}); st != 200 {
		t.Fatalf("export %d", st)
	}
	etcdBefore, err := srv.State().LatestCheckpoint(ctx)
	if err != nil || !strings.Contains(string(etcdBefore), "\n10") {
		t.Fatalf("etcd checkpoint before: %q, %v", etcdBefore, err)
	}

	// Restore the dump, and drop every connection as a failover does.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(tables, ", ")); err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if _, err := tx.Exec(ctx, "INSERT INTO "+tb+" SELECT * FROM bak_"+tb); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`); err != nil {
		t.Fatal(err)
	}

	// The agent's next batch is not acknowledged (it keeps it in its spool)
	// and the server says why it is not ready.
	evs := a.events(10)
	for i := 0; ; i++ {
		_, err := a.send(evs)
		if err == nil {
			t.Fatal("batch acknowledged on a rolled-back database")
		}
		if herr := healthz(t, srv); strings.Contains(herr, "behind the log this server committed") {
			t.Log(herr)
			break
		}
		if i == 20 {
			t.Fatalf("healthz does not report the rollback; last send: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// /readyz, which load balancers probe, says so too.
	if st, body := readyz(t, srv); st != http.StatusServiceUnavailable || !strings.Contains(body, "behind the log this server committed") {
		t.Fatalf("/readyz on a rolled-back writer: %d %s", st, body)
	}
	// A checkpoint now (the checkpointer also ticks) changes nothing in etcd.
	if st, _ := adminDownload(t, srv, "/api/v1/export", url.Values{"format": {"bundle"}, "agent": {a.id}}); st == 200 {
		t.Log("export on a halted store answered 200")
	}
	time.Sleep(600 * time.Millisecond)
	if etcdAfter, err := srv.State().LatestCheckpoint(ctx); err != nil || string(etcdAfter) != string(etcdBefore) {
		t.Fatalf("etcd checkpoint moved:\n%s\nnow\n%s (%v)", etcdBefore, etcdAfter, err)
	}
	if err := srv.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	cfg.Log = zerolog.Nop()
	if _, err := app.Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("restart over the restored database: %v", err)
	}
	// The legitimate path: the admin accepts the loss etcd's checkpoint
	// names; the server starts, records it, and the agent's next events
	// are taken.
	size, err := strconv.ParseInt(strings.Split(string(etcdBefore), "\n")[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AcceptEventLoss = size
	if srv, err = app.Start(ctx, cfg); err != nil {
		t.Fatalf("start accepting the loss of %d: %v", size, err)
	}
	defer srv.Close()
	a.base = srv.URL()
	if h := healthz(t, srv); h != "" {
		t.Fatalf("healthz after the accepted loss: %s", h)
	}
	if _, err := a.send(a.events(5)); err != nil {
		t.Fatalf("ingest after the accepted loss: %v", err)
	}
}

// healthz returns /healthz's body when it is not 200, else "".
func healthz(t *testing.T, srv *app.Server) string {
	t.Helper()
	resp, err := httpsClient(srv.CAPEM(), nil).Get(srv.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		return ""
	}
	var v struct{ Status, Reason string }
	json.Unmarshal(b, &v)
	return v.Status + ": " + v.Reason
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, srv *app.Server) (int, string) {
	t.Helper()
	resp, err := httpsClient(srv.CAPEM(), nil).Get(srv.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
