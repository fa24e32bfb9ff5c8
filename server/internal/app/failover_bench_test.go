//go:build unix

package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/keyring"
)

// TestFailoverBench measures failover time for the note in
// docs/high-availability.md: three server processes on one etcd and
// PostgreSQL while agents ship; the writer is SIGKILLed 10 times, each
// time restarted as a standby, and the time from the kill until another
// node answers /readyz?role=writer is reported (median and worst). Opt-in
// (MAMORI_FAILOVER_BENCH=1): it runs for about two minutes.
func TestFailoverBench(t *testing.T) {
	if os.Getenv("MAMORI_FAILOVER_BENCH") != "1" {
		t.Skip("set MAMORI_FAILOVER_BENCH=1 to measure failover time over 10 kills")
	}
	const kills = 10
	dsn := pgtest.Start(t).Schema(t)
	ctx := context.Background()
	_, members := etcdCluster(t) // 3 members, as a site runs it
	etcd := strings.Join(members, ",")
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	kek := keyring.NewKEKText()
	nodes := []*node{startNode(t, "n1", dirs[0], etcd, dsn, kek, false)}
	for i := 1; i < 3; i++ {
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i+1), dirs[i], etcd, dsn, kek, true))
	}
	caPEM := readFile(t, filepath.Join(dirs[0], app.FileCA))
	token := strings.TrimSpace(string(readFile(t, filepath.Join(dirs[0], app.FileEnrollToken))))
	w := waitWriter(t, caPEM, 10*time.Second, nodes...)

	var urlMu sync.Mutex
	urls := func() []string {
		urlMu.Lock()
		defer urlMu.Unlock()
		out := make([]string, len(nodes))
		for i, n := range nodes {
			out[i] = n.url
		}
		return out
	}
	fl := ship(t, 4, w.url, token, caPEM, urls)
	progress := func() { t.Helper(); fl.progress(t, "") }
	progress()
	var took []time.Duration
	for k := 0; k < kills; k++ {
		w := waitWriter(t, caPEM, 10*time.Second, nodes...)
		others := slices.DeleteFunc(slices.Clone(nodes), func(n *node) bool { return n == w })
		if err := w.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		nw := waitWriter(t, caPEM, 10*time.Second, others...)
		took = append(took, time.Since(t0))
		t.Logf("kill %d: %s killed, %s writer after %.2fs", k+1, w.name, nw.name, took[k].Seconds())
		w.cmd.Wait()
		progress()
		// Restart the killed node as a standby (a new port: the agents'
		// list follows).
		os.Remove(filepath.Join(w.dir, "url"))
		i := slices.Index(nodes, w)
		r := startNode(t, w.name, w.dir, etcd, dsn, kek, i > 0)
		urlMu.Lock()
		nodes[i] = r
		urlMu.Unlock()
	}
	fl.halt()
	store, err := eventlog.OpenPostgres(ctx, dsn, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for i, c := range fl.clients {
		h, err := store.Head(ctx, c.id)
		if err != nil {
			t.Fatal(err)
		}
		if h.Seq < fl.acked[i].Load() {
			t.Errorf("agent %d: acked %d, stored head %d", i, fl.acked[i].Load(), h.Seq)
		}
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	median := (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	t.Logf("failover over %d SIGKILLs of the writer: median %.2fs, worst %.2fs, best %.2fs; %d events acked, none lost",
		kills, median.Seconds(), sorted[len(sorted)-1].Seconds(), sorted[0].Seconds(), fl.total.Load())
}
