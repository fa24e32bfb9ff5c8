package app_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/wire"
)

// BenchmarkIngest is the end-to-end load generator: 32 agents, each with
// its own client certificate and connection, send batches of 500 sealed
// events over HTTPS to a real server (TLS 1.3 + JSON decode + validation
// and chain check + SQLite group commit). One b.N is one batch. Bodies are
// encoded before the timer starts, so the figure is the server's (client
// TLS and HTTP still share the CPU). Reports events/s and p50/p99 batch
// ack latency.
//
// "saturate": every agent sends its next batch as soon as the last is
// acked, which measures capacity (latency there is mostly queueing: 32
// batches in flight). "paced-N": agents together offer N events/s, spread
// evenly, which measures ack latency at that load.
//
//	go test -run '^$' -bench Ingest -benchtime 400x ./server/internal/app/
func BenchmarkIngest(b *testing.B) {
	b.Run("saturate", func(b *testing.B) { benchIngest(b, 0) })
	b.Run("paced-10k", func(b *testing.B) { benchIngest(b, 10000) })
	b.Run("paced-20k", func(b *testing.B) { benchIngest(b, 20000) })
	if r, _ := strconv.Atoi(os.Getenv("MAMORI_BENCH_RATE")); r > 0 { // events/s
		b.Run(fmt.Sprintf("paced-%d", r), func(b *testing.B) { benchIngest(b, r) })
	}
}

func benchIngest(b *testing.B, rate int) {
	const agents, batch = 32, 500
	var interval time.Duration // between one agent's batches
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * agents * batch / float64(rate))
	}
	srv := start(b, b.TempDir())
	defer srv.Close()
	clients := make([]*agentClient, agents)
	for i := range clients {
		clients[i] = enroll(b, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), fmt.Sprintf("pc-%02d", i))
		if _, err := clients[i].send(clients[i].events(1)); err != nil { // warm the connection
			b.Fatal(err)
		}
	}
	per := (b.N + agents - 1) / agents
	bodies := make([][][]byte, agents)
	for i, c := range clients {
		for range per {
			j, _ := json.Marshal(wire.Batch{Events: c.events(batch)})
			bodies[i] = append(bodies[i], j)
		}
	}
	var next atomic.Int64
	lat := make([][]time.Duration, agents)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			due := start.Add(interval * time.Duration(i) / agents) // stagger the agents
			for _, body := range bodies[i] {
				if next.Add(1) > int64(b.N) {
					return
				}
				if interval > 0 {
					time.Sleep(time.Until(due))
					due = due.Add(interval)
				}
				t0 := time.Now()
				st, resp, err := c.post(body, nil)
				if err != nil || st != 200 {
					b.Errorf("agent %d: %d %s %v", i, st, resp, err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all)*batch)/el.Seconds(), "events/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[(len(all)*99)/100].Microseconds())/1000, "p99-ms")
}
