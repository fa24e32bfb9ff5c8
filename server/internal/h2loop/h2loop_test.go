//go:build linux

package h2loop

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// pair is a CA-signed server certificate and client certificate.
type pair struct {
	server tls.Certificate
	client tls.Certificate
	pool   *x509.CertPool
}

func newPair(t testing.TB) pair {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(n int64, usage x509.ExtKeyUsage, ip bool) tls.Certificate {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tm := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: fmt.Sprint("leaf", n)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		if ip {
			tm.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tm, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pair{server: leaf(2, x509.ExtKeyUsageServerAuth, true), client: leaf(3, x509.ExtKeyUsageClientAuth, false), pool: pool}
}

type harness struct {
	srv    *Server
	addr   string
	pair   pair
	states sync.Map // *tls.Conn -> http.ConnState
	other  atomic.Int64
}

// start serves h the way the Mamori server does: handshake in the accept
// loop, agents' h2 connections to the loop.
func start(t testing.TB, h http.Handler, cfg Config) *harness {
	t.Helper()
	hs := &harness{pair: newPair(t)}
	cfg.Handler = h
	cfg.Log = zerolog.Nop()
	cfg.ConnState = func(c net.Conn, st http.ConnState) { hs.states.Store(c, st) }
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs.addr = ln.Addr().String()
	tcfg := &tls.Config{Certificates: []tls.Certificate{hs.pair.server}, ClientCAs: hs.pair.pool,
		ClientAuth: tls.VerifyClientCertIfGiven, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS13}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			raw, _ := c.(*net.TCPConn).SyscallConn()
			tc := tls.Server(Wrap(c, raw), tcfg)
			go func() {
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					tc.Close()
					return
				}
				if !ServesConn(tc.ConnectionState()) {
					hs.other.Add(1)
					tc.Close()
					return
				}
				if err := srv.Serve(tc); err != nil {
					tc.Close()
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("Serve: %v", err)
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); srv.Close() })
	return hs
}

func (hs *harness) client(t testing.TB) *http.Client {
	tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: hs.pair.pool,
		Certificates: []tls.Certificate{hs.pair.client}}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (hs *harness) url(p string) string { return "https://" + hs.addr + p }

func echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	sum := sha256.Sum256(b)
	w.Header().Set("X-Sum", hex.EncodeToString(sum[:]))
	w.Header().Set("X-Proto", r.Proto)
	w.Header().Set("X-Agent", r.TLS.PeerCertificates[0].Subject.CommonName)
	if n := r.URL.Query().Get("repeat"); n != "" {
		var k int
		fmt.Sscan(n, &k)
		w.Write(bytes.Repeat(b, k))
		return
	}
	w.Write(b)
}

func TestRequestsAndBodiesBothWays(t *testing.T) {
	hs := start(t, http.HandlerFunc(echo), Config{})
	cl := hs.client(t)
	for _, size := range []int{0, 1, 16 << 10, 1 << 20, 5<<20 + 7} {
		body := make([]byte, size)
		rand.Read(body)
		resp, err := cl.Post(hs.url("/echo?repeat=3"), "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || resp.Header.Get("X-Proto") != "HTTP/2.0" || resp.Header.Get("X-Agent") != "leaf3" {
			t.Fatalf("proto %s/%s agent %q", resp.Proto, resp.Header.Get("X-Proto"), resp.Header.Get("X-Agent"))
		}
		if !bytes.Equal(got, bytes.Repeat(body, 3)) {
			t.Fatalf("size %d: answer of %d bytes differs", size, len(got))
		}
	}
}

