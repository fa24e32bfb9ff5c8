package app_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

func startErr(dir string) (*app.Server, error) {
	return app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1", "localhost"}, Log: zerolog.Nop()})
}

// The start-up check uses etcd's copy of the latest checkpoint, which lives
// apart from the event store: an untouched restart starts; a store cut back
// to an older checkpoint (newest events and checkpoint rows deleted, heads
// fixed up, so it agrees with itself) or a deleted events.db is refused,
// naming both sizes.
func TestStartRefusesStoreBehindEtcd(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir)
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-a")
	if _, err := a.send(a.events(40)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil { // signs and mirrors a final checkpoint
		t.Fatal(err)
	}

	// Untouched: starts, and the agent carries on.
	srv = start(t, dir)
	a.base = srv.URL()
	if _, err := a.send(a.events(40)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	// Cut the store back to the checkpoint before the newest one.
	db, err := sql.Open("sqlite", filepath.Join(dir, app.FileEvents))
	if err != nil {
		t.Fatal(err)
	}
	var newest, keep int64
	var root []byte
	if err := db.QueryRow(`SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1`).Scan(&newest, &root); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT max(size) FROM checkpoints WHERE size < ? AND size > 0`, newest).Scan(&keep); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, stmt := range []string{
		`DELETE FROM events WHERE idx >= ?`,
		`DELETE FROM checkpoints WHERE size > ?`,
		`UPDATE heads SET seq = (SELECT max(seq) FROM events e WHERE e.agent = heads.agent),
			hash = (SELECT hash FROM events e WHERE e.agent = heads.agent ORDER BY seq DESC LIMIT 1),
			events = (SELECT count(*) FROM events e WHERE e.agent = heads.agent)`,
		`DELETE FROM heads WHERE seq IS NULL`,
	} {
		if _, err := eventlog.TamperSQL(context.Background(), filepath.Join(dir, app.FileEvents), stmt, keep); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}

	// On its own the cut store looks intact: only etcd's copy shows the loss.
	v, err := note.NewVerifier(strings.TrimSpace(string(readFile(t, filepath.Join(dir, app.FileLogKeyPub)))))
	if err != nil {
		t.Fatal(err)
	}
	st, err := eventlog.OpenSQLite(context.Background(), filepath.Join(dir, app.FileEvents), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyLog(context.Background(), st, v, zerolog.Nop()); err != nil {
		t.Fatalf("the cut store should agree with itself: %v", err)
	}
	st.Close()

	var etcdRoot tlog.Hash
	copy(etcdRoot[:], root)
	wantSizes := func(have int64) string {
		return "the event store has " + strconv.FormatInt(have, 10) + " events, the latest signed checkpoint in etcd covers " +
			strconv.FormatInt(newest, 10) + " (root " + etcdRoot.String() + ")"
	}
	_, err = startErr(dir)
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), wantSizes(keep)) ||
		!strings.Contains(err.Error(), "Restore the event store") {
		t.Fatalf("restart over a cut store (kept %d of %d): %v", keep, newest, err)
	}
	t.Log(err)

	// events.db deleted: a new empty store would start from nothing.
	for _, f := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(dir, app.FileEvents+f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	_, err = startErr(dir)
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), wantSizes(0)) {
		t.Fatalf("restart without events.db: %v", err)
	}
}

// A data dir whose etcd has no checkpoint (a new etcd beside an existing
// store) starts, and etcd gets the store's checkpoint at once, so deleting
// events.db afterwards is caught on the next start.
func TestStartSeedsNewEtcd(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir)
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-a")
	if _, err := a.send(a.events(10)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "etcd")); err != nil {
		t.Fatal(err)
	}
	srv = start(t, dir)
	if cp, err := srv.State().LatestCheckpoint(context.Background()); err != nil || !strings.Contains(string(cp), "\n") {
		t.Fatalf("etcd not seeded: %q %v", cp, err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, app.FileEvents)); err != nil {
		t.Fatal(err)
	}
	if _, err := startErr(dir); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("restart without events.db: %v", err)
	}
}

// An admin who restored events.db from an old backup (here: lost it) can
// start once by naming the size of etcd's checkpoint; any other number is
// refused, the loss is a violation event in the log, and the next plain
// start is clean.
func TestAcceptEventLoss(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir)
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-a")
	if _, err := a.send(a.events(30)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	var covered int64
	{
		db, err := sql.Open("sqlite", filepath.Join(dir, app.FileEvents))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(`SELECT max(size) FROM checkpoints`).Scan(&covered); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	for _, f := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(dir, app.FileEvents+f))
	}
	want := "--accept-event-loss " + strconv.FormatInt(covered, 10)
	if _, err := startErr(dir); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("refusal does not name %q: %v", want, err)
	}
	cfg := app.Config{DataDir: dir, Listen: "127.0.0.1:0", Hostnames: []string{"127.0.0.1"}, Log: zerolog.Nop(),
		AcceptEventLoss: covered + 1}
	if _, err := app.Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "does not name") {
		t.Fatalf("a wrong size was accepted: %v", err)
	}
	cfg.AcceptEventLoss = covered
	srv, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("accepting the named loss: %v", err)
	}
	var q queried
	if st := adminGet(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/api/v1/events",
		url.Values{"type": {app.TypeEventLossAccepted}}, &q); st != 200 || len(q.Events) != 1 {
		t.Fatalf("loss event: %d %+v", st, q.Events)
	}
	if e := q.Events[0]; e.Severity != event.Violation || fmt.Sprint(e.Attrs["lost_events"]) != strconv.FormatInt(covered, 10) {
		t.Fatalf("loss event %+v", e)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if srv, err = startErr(dir); err != nil {
		t.Fatalf("plain start after the accepted loss: %v", err)
	}
	srv.Close()
}

// Hole 1 as an insider does it: stop the server, clear a recent event's
// payload with SQL so it reads as pruned, start. Start-up refuses, naming
// the event, both when it checks every event and when it starts from the
// verified mark (the pruned-rows index).
func TestStartRefusesHandPrunedRow(t *testing.T) {
	for name, full := range map[string]int64{"full check": audit.FullCheckBelow, "from the verified mark": 0} {
		t.Run(name, func(t *testing.T) {
			defer func(n int64) { audit.FullCheckBelow = n }(audit.FullCheckBelow)
			audit.FullCheckBelow = full
			dir := t.TempDir()
			srv := start(t, dir)
			a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-a")
			if _, err := a.send(a.events(30)); err != nil {
				t.Fatal(err)
			}
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
			n, err := eventlog.TamperSQL(context.Background(), filepath.Join(dir, app.FileEvents),
				`UPDATE events SET control = NULL, type = NULL, severity = NULL, user = NULL, process = NULL,
				object = NULL, register_id = NULL, attrs = NULL WHERE agent = ? AND seq = 7`, a.id)
			if err != nil || n != 1 {
				t.Fatalf("clear: %v %d", err, n)
			}
			_, err = startErr(dir)
			if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "seq 7") ||
				!strings.Contains(err.Error(), "cleared by hand") {
				t.Fatalf("start over a hand-pruned row: %v", err)
			}
		})
	}
}

// A new etcd beside a store with signed checkpoints (etcd's directory
// wiped, or a store carried to a new server) leaves start-up nothing to
// hold the store to: a store cut back along with it starts as if whole.
// That the check could not run is recorded, for the log, 概要 and alerts.
func TestStartWithoutEtcdsCheckpointCopyIsRecorded(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir)
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-a")
	if _, err := a.send(a.events(5)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "etcd")); err != nil {
		t.Fatal(err)
	}
	srv, err := startErr(dir)
	if err != nil {
		t.Fatalf("start with a new etcd: %v", err)
	}
	defer srv.Close()
	var q queried
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st := adminGet(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/api/v1/events",
			url.Values{"type": {app.TypeCheckpointCopyMissing}}, &q); st == 200 && len(q.Events) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event: %+v", app.TypeCheckpointCopyMissing, q.Events)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if e := q.Events[0]; e.Severity != event.Warning || fmt.Sprint(e.Attrs["checkpoint_events"]) == "0" {
		t.Fatalf("event %+v", e)
	}
	// The next start has etcd's copy again: nothing more is recorded.
	srv.Close()
	if srv, err = startErr(dir); err != nil {
		t.Fatal(err)
	}
	if adminGet(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/api/v1/events",
		url.Values{"type": {app.TypeCheckpointCopyMissing}}, &q); len(q.Events) != 1 {
		t.Errorf("%d events after a normal start, want still 1", len(q.Events))
	}
}
