package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mamori/mamori/shared/wire"
)

// policyWait is the agent's long-poll wait (uplink.PolicyWait).
const policyWait = 55 * time.Second

// simAgent is one simulated agent: one transport, so with HTTP/2 the
// shipping and the long-poll share one connection, as the agent's do.
type simAgent struct {
	id       identity
	src      *eventSource
	ship     *http.Client
	poll     *http.Client
	transprt *http.Transport
	// ready are batches built before the clock started, sent in order.
	ready []batch
}

// stats are the run's counters, shared by every goroutine.
type stats struct {
	mu        sync.Mutex
	latencies []time.Duration

	events, batches atomic.Int64
	busy            atomic.Int64 // 503 answers (admission control)
	refused         atomic.Int64 // other non-200 answers
	timeouts        atomic.Int64
	errs            atomic.Int64
	lastErr         atomic.Value // string

	polls, pollErrs atomic.Int64
	lastPollErr     atomic.Value // string
	woken           atomic.Int64
	wakeLast        atomic.Int64 // unix nanos of the last long-poll that got the changed policy

	proto atomic.Value // string: the protocol the server answered batches with

	prebuilt  int           // batches built before the clock
	prebuild  time.Duration // how long that took
	builtLate atomic.Int64  // batches built while shipping, past the prebuilt

	rawOpened, rawFailed, rawShed, rawHeld atomic.Int64

	healthOK, healthFail atomic.Int64
	healthMax            atomic.Int64 // nanos
}

func (s *stats) fail(err error) {
	s.errs.Add(1)
	s.lastErr.Store(err.Error())
}

func run(ctx context.Context, cfg *config) (*report, error) {
	serverURL, batchEncoding = cfg.server, cfg.encoding
	roots, err := loadRoots(cfg.caFile)
	if err != nil {
		return nil, err
	}
	var ids []identity
	if cfg.agents > 0 {
		if ids, err = enrollAll(ctx, cfg, roots, cfg.agents); err != nil {
			return nil, err
		}
	}
	agents := make([]*simAgent, len(ids))
	for i, id := range ids {
		cert, err := tls.X509KeyPair([]byte(id.Cert), []byte(id.Key))
		if err != nil {
			return nil, fmt.Errorf("loadgen: identity %s: %w", id.ID, err)
		}
		t := roots.transport(&cert, cfg.h1)
		agents[i] = &simAgent{id: id, src: newEventSource(id.ID, id.Seq, id.Prev, uint64(i)+1), transprt: t,
			ship: &http.Client{Timeout: cfg.timeout, Transport: t},
			poll: &http.Client{Timeout: policyWait + 30*time.Second, Transport: t}}
	}
	st := &stats{}
	rep := &report{}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := prebuild(runCtx, cfg, agents, st); err != nil {
		return nil, err
	}

	// The baseline before any agent connects: what the connections cost is
	// measured from here.
	rep.baseline, _ = readProc(cfg.pid)
	var bg sync.WaitGroup
	// Long-polls first: the steady state of an office is every agent holding one.
	var polled sync.WaitGroup
	if cfg.longPoll {
		polled.Add(len(agents))
		t0 := time.Now()
		for i, a := range agents {
			bg.Add(1)
			go func() {
				defer bg.Done()
				at := t0.Add(cfg.connectOver * time.Duration(i) / time.Duration(len(agents)))
				if !sleepUntil(runCtx, at) {
					polled.Done()
					return
				}
				a.longPoll(runCtx, cfg, st, &polled)
			}()
		}
		waitOrCtx(runCtx, &polled)
	}
	var rawConns []net.Conn
	if cfg.raw > 0 {
		rawConns = openRaw(runCtx, cfg, roots, st)
	}

	rep.before, rep.beforeErr = readProc(cfg.pid)
	selfBefore, _ := readProc(0)
	bg.Add(1)
	go func() { defer bg.Done(); sample(runCtx, cfg, roots, st, rep) }()

	start := time.Now()
	deadline := start.Add(cfg.duration)
	var policyAt atomic.Int64
	if cfg.policyChange > 0 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			select {
			case <-time.After(cfg.policyChange):
			case <-runCtx.Done():
				return
			}
			policyAt.Store(time.Now().UnixNano())
			if err := changePolicy(runCtx, cfg, roots); err != nil {
				st.fail(err)
			}
		}()
	}
	var ships sync.WaitGroup
	if cfg.rate > 0 || len(agents) > 0 {
		interval := shipInterval(cfg, len(agents))
		for i, a := range agents {
			ships.Add(1)
			go func() {
				defer ships.Done()
				first := start.Add(interval * time.Duration(i) / time.Duration(max(1, len(agents))))
				a.shipLoop(runCtx, cfg, st, first, interval, deadline)
			}()
		}
	}
	select {
	case <-time.After(time.Until(deadline)):
	case <-ctx.Done():
	}
	rep.after, rep.afterErr = readProc(cfg.pid)
	selfAfter, _ := readProc(0)
	rep.elapsed = time.Since(start)
	ships.Wait() // in-flight batches finish (bounded by --timeout)
	if cfg.pid > 0 && st.events.Load() > 0 {
		// What the server does behind the ack (the query indexes) is part
		// of an event's cost: wait for it, then read the CPU again.
		if rep.indexedIn, rep.indexedErr = waitIndexed(ctx, roots); rep.indexedErr == nil {
			rep.indexed, rep.indexedErr = readProc(cfg.pid)
		}
	}
	cancel()
	bg.Wait()
	rep.rawHeldAtEnd = countHeld(rawConns, st)
	rep.selfCPU = time.Duration(selfAfter.CPUTicks-selfBefore.CPUTicks) * time.Second / ticksPerSecond
	rep.stats = st
	if at := policyAt.Load(); at > 0 && st.wakeLast.Load() > 0 {
		rep.wake = time.Duration(st.wakeLast.Load() - at)
	}
	rep.longPolls = len(agents)
	if !cfg.longPoll {
		rep.longPolls = 0
	}
	for _, a := range agents {
		a.transprt.CloseIdleConnections()
	}
	// The chain heads (and any batch still pending) go back to the cache,
	// so the next run continues every chain.
	if err := saveIdentities(cfg.idsFile, keepHeads(agents)); err != nil {
		return nil, err
	}
	return rep, nil
}

