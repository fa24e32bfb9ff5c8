package app_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
)

// TestServerOnPostgres runs the evidence path of the SQLite default on the
// PostgreSQL event store: mTLS ingest, query, a signed checkpoint, a bundle
// that verifies offline and a restart that keeps everything; then a row
// edited in PostgreSQL: the export fails to verify and a restart is refused.
func TestServerOnPostgres(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.Schema(t)
	dir := t.TempDir()
	cfg := app.Config{DataDir: dir, Listen: "127.0.0.1:0", EventsDSN: dsn,
		Hostnames: []string{"127.0.0.1", "localhost"}, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	srv, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-pg")
	for range 3 {
		if _, err := a.send(a.events(100)); err != nil {
			t.Fatal(err)
		}
	}
	if got := allEvents(t, srv, a.id); len(got) != 300 || got[299].Seq != 300 {
		t.Fatalf("query back: %d events", len(got))
	}
	var cp struct {
		Size       int64  `json:"size"`
		Checkpoint string `json:"checkpoint"`
	}
	// The checkpointer signs at once when the log first grows, then every
	// 10 s: the first one may predate the last batches.
	for i := 0; ; i++ {
		if st := adminGet(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/api/v1/checkpoint", nil, &cp); st == 200 && cp.Size >= 300 {
			break
		} else if i == 150 {
			t.Fatalf("checkpoint: %d %+v", st, cp)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, bundle := adminDownload(t, srv, "/api/v1/export", url.Values{"format": {"bundle"}, "agent": {a.id}})
	// The PC's 300 events and its enrollment, the server's record about it.
	if rep := verifyBundle(t, dir, bundle, []byte(cp.Checkpoint)); st != 200 || !rep.OK() || rep.Events != 301 {
		t.Fatalf("export %d: %+v %v", st, rep, rep.Problems)
	}

	// A restart on the same database keeps every event and verifies on start.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if srv, err = app.Start(context.Background(), cfg); err != nil {
		t.Fatalf("restart: %v", err)
	}
	a.base = srv.URL() // a new port; same CA, same client certificate
	if _, err := a.send(a.events(10)); err != nil {
		t.Fatal(err)
	}
	if got := allEvents(t, srv, a.id); len(got) != 310 {
		t.Fatalf("after restart: %d events", len(got))
	}

	// Someone edits a stored event in the database.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := conn.Exec(ctx, `UPDATE events SET object = 'D:\改ざん' WHERE agent = $1 AND seq = 7`, a.id)
	conn.Close(ctx)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("tamper: %v %v", err, tag)
	}
	st, bundle = adminDownload(t, srv, "/api/v1/export", url.Values{"format": {"bundle"}, "agent": {a.id}})
	if rep := verifyBundle(t, dir, bundle, nil); st != 200 || rep.OK() || !strings.Contains(rep.Problems[0].String(), "seq 7") {
		t.Fatalf("tampered export: %d %v", st, rep.Problems)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Log = zerolog.Nop()
	if _, err := app.Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "seq 7") {
		t.Fatalf("restart over a tampered store: %v", err)
	}
}
