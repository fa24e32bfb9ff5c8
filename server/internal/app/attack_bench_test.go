package app_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// TestIngestUnderAttack measures a real agent's batch latency on an idle
// server, then while 100 slow-body attackers (50 certificates, from another
// address) hold connections (the target: p99 within 2x of idle), then
// while 8 senders of maximum-size batches join them, and the process's peak
// RSS (server and attackers share it, and share the CPU: the big senders'
// own TLS work is part of the third figure). It runs only with
// MAMORI_ATTACK_BENCH=1 (about 70 s):
//
//	MAMORI_ATTACK_BENCH=1 go test ./server/internal/app -run TestIngestUnderAttack -v
func TestIngestUnderAttack(t *testing.T) {
	if os.Getenv("MAMORI_ATTACK_BENCH") == "" {
		t.Skip("set MAMORI_ATTACK_BENCH=1 to run the attack benchmark")
	}
	const phase = 20 * time.Second
	srv := start(t, t.TempDir())
	defer srv.Close()
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-real")
	// The real agent connects from 127.0.0.2, the attackers from 127.0.0.1.
	tr := a.c.Transport.(*http.Transport)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	tr.DialContext = d.DialContext

	measure := func(d time.Duration) []time.Duration {
		var lat []time.Duration
		for end := time.Now().Add(d); time.Now().Before(end); {
			t0 := time.Now()
			if _, err := a.send(a.events(1)); err != nil {
				t.Fatalf("real agent: %v", err)
			}
			lat = append(lat, time.Since(t0))
			time.Sleep(20 * time.Millisecond)
		}
		return lat
	}
	sorted := func(l []time.Duration) []time.Duration {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		return l
	}
	pct := func(l []time.Duration, p float64) time.Duration { return l[int(float64(len(l)-1)*p)] }

	var certs []*tls.Config
	for i := range 54 {
		certs = append(certs, agentTLS(enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), fmt.Sprintf("pc-evil-%d", i))))
	}
	// Idle and slow-body windows alternate, so that other work on a shared
	// machine weighs on both sides of the ratio alike.
	answered := make(chan string, 4000)
	var idle, slow []time.Duration
	for range 4 {
		idle = append(idle, measure(phase/4)...)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Add(1)
			go slowBody(t, srv.Addr(), certs[i%50], 5*time.Second, stop, answered, &wg)
		}
		time.Sleep(time.Second)
		slow = append(slow, measure(phase/4)...)
		close(stop)
		wg.Wait()
	}
	idle, slow = sorted(idle), sorted(slow)
	early := len(answered)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go slowBody(t, srv.Addr(), certs[i%50], 5*time.Second, stop, answered, &wg)
	}
	// Maximum-size batches: 16 MiB of JSON, 1000 events, refused by the
	// store after decoding (their hashes do not match), sent again and again.
	big := make([]event.Event, wire.MaxBatchEvents)
	for i := range big {
		big[i] = event.Event{Agent: "x", Seq: uint64(i + 1), Time: time.Now(), Control: "fileaccess", Type: "file.modified",
			Severity: event.Info, User: strings.Repeat("u", 4000), Process: strings.Repeat("p", 4000), Object: strings.Repeat("o", 4000),
			Attrs: event.Attrs{"pad": strings.Repeat("a", 4000)}, Hash: strings.Repeat("0", 64)}
	}
	body, _ := json.Marshal(wire.Batch{Events: big})
	body = body[:min(len(body), wire.MaxBatchBody)]
	var bigSent atomic.Int64
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := httpsClient(srv.CAPEM(), &certs[50+i%4].Certificates[0])
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Post(srv.URL()+wire.PathEvents, "application/json", bytes.NewReader(body))
				if err == nil {
					resp.Body.Close()
					bigSent.Add(1)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	attacked := sorted(measure(phase))
	close(stop)
	wg.Wait()
	status, _ := os.ReadFile("/proc/self/status")
	hwm := ""
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM") {
			hwm = strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	t.Logf("idle:     %d batches, p50 %v, p99 %v", len(idle), pct(idle, .5), pct(idle, .99))
	t.Logf("100 slow bodies: %d batches, p50 %v, p99 %v (ratio p99 %.2fx); %d of 400 slow bodies answered early (429)",
		len(slow), pct(slow, .5), pct(slow, .99), float64(pct(slow, .99))/float64(pct(idle, .99)), early)
	t.Logf("slow bodies + 8 max-size senders: %d batches, p50 %v, p99 %v (ratio p99 %.2fx); %d max-size batches sent",
		len(attacked), pct(attacked, .5), pct(attacked, .99), float64(pct(attacked, .99))/float64(pct(idle, .99)), bigSent.Load())
	t.Logf("peak RSS of the process (server and attackers): %s", hwm)
}