func waitOrCtx(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// shipInterval is how often each of agents sends a batch to offer
// cfg.rate events/s together; 0 when the run saturates.
func shipInterval(cfg *config, agents int) time.Duration {
	if cfg.rate <= 0 {
		return 0
	}
	return max(time.Duration(float64(time.Second)*float64(agents*cfg.batch)/float64(cfg.rate)), 1)
}

// shipLoop sends batches until the deadline: paced every interval, or back
// to back when interval is 0. A batch not acked is sent again (after
// Retry-After, or a second), as the agent's shipper does; one still not
// acked at the end stays pending in the identity cache and is sent first
// by the next run, as the agent's spool would.
func (a *simAgent) shipLoop(ctx context.Context, cfg *config, st *stats, due time.Time, interval time.Duration, deadline time.Time) {
	if p := a.id.Pending; len(p) > 0 {
		if !a.sendUntilAcked(ctx, st, p, a.id.PendingN, a.id.PendingLast, deadline) {
			return
		}
		a.id.Pending, a.id.PendingN, a.id.PendingLast = nil, 0, 0
	}
	for {
		if interval > 0 {
			if due.After(deadline) {
				return
			}
			if !sleepUntil(ctx, due) {
				return
			}
			due = due.Add(interval)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		var b batch
		if len(a.ready) > 0 {
			b, a.ready = a.ready[0], a.ready[1:]
		} else {
			var err error
			if b, err = a.src.nextBatch(cfg.batch); err != nil {
				st.fail(err)
				return
			}
			st.builtLate.Add(1)
		}
		if !a.sendUntilAcked(ctx, st, b.body, b.n, b.last, deadline) {
			a.id.Pending, a.id.PendingN, a.id.PendingLast = b.body, b.n, b.last
			return
		}
	}
}

// keepHeads returns the agents' identities with their chain heads as the
// run left them. Batches built and never sent are dropped: the chain
// continues before them.
func keepHeads(agents []*simAgent) []identity {
	keep := make([]identity, len(agents))
	for i, a := range agents {
		a.id.Seq, a.id.Prev = a.src.seq, a.src.prev
		if len(a.ready) > 0 {
			a.id.Seq, a.id.Prev = a.ready[0].seq0, a.ready[0].prev0
		}
		keep[i] = a.id
	}
	return keep
}

// Batches are built before the clock starts, so that sealing, JSON and
// gzip (about 13 µs of CPU an event) do not take the server's cores while
// it is measured: real agents build theirs on their own PCs.
const (
	// prebuildMax bounds the events built ahead (about 150 bytes each once
	// gzip'd); a longer run builds the rest while it ships, and says so.
	prebuildMax = 3_000_000
	// saturateAhead: a saturating run gets batches for this many events/s,
	// above what the server has been measured to take.
	saturateAhead = 150_000
)

// batchesAhead is how many batches each agent builds before the clock:
// every one a paced run will send, or saturateAhead's worth.
func batchesAhead(cfg *config, agents int) int {
	if agents == 0 {
		return 0
	}
	var n int
	if interval := shipInterval(cfg, agents); interval > 0 {
		n = int(cfg.duration/interval) + 1
	} else {
		n = int(math.Ceil(saturateAhead * cfg.duration.Seconds() / float64(agents*cfg.batch)))
	}
	return min(max(n, 1), prebuildMax/(agents*cfg.batch))
}

// prebuild fills every agent's ready batches, on all cores.
func prebuild(ctx context.Context, cfg *config, agents []*simAgent, st *stats) error {
	per := batchesAhead(cfg, len(agents))
	t0 := time.Now()
	next := make(chan *simAgent)
	errs := make(chan error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range next {
				a.ready = make([]batch, 0, per)
				for range per {
					b, err := a.src.nextBatch(cfg.batch)
					if err != nil {
						errs <- err
						return
					}
					a.ready = append(a.ready, b)
				}
			}
		}()
	}
	var err error
feed:
	for _, a := range agents {
		select {
		case next <- a:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return fmt.Errorf("loadgen: building batches: %w", err)
	}
	st.prebuilt, st.prebuild = per*len(agents), time.Since(t0)
	return nil
}

// sendUntilAcked posts body until it is acked (true) or the deadline comes.
func (a *simAgent) sendUntilAcked(ctx context.Context, st *stats, body []byte, n int, last uint64, deadline time.Time) bool {
	for {
		retry := a.post(ctx, body, n, last, st)
		if retry == 0 {
			return true
		}
		if time.Now().Add(retry).After(deadline) || !sleepUntil(ctx, time.Now().Add(retry)) {
			return false
		}
	}
}

// post sends one batch and returns 0 when it was acked, else how long to
// wait before sending it again.
func (a *simAgent) post(ctx context.Context, body []byte, n int, last uint64, st *stats) time.Duration {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, serverURL+wire.PathEvents, bytes.NewReader(body))
	if err != nil {
		st.fail(err)
		return time.Second
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", encodingOf(body))
	t0 := time.Now()
	resp, err := a.ship.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			st.timeouts.Add(1)
		} else if ctx.Err() == nil {
			st.fail(err)
		}
		return time.Second
	}
	rb, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxErrorBody))
	resp.Body.Close()
	if err != nil {
		st.fail(err)
		return time.Second
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		st.busy.Add(1)
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			return time.Duration(s) * time.Second
		}
		return time.Second
	default:
		st.refused.Add(1)
		st.lastErr.Store(fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(rb)))
		return time.Second
	}
	var ack wire.Ack
	if err := json.Unmarshal(rb, &ack); err != nil || ack.AckedSeq != last {
		st.fail(fmt.Errorf("loadgen: ack %q for last seq %d", rb, last))
		return time.Second
	}
	lat := time.Since(t0)
	st.proto.Store(resp.Proto)
	st.mu.Lock()
	st.latencies = append(st.latencies, lat)
	st.mu.Unlock()
	st.events.Add(int64(n))
	st.batches.Add(1)
	return 0
}

