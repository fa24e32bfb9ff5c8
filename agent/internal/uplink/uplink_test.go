package uplink

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
	"github.com/mamori/mamori/shared/wire"
)

// testCA is a throw-away CA that issues the fake server's and agents' certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t testing.TB, name string) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{c, key}
}

func (ca *testCA) issue(t testing.TB, pub any, cn string, server bool) []byte {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (ca *testCA) serverCert(t testing.TB) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return tls.Certificate{Certificate: [][]byte{ca.issue(t, key.Public(), "127.0.0.1", true), ca.cert.Raw}, PrivateKey: key}
}

// fakeServer speaks the agent plane: it enrolls, stores batches (checking
// the chain like the real one) and serves a policy. mode switches its
// behaviour to the failures under test.
type fakeServer struct {
	t        testing.TB
	ca, bad  *testCA
	srv      *httptest.Server
	mode     atomic.Value // "good", "500", "garbage", "wrongca"
	hits     atomic.Int64
	enrolls  atomic.Int64 // POSTs to the enroll path
	mu       sync.Mutex
	stored   []event.Event
	hitTimes []time.Time // of every POST of a batch
	policy   wire.PolicyResponse
	polReady chan struct{}
	// zstd makes it a server that takes zstd and says so; encs is the
	// Content-Encoding of every batch POSTed.
	zstd atomic.Bool
	encs []string
}

func newFakeServer(t testing.TB) *fakeServer {
	f := &fakeServer{t: t, ca: newCA(t, "Mamori CA"), bad: newCA(t, "Evil CA"), polReady: make(chan struct{}, 1)}
	f.mode.Store("good")
	good, bad := f.ca.serverCert(t), f.bad.serverCert(t)
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.cert)
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathEnroll, f.enroll)
	mux.HandleFunc("POST "+wire.PathEvents, f.events)
	mux.HandleFunc("GET "+wire.PathPolicy, f.getPolicy)
	f.srv = httptest.NewUnstartedServer(mux)
	base := &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool,
		NextProtos: []string{"http/1.1"}}
	f.srv.TLS = &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Chosen per handshake so a test can switch to a server of another CA.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := base.Clone()
			if f.mode.Load() == "wrongca" {
				f.hits.Add(1)
				c.Certificates = []tls.Certificate{bad}
			} else {
				c.Certificates = []tls.Certificate{good}
			}
			return c, nil
		},
	}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) hash() string { return Fingerprint(f.ca.cert.Raw) }

func (f *fakeServer) enroll(w http.ResponseWriter, r *http.Request) {
	f.enrolls.Add(1)
	var req wire.EnrollRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Token != "tok" {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(wire.Error{Error: "enrollment token invalid, expired or used up"})
		return
	}
	b, _ := pem.Decode([]byte(req.CSR))
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	der := f.ca.issue(f.t, csr.PublicKey, "agent-1", false)
	json.NewEncoder(w).Encode(wire.EnrollResponse{AgentID: "agent-1",
		Certificate: string(pemCert(der)), CA: string(pemCert(f.ca.cert.Raw))})
}