func TestConcurrentStreamsOnOneConnection(t *testing.T) {
	hs := start(t, http.HandlerFunc(echo), Config{})
	cl := hs.client(t)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := bytes.Repeat([]byte{byte(i)}, 1000+i*997)
			resp, err := cl.Post(hs.url("/echo"), "x", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Equal(got, body) {
				errs <- fmt.Errorf("stream %d: wrong answer", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// A parked request holds no goroutine and is answered when its channel is
// closed.
func TestParkedRequestsHoldNoGoroutine(t *testing.T) {
	var mu sync.Mutex
	wake := make(chan struct{})
	woken := false
	var runs atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		mu.Lock()
		done, ch := woken, wake
		mu.Unlock()
		if done {
			fmt.Fprint(w, "changed "+r.URL.RequestURI()+" "+r.Header.Get("X-Agent"))
			return
		}
		if !Park(r, ch, Arrived(r).Add(time.Minute)) {
			t.Error("Park refused")
		}
	})
	hs := start(t, h, Config{})
	const n = 300
	var wg sync.WaitGroup
	answers := make(chan [2]string, n)
	for c := range n / 3 { // three streams on each of 100 connections
		cl := hs.client(t)
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprint(c*3 + i)
				want := "changed /poll?n=" + id + " pc-" + id
				req, _ := http.NewRequest("GET", hs.url("/poll?n="+id), nil)
				req.Header.Set("X-Agent", "pc-"+id)
				resp, err := cl.Do(req)
				if err != nil {
					answers <- [2]string{err.Error(), want}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answers <- [2]string{string(b), want}
			}()
		}
	}
	waitFor(t, func() bool { return runs.Load() == n })
	hs.srv.pmu.Lock()
	parked, compact := len(hs.srv.parked[wake]), 0
	for st := range hs.srv.parked[wake] {
		st.c.mu.Lock()
		if st.fields == nil && st.block != nil {
			compact++
		}
		st.c.mu.Unlock()
	}
	hs.srv.pmu.Unlock()
	if parked != n {
		t.Fatalf("%d parked, want %d", parked, n)
	}
	// A parked request keeps its fields HPACK-encoded (and the answers
	// below show they decode back).
	if compact != n {
		t.Fatalf("%d of %d parked requests keep only their header block", compact, n)
	}
	// The server's goroutines are its loop, sweeper and workers and one
	// for the channel, whatever the number of parked requests.
	if g := serverGoroutines(); g > runtime.GOMAXPROCS(0)+6 {
		t.Fatalf("%d server goroutines with %d requests parked on 100 connections", g, n)
	}
	mu.Lock()
	woken = true
	close(wake)
	mu.Unlock()
	wg.Wait()
	close(answers)
	for a := range answers {
		if a[0] != a[1] {
			t.Fatalf("answer %q, want %q", a[0], a[1])
		}
	}
}

func TestParkedRequestRunsAgainAtItsTime(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		until := Arrived(r).Add(300 * time.Millisecond)
		if time.Now().Before(until) && Park(r, nil, until) {
			return
		}
		w.WriteHeader(http.StatusNotModified)
	})
	hs := start(t, h, Config{})
	t0 := time.Now()
	resp, err := hs.client(t).Get(hs.url("/poll"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified || time.Since(t0) < 300*time.Millisecond {
		t.Fatalf("status %d after %v", resp.StatusCode, time.Since(t0))
	}
}

// A request parked for longer than two sweeps holds no timer: the sweeper
// runs it again at its time (10,000 agents' long-polls, minutes each).
func TestParkedLongRunsAgainBySweeper(t *testing.T) {
	d := sweepEvery
	t.Cleanup(func() { sweepEvery = d }) // after the server's own cleanup
	sweepEvery = 50 * time.Millisecond
	held := make(chan *stream, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		until := Arrived(r).Add(time.Second)
		if time.Now().Before(until) && Park(r, nil, until) {
			held <- r.Context().Value(streamKey{}).(*stream)
			return
		}
		w.WriteHeader(http.StatusNotModified)
	})
	hs := start(t, h, Config{})
	t0 := time.Now()
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := hs.client(t).Get(hs.url("/poll"))
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	st := <-held
	st.c.mu.Lock()
	timer := st.timer
	st.c.mu.Unlock()
	if timer != nil {
		t.Fatal("a request parked for a second holds a timer")
	}
	resp := <-done
	if resp == nil {
		return
	}
	resp.Body.Close()
	if took := time.Since(t0); resp.StatusCode != http.StatusNotModified || took < time.Second || took > time.Second+10*sweepEvery {
		t.Fatalf("status %d after %v, want 304 after 1s and at most a sweep or two more", resp.StatusCode, took)
	}
}