// serverURL is the --server base URL, set once by run before any
// goroutine starts.
var serverURL string

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// longPoll holds GET /v1/policy as the agent's PolicySync does, and records
// when the policy changed under it.
func (a *simAgent) longPoll(ctx context.Context, cfg *config, st *stats, first *sync.WaitGroup) {
	version, firstDone := "", false
	defer func() {
		if !firstDone {
			first.Done()
		}
	}()
	for ctx.Err() == nil {
		q := url.Values{"version": {version}}
		if version != "" {
			q.Set("wait", policyWait.String())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, serverURL+wire.PathPolicy+"?"+q.Encode(), nil)
		if err != nil {
			st.fail(err)
			return
		}
		if !firstDone && version != "" {
			firstDone = true
			first.Done() // the held request is on its way
		}
		resp, err := a.poll.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				st.pollErrs.Add(1)
				st.lastPollErr.Store(err.Error())
				sleepUntil(ctx, time.Now().Add(time.Second))
			}
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, wire.MaxPolicyBody))
		resp.Body.Close()
		st.polls.Add(1)
		switch resp.StatusCode {
		case http.StatusNotModified:
		case http.StatusOK:
			var pr wire.PolicyResponse
			if err := json.Unmarshal(b, &pr); err != nil {
				st.pollErrs.Add(1)
				continue
			}
			if version != "" && pr.Version != version {
				st.woken.Add(1)
				st.wakeLast.Store(time.Now().UnixNano())
			}
			version = pr.Version
		default:
			st.pollErrs.Add(1)
			st.lastPollErr.Store(fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b)))
			sleepUntil(ctx, time.Now().Add(time.Second))
		}
	}
}