func (f *fakeServer) events(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	f.mu.Lock()
	f.hitTimes = append(f.hitTimes, time.Now())
	f.mu.Unlock()
	switch f.mode.Load() {
	case "busy": // the real server's admission control
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"server busy"}`)
		return
	case "500":
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"error":"internal error: events not stored"}`)
		return
	case "garbage":
		io.WriteString(w, "<html>proxy says hello</html>")
		return
	}
	if len(r.TLS.PeerCertificates) == 0 {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	enc := r.Header.Get("Content-Encoding")
	f.mu.Lock()
	f.encs = append(f.encs, enc)
	f.mu.Unlock()
	var zr io.Reader
	switch {
	case enc == "gzip":
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		zr = gz
	case enc == "zstd" && f.zstd.Load():
		zd, err := zstd.NewReader(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		defer zd.Close()
		zr = zd
	default: // as servers from before zstd answer it
		w.WriteHeader(http.StatusUnsupportedMediaType)
		io.WriteString(w, `{"error":"api: unsupported Content-Encoding"}`)
		return
	}
	if f.zstd.Load() {
		w.Header().Set("Accept-Encoding", wire.AcceptEncoding)
	}
	var b wire.Batch
	if err := json.NewDecoder(zr).Decode(&b); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Dedup on seq like the real server, then check the chain continues.
	var last uint64
	prev := ""
	if n := len(f.stored); n > 0 {
		last, prev = f.stored[n-1].Seq, f.stored[n-1].Hash
	}
	var fresh []event.Event
	for _, e := range b.Events {
		if e.Seq > last {
			fresh = append(fresh, e)
		}
	}
	if len(fresh) > 0 {
		if _, err := event.VerifyChain("agent-1", last, prev, fresh); err != nil {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(wire.Error{Error: err.Error()})
			return
		}
		f.stored = append(f.stored, fresh...)
	}
	json.NewEncoder(w).Encode(wire.Ack{AckedSeq: f.stored[len(f.stored)-1].Seq})
}

func (f *fakeServer) getPolicy(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	pr := f.policy
	f.mu.Unlock()
	if pr.Version == "" || r.URL.Query().Get("version") == pr.Version {
		select {
		case <-f.polReady:
		case <-time.After(200 * time.Millisecond):
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	json.NewEncoder(w).Encode(pr)
}

func (f *fakeServer) storedEvents() []event.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event.Event(nil), f.stored...)
}

func enrollTest(t *testing.T, f *fakeServer) string {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := Enroll(context.Background(), EnrollOptions{Server: f.srv.URL, Token: "tok", CAHash: f.hash(), StateDir: dir}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestEnrollPinsCAAndSavesPrivateState(t *testing.T) {
	f := newFakeServer(t)
	dir := filepath.Join(t.TempDir(), "state")
	st, err := Enroll(context.Background(), EnrollOptions{Server: f.srv.URL, Token: "tok",
		CAHash: strings.ToUpper(f.hash()[7:]), StateDir: dir})
	if err == nil {
		t.Fatal("hash without sha256: prefix accepted")
	}
	st, err = Enroll(context.Background(), EnrollOptions{Server: f.srv.URL, Token: "tok", CAHash: f.hash(), StateDir: dir, Department: "経理"})
	if err != nil {
		t.Fatal(err)
	}
	if st.AgentID != "agent-1" || st.Department != "経理" {
		t.Fatalf("state %+v", st)
	}
	id, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id.State != st {
		t.Fatalf("loaded %+v, saved %+v", id.State, st)
	}
	if runtime.GOOS != "windows" {
		for _, name := range []string{FileKey, FileCert, FileCA, FileAgent} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v mode %v", name, err, fi.Mode())
			}
		}
		if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
			t.Errorf("dir mode %v", fi.Mode())
		}
	}
	ca, _ := os.ReadFile(filepath.Join(dir, FileCA))
	b, _ := pem.Decode(ca)
	if Fingerprint(b.Bytes) != f.hash() {
		t.Error("saved CA is not the pinned one")
	}
	// A second enrollment into the same dir would fork the chain.
	if _, err := Enroll(context.Background(), EnrollOptions{Server: f.srv.URL, Token: "tok", CAHash: f.hash(), StateDir: dir}); err == nil {
		t.Error("re-enrollment into an enrolled dir accepted")
	}
}

func TestEnrollRefusals(t *testing.T) {
	f := newFakeServer(t)
	wrong := Fingerprint(f.bad.cert.Raw)
	cases := []struct {
		name string
		opt  EnrollOptions
		want string
	}{
		{"wrong CA hash", EnrollOptions{Server: f.srv.URL, Token: "tok", CAHash: wrong}, "no certificate"},
		{"bad token", EnrollOptions{Server: f.srv.URL, Token: "nope", CAHash: f.hash()}, "token invalid"},
		{"http URL", EnrollOptions{Server: "http://127.0.0.1:1", Token: "tok", CAHash: f.hash()}, "want https"},
		{"garbage hash", EnrollOptions{Server: f.srv.URL, Token: "tok", CAHash: "sha256:zz"}, "sha256:<64 hex digits>"},
		{"no token", EnrollOptions{Server: f.srv.URL, CAHash: f.hash()}, "token missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opt.StateDir = filepath.Join(t.TempDir(), "state")
			_, err := Enroll(context.Background(), c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if _, err := os.Stat(c.opt.StateDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused enrollment left %s behind", c.opt.StateDir)
			}
		})
	}
	// A server presenting another CA is refused even with the real token.
	f.mode.Store("wrongca")
	if _, err := Enroll(context.Background(), EnrollOptions{Server: f.srv.URL, Token: "tok", CAHash: f.hash(),
		StateDir: filepath.Join(t.TempDir(), "s")}); err == nil {
		t.Fatal("enrolled with a server of another CA")
	}
}

