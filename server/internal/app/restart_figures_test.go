package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
)

// TestRestartReadyFigures measures a whole server's restart on a store of
// MAMORI_RESTART_EVENTS events (skipped when unset): from app.Start to
// /readyz 200 and an agent's first batch acknowledged, after a clean
// shutdown (the verified mark covers the log). The events are appended to
// the server's own store directly, 100 agents' chains, which is faster
// than ingest over HTTPS.
//
//	MAMORI_RESTART_EVENTS=300000 go test ./server/internal/app -run TestRestartReadyFigures -v
func TestRestartReadyFigures(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("MAMORI_RESTART_EVENTS"))
	if total <= 0 {
		t.Skip("set MAMORI_RESTART_EVENTS (e.g. 300000) to measure")
	}
	// From the mark at any size, so small and large stores compare.
	defer func(n int64) { audit.FullCheckBelow = n }(audit.FullCheckBelow)
	audit.FullCheckBelow = 0
	ctx := context.Background()
	dir := t.TempDir()
	srv := start(t, dir)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	st, err := eventlog.OpenSQLite(ctx, filepath.Join(dir, app.FileEvents), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := st.StoredEpoch(ctx) // the server's own, so its next start claims as usual
	if err == nil {
		err = st.ClaimEpoch(ctx, epoch)
	}
	if err != nil {
		t.Fatal(err)
	}
	const agents, batch = 100, 500
	for n := 0; n < total; n += agents * batch {
		for a := range agents {
			id := fmt.Sprintf("pc-%03d", a)
			h, _ := st.Head(ctx, id)
			if _, err := st.Append(ctx, id, storetest.Chain(id, h.Seq+1, batch, h.Hash)); err != nil {
				t.Fatal(err)
			}
		}
	}
	size, _ := st.TreeSize(ctx)
	st.Close()
	t.Logf("filled %d events in %s", size, time.Since(began).Round(time.Millisecond))

	// The first start checks the new events in full and signs a mark; the
	// clean shutdown signs one of the final checkpoint.
	w0 := time.Now()
	srv = start(t, dir)
	t.Logf("first start (checks the %d new events): %s", size, time.Since(w0).Round(time.Millisecond))
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		w0 = time.Now()
		srv = start(t, dir)
		started := time.Since(w0)
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			if st, _ := readyz(t, srv); st == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("not ready within a minute")
			}
		}
		ready := time.Since(w0)
		a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-new-"+strconv.Itoa(i))
		if _, err := a.send(a.events(1)); err != nil {
			t.Fatal(err)
		}
		t.Logf("restart %d of a %d-event store: app.Start %s, /readyz 200 after %s, first batch acked after %s",
			i+1, size, started.Round(time.Millisecond), ready.Round(time.Millisecond), time.Since(w0).Round(time.Millisecond))
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