// changePolicy writes a default policy that differs from whatever is there.
func changePolicy(ctx context.Context, cfg *config, roots *tlsRoots) error {
	doc := fmt.Sprintf(`apiVersion: mamori/v1
kind: Policy
name: default
description: mamori-loadgen wake test %s
controls:
  screenlock:
    mode: audit
  posture:
    mode: audit
`, time.Now().UTC().Format(time.RFC3339Nano))
	if err := adminCall(ctx, cfg, roots, http.MethodPut, "/api/v1/policies/default", "application/yaml", []byte(doc), nil); err != nil {
		return fmt.Errorf("loadgen: change policy: %w", err)
	}
	return nil
}

// openRaw opens cfg.raw TLS connections without a client certificate, 64 at
// a time; each sends GET /healthz over HTTP/1.1, reads the answer, and is
// then left open, as a careless or hostile client would.
func openRaw(ctx context.Context, cfg *config, roots *tlsRoots, st *stats) []net.Conn {
	host := serverURL[len("https://"):]
	conns := make([]net.Conn, cfg.raw)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second},
				Config: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots.pool, NextProtos: []string{"http/1.1"},
					ServerName: hostOnly(host)}}
			for i := range next {
				c, err := d.DialContext(ctx, "tcp", host)
				if err != nil {
					st.rawFailed.Add(1)
					continue
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
					st.rawFailed.Add(1)
					c.Close()
					continue
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					st.rawFailed.Add(1)
					c.Close()
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				_ = c.SetDeadline(time.Time{})
				st.rawOpened.Add(1)
				conns[i] = c.(*tls.Conn).NetConn() // hold the socket, not the TLS buffers
			}
		}()
	}
	for i := range cfg.raw {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return conns
}

func hostOnly(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return h
}

// countHeld reads each raw connection for a moment: EOF or a reset means
// the server shed it. Then it closes them all.
func countHeld(conns []net.Conn, st *stats) int64 {
	var held int64
	buf := make([]byte, 4096)
	for _, c := range conns {
		if c == nil {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		shed := false
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue // the server's close_notify alert, then EOF
			}
			var ne net.Error
			shed = !(errors.As(err, &ne) && ne.Timeout())
			break
		}
		if shed {
			st.rawShed.Add(1)
		} else {
			held++
		}
		c.Close()
	}
	st.rawHeld.Store(held)
	return held
}

// sample reads the server's /proc every second (peak fds and RSS) and
// checks that /healthz answers on a fresh connection.
// indexWait bounds how long a run waits for the indexer to catch up.
const indexWait = 5 * time.Minute

// waitIndexed polls the server's /metrics until mamori_store_index_lag_events
// is 0 and returns how long that took.
func waitIndexed(ctx context.Context, roots *tlsRoots) (time.Duration, error) {
	t0 := time.Now()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: roots.transport(nil, true)}
	defer hc.CloseIdleConnections()
	for {
		lag, err := indexLag(ctx, hc)
		switch {
		case err != nil:
			return 0, err
		case lag == 0:
			return time.Since(t0), nil
		case time.Since(t0) > indexWait:
			return 0, fmt.Errorf("loadgen: %d events still not indexed after %s", lag, indexWait)
		}
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return 0, ctx.Err()
		}
	}
}

// indexLag reads mamori_store_index_lag_events from /metrics.
func indexLag(ctx context.Context, hc *http.Client) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, serverURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("loadgen: metrics: %s", resp.Status)
	}
	return parseIndexLag(resp.Body)
}

// parseIndexLag finds the index lag gauge in Prometheus text.
func parseIndexLag(r io.Reader) (int64, error) {
	const name = "mamori_store_index_lag_events "
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("loadgen: metrics: %s%q: %w", name, v, err)
			}
			return int64(f), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	return 0, errors.New("loadgen: metrics: no " + strings.TrimSpace(name) + " (a store without query indexes)")
}

func sample(ctx context.Context, cfg *config, roots *tlsRoots, st *stats, rep *report) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: func() *http.Transport {
		t := roots.transport(nil, true)
		t.DisableKeepAlives = true
		return t
	}()}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		if p, err := readProc(cfg.pid); err == nil {
			rep.mu.Lock()
			rep.peakFDs = max(rep.peakFDs, p.FDs)
			rep.peakRSS = max(rep.peakRSS, p.RSS)
			rep.peakThreads = max(rep.peakThreads, p.Threads)
			rep.mu.Unlock()
		}
		t0 := time.Now()
		resp, err := hc.Get(serverURL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			if ctx.Err() == nil {
				st.healthFail.Add(1)
			}
			continue
		}
		st.healthOK.Add(1)
		d := int64(time.Since(t0))
		for {
			old := st.healthMax.Load()
			if d <= old || st.healthMax.CompareAndSwap(old, d) {
				break
			}
		}
	}
}