// A state dir that cannot be written (a regular file, a path through one)
// fails the enrollment before the server is asked: the server would create
// an orphan agent and use up a use of the token.
func TestEnrollUnwritableStateDirAsksNoServer(t *testing.T) {
	f := newFakeServer(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "state")} {
		_, err := Enroll(context.Background(), EnrollOptions{Server: f.srv.URL, Token: "tok", CAHash: f.hash(), StateDir: dir})
		if err == nil || !strings.Contains(err.Error(), "state dir") {
			t.Fatalf("%s: err %v, want a state dir error", dir, err)
		}
	}
	if n := f.enrolls.Load(); n != 0 {
		t.Fatalf("the server was asked to enroll %d times", n)
	}
	// A writable dir: the probe leaves nothing behind but the enrollment.
	dir := enrollTest(t, f)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		switch e.Name() {
		case FileKey, FileCert, FileCA, FileAgent:
		default:
			t.Errorf("enrollment left %s in the state dir", e.Name())
		}
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(substr string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

func newShipper(t *testing.T, f *fakeServer, dir string, maxBytes int64, logw io.Writer) (*Shipper, *spool.Spool) {
	id, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool.db"), spool.Options{Agent: id.State.AgentID, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return &Shipper{Client: id.HTTPClient(5 * time.Second), Server: id.State.Server, Queue: sp,
		Log: zerolog.New(logw), MaxBatch: 20, MaxWait: 10 * time.Millisecond,
		Backoff: Backoff{Base: 2 * time.Millisecond, Max: 20 * time.Millisecond}}, sp
}