// A client that gives up on a parked request cancels its context and takes
// it off the parked list.
func TestCancelledParkedRequestIsForgotten(t *testing.T) {
	wake := make(chan struct{})
	parked := make(chan context.Context, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/poll" && Park(r, wake, time.Now().Add(time.Minute)) {
			parked <- r.Context()
		}
	})
	hs := start(t, h, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", hs.url("/poll"), nil)
	go func() { <-parked; cancel() }()
	cl := hs.client(t)
	if _, err := cl.Do(req); err == nil {
		t.Fatal("no error from a cancelled request")
	}
	waitFor(t, func() bool {
		hs.srv.pmu.Lock()
		defer hs.srv.pmu.Unlock()
		return len(hs.srv.parked[wake]) == 0
	})
	// The connection still serves.
	resp, err := cl.Post(hs.url("/x"), "x", bytes.NewReader([]byte("ok")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestGoAwayLetsStreamsFinish(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		fmt.Fprint(w, "done")
	})
	hs := start(t, h, Config{})
	cl := hs.client(t)
	got := make(chan string, 1)
	go func() {
		resp, err := cl.Get(hs.url("/slow"))
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	time.Sleep(200 * time.Millisecond)
	hs.srv.GoAway(5 * time.Second)
	close(release)
	if a := <-got; a != "done" {
		t.Fatalf("in-flight stream after GOAWAY: %q", a)
	}
	resp, err := cl.Get(hs.url("/fast")) // on a new connection
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestTooLargeBodyRefused(t *testing.T) {
	hs := start(t, http.HandlerFunc(echo), Config{MaxBodyBytes: 1 << 20})
	resp, err := hs.client(t).Post(hs.url("/echo"), "x", bytes.NewReader(make([]byte, 3<<20)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestNotAnHTTP2PrefaceCloses(t *testing.T) {
	hs := start(t, http.HandlerFunc(echo), Config{})
	tc, err := tls.Dial("tcp", hs.addr, &tls.Config{RootCAs: hs.pair.pool, Certificates: []tls.Certificate{hs.pair.client},
		NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n__________________"))
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(tc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection left open after a bad preface")
	}
}

func TestPanickingHandlerResetsItsStreamOnly(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		fmt.Fprint(w, "fine")
	})
	hs := start(t, h, Config{})
	cl := hs.client(t)
	if resp, err := cl.Get(hs.url("/panic")); err == nil {
		resp.Body.Close()
		t.Fatal("no error from a panicking handler")
	}
	resp, err := cl.Get(hs.url("/ok"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// serverGoroutines counts the goroutines running this package's code,
// the test's own aside.
func serverGoroutines() int {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("server/internal/h2loop.")) && !bytes.Contains(g, []byte("h2loop_test.go")) {
			n++
		}
	}
	return n
}

func waitFor(t testing.TB, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatal("condition not reached in 10 s")
}

// TestShutdownWhileAClientKeepsSending: a client that opens a new
// connection as soon as it reads GOAWAY (Go's transport does) gets none
// served, so Shutdown returns once the old connection's streams are done,
// not when its context ends.
func TestShutdownWhileAClientKeepsSending(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second) // keeps the first connection draining
		}
		echo(w, r)
	})
	hs := start(t, h, Config{})
	cl := hs.client(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if resp, err := cl.Get(hs.url("/slow")); err == nil {
			resp.Body.Close()
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if resp, err := cl.Post(hs.url("/echo"), "x", bytes.NewReader(make([]byte, 4096))); err == nil {
				resp.Body.Close()
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := hs.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v after %v", err, time.Since(t0))
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
}