func emitN(t *testing.T, sp *spool.Spool, n int, sev event.Severity) (refused int) {
	for i := range n {
		err := sp.Emit(context.Background(), event.Event{Control: "test", Type: "test.event", Severity: sev, Attrs: event.Attrs{"i": i}})
		if errors.Is(err, spool.ErrFull) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	return refused
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShipperFailureKinds: through a wrong CA, 500s, garbage and a refused
// connection the agent keeps its events, logs one line per kind, retries,
// and delivers every event exactly once when the server is good again.
func TestShipperFailureKinds(t *testing.T) {
	f := newFakeServer(t)
	dir := enrollTest(t, f)
	logs := &syncBuffer{}
	sh, sp := newShipper(t, f, dir, 0, logs)
	emitN(t, sp, 100, event.Info)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	for _, mode := range []string{"wrongca", "500", "garbage"} {
		f.mode.Store(mode)
		if mode == "wrongca" {
			go func() { done <- sh.Run(ctx) }()
		}
		before := f.hits.Load()
		waitUntil(t, 5*time.Second, mode+" retries", func() bool { return f.hits.Load() >= before+5 })
		if d := sp.Stats().Depth; d != 100 {
			t.Fatalf("%s: spool depth %d, want 100 kept", mode, d)
		}
	}
	f.mode.Store("good")
	waitUntil(t, 5*time.Second, "delivery", func() bool { return sp.Stats().Depth == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := f.storedEvents()
	if len(got) != 100 {
		t.Fatalf("server stored %d events, want 100", len(got))
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) {
			t.Fatalf("stored[%d].seq = %d", i, e.Seq)
		}
	}
	for _, kind := range []string{KindWrongCA, KindServerError, KindGarbage} {
		if n := len(logs.lines(`"kind":"` + kind + `","error"`)); n != 1 {
			t.Errorf("%d log lines for %s, want 1:\n%s", n, kind, strings.Join(logs.lines("uplink"), "\n"))
		}
	}
	if n := len(logs.lines("shipping recovered")); n != 1 {
		t.Errorf("%d recovery lines, want 1", n)
	}
	if sh.AckedSeq() != 100 || sh.Failing() != "" {
		t.Errorf("acked %d failing %q", sh.AckedSeq(), sh.Failing())
	}
}

func TestShipperConnectionRefusedThenUp(t *testing.T) {
	f := newFakeServer(t)
	dir := enrollTest(t, f)
	logs := &syncBuffer{}
	sh, sp := newShipper(t, f, dir, 0, logs)
	// Point at a port nobody listens on first.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "https://" + l.Addr().String()
	l.Close()
	real := sh.Server
	sh.Server = dead
	emitN(t, sp, 10, event.Info)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sh.Run(ctx)
	waitUntil(t, 5*time.Second, "refused line", func() bool { return len(logs.lines(KindRefused)) > 0 })
	time.Sleep(100 * time.Millisecond) // several retries
	if n := len(logs.lines(KindRefused)); n != 1 {
		t.Fatalf("%d lines for connection refused, want 1", n)
	}
	if sp.Stats().Depth != 10 {
		t.Fatal("events lost while the server was unreachable")
	}
	cancel()
	time.Sleep(50 * time.Millisecond)
	sh2 := &Shipper{Client: sh.Client, Server: real, Queue: sp, Log: sh.Log, MaxBatch: sh.MaxBatch,
		MaxWait: sh.MaxWait, Backoff: sh.Backoff}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go sh2.Run(ctx2)
	waitUntil(t, 5*time.Second, "delivery", func() bool { return len(f.storedEvents()) == 10 })
}

// TestShipperZstdOnlyWhereSaid: against a server from before zstd every
// batch is gzip; once a server says it takes zstd the batches after that
// answer are zstd; a server that refuses zstd again (a rollback) gets the
// same batch as gzip at once, without a retry's wait, and gzip after it.
// Every event arrives once, in order, through all three.
func TestShipperZstdOnlyWhereSaid(t *testing.T) {
	f := newFakeServer(t)
	dir := enrollTest(t, f)
	sh, sp := newShipper(t, f, dir, 0, io.Discard)
	sh.MaxBatch = 10
	sh.Backoff = Backoff{Base: 10 * time.Second, Max: 10 * time.Second} // a retry would time the test out
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	encs := func() []string {
		f.mu.Lock()
		defer f.mu.Unlock()
		return append([]string(nil), f.encs...)
	}
	ship := func(n int) []string {
		t.Helper()
		before, sent := len(f.storedEvents()), len(encs())
		emitN(t, sp, n, event.Info)
		waitUntil(t, 5*time.Second, "delivery", func() bool { return len(f.storedEvents()) == before+n })
		return encs()[sent:]
	}
	for _, e := range ship(30) {
		if e != "gzip" {
			t.Fatalf("sent %q to a server that never said it takes zstd", e)
		}
	}
	f.zstd.Store(true)
	got := ship(30)
	if got[0] != "gzip" || got[len(got)-1] != "zstd" {
		t.Fatalf("encodings after the server said zstd: %v, want gzip first, zstd from the next batch", got)
	}
	for i, e := range got[1:] {
		if e != "zstd" {
			t.Fatalf("batch %d after the server said zstd was %q: %v", i+2, e, got)
		}
	}
	f.zstd.Store(false)
	got = ship(30)
	if len(got) < 2 || got[0] != "zstd" || got[1] != "gzip" {
		t.Fatalf("encodings after the server stopped taking zstd: %v, want one zstd refused, then gzip", got)
	}
	for _, e := range got[1:] {
		if e != "gzip" {
			t.Fatalf("zstd sent again to a server that refused it: %v", got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stored := f.storedEvents()
	for i, e := range stored {
		if e.Seq != uint64(i+1) {
			t.Fatalf("stored[%d].seq = %d", i, e.Seq)
		}
	}
	if len(stored) != 90 {
		t.Fatalf("stored %d events, want 90", len(stored))
	}
}

func TestAcceptsZstd(t *testing.T) {
	for _, c := range []struct {
		vals []string
		want bool
	}{
		{nil, false},
		{[]string{"gzip"}, false},
		{[]string{wire.AcceptEncoding}, true},
		{[]string{"gzip", "ZSTD"}, true},
		{[]string{"zstd;q=0"}, false},
		{[]string{"zstd; q=0.5, gzip"}, true},
		{[]string{"zstdx, gzip"}, false},
	} {
		if got := acceptsZstd(c.vals); got != c.want {
			t.Errorf("acceptsZstd(%q) = %v, want %v", c.vals, got, c.want)
		}
	}
}

// TestSpoolBoundShipperSide: with the server failing the spool fills, info
// events are refused and counted, a violation is still stored; once the
// server is back the shipper drains it and agent.dropped carries the exact
// number refused.
func TestSpoolBoundShipperSide(t *testing.T) {
	f := newFakeServer(t)
	dir := enrollTest(t, f)
	sh, sp := newShipper(t, f, dir, 64<<10, io.Discard)
	f.mode.Store("500")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sh.Run(ctx)
	refused := emitN(t, sp, 400, event.Info)
	if refused == 0 {
		t.Fatal("spool never filled")
	}
	if r := emitN(t, sp, 3, event.Violation); r != 0 {
		t.Fatalf("%d violations refused", r)
	}
	stored := sp.Stats().LastSeq
	f.mode.Store("good")
	waitUntil(t, 10*time.Second, "drain", func() bool { return sp.Stats().Depth == 0 })
	emitN(t, sp, 1, event.Info) // the next event is preceded by agent.dropped
	waitUntil(t, 5*time.Second, "dropped report", func() bool { return len(f.storedEvents()) == int(stored)+2 })
	evs := f.storedEvents()
	d := evs[len(evs)-2]
	if d.Type != spool.DroppedType {
		t.Fatalf("event before the last is %s, want %s", d.Type, spool.DroppedType)
	}
	if c, _ := d.Attrs["count"].(json.Number).Int64(); c != int64(refused) {
		t.Fatalf("agent.dropped count %v, refused %d", d.Attrs["count"], refused)
	}
	viol := 0
	for _, e := range evs {
		if e.Severity == event.Violation {
			viol++
		}
	}
	if viol != 3 {
		t.Fatalf("%d violations on the server, want 3", viol)
	}
}

func TestPolicySyncAppliesAndSaves(t *testing.T) {
	f := newFakeServer(t)
	dir := enrollTest(t, f)
	id, _ := LoadIdentity(dir)
	p, err := policy.Parse([]byte("apiVersion: mamori/v1\nkind: Policy\nname: base\ncontrols:\n  screenlock: {mode: audit}\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(p)
	f.mu.Lock()
	f.policy = wire.PolicyResponse{Version: p.Version(), Policy: raw}
	f.mu.Unlock()
	got := make(chan string, 4)
	ps := &PolicySync{Client: id.HTTPClient(5 * time.Second), Server: id.State.Server, Log: zerolog.Nop(),
		Apply: func(ctx context.Context, v string, p *policy.Policy, raw []byte) error {
			if err := SavePolicy(dir, v, raw); err != nil {
				return err
			}
			got <- v + " " + string(p.Controls.Screenlock.Mode)
			return nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ps.Run(ctx)
	select {
	case s := <-got:
		if s != p.Version()+" audit" {
			t.Fatalf("applied %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("policy not applied")
	}
	v, lp, _, err := LoadPolicy(dir)
	if err != nil || v != p.Version() || lp.Name != "base" {
		t.Fatalf("saved policy: %v %q %v", err, v, lp)
	}
	// The same version is not applied again.
	select {
	case s := <-got:
		t.Fatalf("applied again: %s", s)
	case <-time.After(500 * time.Millisecond):
	}
	// A policy that does not parse goes to Rejected, and the saved one stays.
	rejected := make(chan string, 1)
	ps2 := &PolicySync{Client: id.HTTPClient(5 * time.Second), Server: id.State.Server, Log: zerolog.Nop(),
		Apply:    func(context.Context, string, *policy.Policy, []byte) error { t.Error("bad policy applied"); return nil },
		Rejected: func(_ context.Context, v string, err error) { rejected <- v }}
	f.mu.Lock()
	f.policy = wire.PolicyResponse{Version: "bad1", Policy: json.RawMessage(`{"apiVersion":"mamori/v1","kind":"Policy","name":"x","bogus":1}`)}
	f.mu.Unlock()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go ps2.Run(ctx2)
	select {
	case v := <-rejected:
		if v != "bad1" {
			t.Fatalf("rejected %q", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("bad policy not rejected")
	}
	if v, _, _, _ := LoadPolicy(dir); v != p.Version() {
		t.Fatal("saved policy replaced by a rejected one")
	}
}

func TestBackoffFullJitter(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	for n := range 40 {
		ceil := min(b.Max, b.Base<<min(n, 30))
		for range 50 {
			if d := b.Delay(n); d <= 0 || d > ceil+time.Millisecond {
				t.Fatalf("Delay(%d) = %v, ceiling %v", n, d, ceil)
			}
		}
	}
}

// A server URL with user info (from --env-file or a saved config, past the
// CLI's own check) is refused without echoing it: it may hold a password.
func TestServerURLWithUserInfoRefused(t *testing.T) {
	for _, s := range []string{"https://user:secret@mamori.example.jp:8443", "https://user@mamori.example.jp"} {
		if _, err := CheckServerURL(s); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v", s, err)
		}
	}
	if u, err := CheckServerURL("https://mamori.example.jp:8443/"); err != nil || u != "https://mamori.example.jp:8443" {
		t.Errorf("plain URL: %q %v", u, err)
	}
}

// A standby that redirects to a writer that is gone (killed; the election
// not over) is itself up: the batch fails at the redirect's target, the
// agent stays on its server and asks again within a second, not after the
// backoff for a dead server (5-9 s later than the agents on the writer).
func TestShipperRetriesSoonAfterARedirectToADeadWriter(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	standby := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, dead+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer standby.Close()
	other := "http://127.0.0.1:1"
	list := NewServerList([]string{standby.URL, other})
	sh := &Shipper{Client: standby.Client(), Servers: list, Backoff: Backoff{Base: 30 * time.Second, Max: 90 * time.Second}}
	_, err := sh.send(context.Background(), []event.Event{{Seq: 1}})
	var re *redirectError
	if !errors.As(err, &re) || !strings.HasPrefix(re.target, dead) {
		t.Fatalf("send through the standby: %v", err)
	}
	for n := range redirectRetries {
		if d := sh.retryDelay(err, n); d > redirectRetry {
			t.Fatalf("failure %d: wait %v, want at most %v", n, d, redirectRetry)
		}
	}
	longest := time.Duration(0) // a dead server keeps its backoff (random up to 90 s here)
	for range 20 {
		longest = max(longest, sh.retryDelay(errors.New("uplink: post batch: connection refused"), 5))
	}
	if longest <= redirectRetry {
		t.Fatalf("a dead server's backoff is capped too: longest of 20 waits %v", longest)
	}
	// The run loop does not count the standby as failed.
	emitCtx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	q := &memQueue{evs: []event.Event{{Seq: 1, Agent: "a", Control: "agent", Type: "agent.test", Severity: event.Info, Time: time.Now()}}}
	sh.Queue, sh.Log, sh.MaxBatch, sh.MaxWait = q, zerolog.Nop(), 10, time.Millisecond
	sh.Run(emitCtx)
	if got := list.Current(); got != standby.URL {
		t.Fatalf("moved to %s after the redirect target failed", got)
	}
}

// memQueue is a Queue over a slice, for shipper tests without a spool.
type memQueue struct {
	mu  sync.Mutex
	evs []event.Event
}

func (q *memQueue) Peek(max int) ([]event.Event, error) { return q.PeekAfter(0, max) }

func (q *memQueue) PeekAfter(seq uint64, max int) ([]event.Event, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []event.Event
	for _, e := range q.evs {
		if e.Seq > seq && len(out) < max {
			out = append(out, e)
		}
	}
	return out, nil
}

func (q *memQueue) Ack(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.evs) > 0 && q.evs[0].Seq <= seq {
		q.evs = q.evs[1:]
	}
	return nil
}

func (q *memQueue) Wait() <-chan struct{} { return make(chan struct{}) }
