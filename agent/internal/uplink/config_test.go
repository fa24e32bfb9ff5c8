package uplink

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseServers(t *testing.T) {
	got, err := ParseServers(" https://a.example:8443, https://b.example:8443/ ,https://a.example:8443,")
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://a.example:8443,https://b.example:8443"; strings.Join(got, ",") != want {
		t.Fatalf("got %v, want %s (order kept, duplicates dropped)", got, want)
	}
	for _, bad := range []string{"", " , ", "http://a:1", "https://a:1/x", "https://a:1,ftp://b"} {
		if _, err := ParseServers(bad); err == nil {
			t.Errorf("ParseServers(%q) accepted", bad)
		}
	}
}

// Bad input gets a clear error and changes nothing: the config on disk
// stays as it was.
func TestSaveConfigRefusesBadInputAndKeepsOld(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	good := Config{Servers: []string{"https://a.example:8443"}, Token: "tok", CAHash: "sha256:" + strings.Repeat("ab", 32)}
	if err := SaveConfig(dir, good); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, FileConfig))
	cases := map[string]Config{
		"no server":  {CAHash: good.CAHash},
		"http":       {Servers: []string{"http://a:1"}, CAHash: good.CAHash},
		"bad hash":   {Servers: good.Servers, CAHash: "sha256:zz"},
		"token ws":   {Servers: good.Servers, CAHash: good.CAHash, Token: "a b"},
		"bad proxy":  {Servers: good.Servers, CAHash: good.CAHash, Proxy: "socks5://p:1"},
		"long dept":  {Servers: good.Servers, CAHash: good.CAHash, Department: strings.Repeat("総", 100)},
		"no hash":    {Servers: good.Servers},
		"proxy path": {Servers: good.Servers, CAHash: good.CAHash, Proxy: "http://p:1/x"},
	}
	for name, c := range cases {
		if err := SaveConfig(dir, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	after, _ := os.ReadFile(filepath.Join(dir, FileConfig))
	if string(after) != string(before) {
		t.Fatalf("config changed by refused input:\n%s", after)
	}
	c, err := LoadConfig(dir)
	if err != nil || c.Token != "tok" {
		t.Fatalf("LoadConfig = %+v, %v", c, err)
	}
	if _, err := LoadConfig(t.TempDir()); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("empty dir: %v, want ErrNoConfig", err)
	}
}

// closedURL is an https URL on a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "https://" + addr
}

// With the first server down, enrollment goes to the next in the list; the
// token is then removed from the config.
func TestEnrollFromConfigFailsOverInOrder(t *testing.T) {
	f := newFakeServer(t)
	dir := filepath.Join(t.TempDir(), "state")
	c := Config{Servers: []string{closedURL(t), f.srv.URL}, Token: "tok", CAHash: f.hash(), Department: "総務"}
	if err := SaveConfig(dir, c); err != nil {
		t.Fatal(err)
	}
	c, _ = LoadConfig(dir)
	st, err := EnrollFromConfig(context.Background(), dir, c)
	if err != nil {
		t.Fatal(err)
	}
	if st.Server != f.srv.URL || st.Department != "総務" {
		t.Fatalf("state %+v: want server %s", st, f.srv.URL)
	}
	if err := ForgetToken(dir); err != nil {
		t.Fatal(err)
	}
	c2, err := LoadConfig(dir)
	if err != nil || c2.Token != "" || len(c2.Servers) != 2 {
		t.Fatalf("after ForgetToken: %+v, %v", c2, err)
	}
	if _, err := EnrollFromConfig(context.Background(), t.TempDir(), c2); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Fatalf("enroll without token: %v", err)
	}
	// Every server down: each one's error is reported.
	c.Servers = []string{closedURL(t), closedURL(t)}
	_, err = EnrollFromConfig(context.Background(), t.TempDir(), c)
	if err == nil || strings.Count(err.Error(), "connect to") != 2 || !strings.Contains(err.Error(), "is mamori-server running there") {
		t.Fatalf("all down: %v", err)
	}
}

// connectProxy is a real HTTP CONNECT proxy on loopback that counts tunnels.
func connectProxy(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		n.Add(1)
		w.WriteHeader(http.StatusOK)
		c, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() { _, _ = io.Copy(up, buf); up.Close() }()
		_, _ = io.Copy(c, up)
		c.Close()
	}))
	t.Cleanup(p.Close)
	return p, &n
}

// Enrollment and the mTLS client go through the configured proxy, and the
// CA pin still decides: a wrong hash fails through the proxy too.
func TestEnrollAndShipThroughProxy(t *testing.T) {
	f := newFakeServer(t)
	p, tunnels := connectProxy(t)
	dir := filepath.Join(t.TempDir(), "state")
	wrong := Config{Servers: []string{f.srv.URL}, Token: "tok", CAHash: Fingerprint(f.bad.cert.Raw), Proxy: p.URL}
	if _, err := EnrollFromConfig(context.Background(), dir, wrong); err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Fatalf("wrong CA hash through proxy: %v", err)
	}
	c := Config{Servers: []string{f.srv.URL}, Token: "tok", CAHash: f.hash(), Proxy: p.URL}
	if err := SaveConfig(dir, c); err != nil {
		t.Fatal(err)
	}
	before := tunnels.Load()
	if _, err := EnrollFromConfig(context.Background(), dir, c); err != nil {
		t.Fatal(err)
	}
	if tunnels.Load()-before < 2 { // CA fetch + enroll
		t.Fatalf("%d tunnels for enrollment, want 2", tunnels.Load()-before)
	}
	id, err := LoadIdentity(dir)
	if err != nil || id.Proxy != p.URL {
		t.Fatalf("identity proxy %q, %v", id.Proxy, err)
	}
	before = tunnels.Load()
	resp, err := id.HTTPClient(5 * time.Second).Get(f.srv.URL + "/v1/policy")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if tunnels.Load() == before {
		t.Fatal("mTLS client did not use the proxy")
	}
}

func TestParseWinHTTPProxy(t *testing.T) {
	target, _ := url.Parse("https://mamori.corp:8443/v1/events")
	local, _ := url.Parse("https://srv.lan.corp:8443/")
	cases := []struct{ proxy, bypass, want, wantLocal string }{
		{"proxy:8080", "", "http://proxy:8080", "http://proxy:8080"},
		{"http=h1:80;https=h2:443", "", "http://h2:443", "http://h2:443"},
		{"http=h1:80", "", "", ""},
		{"proxy:8080", "*.lan.corp;<local>", "http://proxy:8080", ""},
	}
	for _, c := range cases {
		f := parseWinHTTPProxy(c.proxy, c.bypass)
		for _, x := range []struct {
			u    *url.URL
			want string
		}{{target, c.want}, {local, c.wantLocal}} {
			got := ""
			if f != nil {
				u, err := f(x.u)
				if err != nil {
					t.Fatal(err)
				}
				if u != nil {
					got = u.String()
				}
			}
			if got != x.want {
				t.Errorf("%q %q for %s: got %q, want %q", c.proxy, c.bypass, x.u.Host, got, x.want)
			}
		}
	}
}

func TestServerListFailoverAndReturn(t *testing.T) {
	now := time.Unix(0, 0)
	l := NewServerList([]string{"https://a:1", "https://b:1", "https://c:1"})
	l.now = func() time.Time { return now }
	if l.Current() != "https://a:1" {
		t.Fatal("does not start at the first")
	}
	l.Failed("https://a:1")
	l.Failed("https://a:1") // a second caller's report of the same failure moves nothing
	if got := l.Current(); got != "https://b:1" {
		t.Fatalf("after a failure: %s", got)
	}
	now = now.Add(PrimaryRecheck - time.Second)
	if got := l.Current(); got != "https://b:1" {
		t.Fatalf("before the recheck: %s", got)
	}
	now = now.Add(time.Second)
	if got := l.Current(); got != "https://a:1" {
		t.Fatalf("after %s on b: %s, want the first again", PrimaryRecheck, got)
	}
	l.Failed("https://a:1")
	l.Failed("https://b:1")
	l.Failed("https://c:1")
	if got := l.Current(); got != "https://a:1" {
		t.Fatalf("wrap: %s", got)
	}
	l.Failed("https://a:1")
	l.Set([]string{"https://d:1"})
	if got := l.Current(); got != "https://d:1" {
		t.Fatalf("after Set: %s", got)
	}
}

// The shipper fails over from a server that is down to the next in its
// list, and the events arrive there.
func TestShipperFailsOver(t *testing.T) {
	f := newFakeServer(t)
	dir := enrollTest(t, f)
	s, sp := newShipper(t, f, dir, 0, io.Discard)
	s.Servers = NewServerList([]string{closedURL(t), f.srv.URL})
	emitN(t, sp, 5, "info")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.storedEvents()) < 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if n := len(f.storedEvents()); n != 5 {
		t.Fatalf("%d of 5 events arrived through the second server", n)
	}
	if s.Servers.Current() != f.srv.URL {
		t.Fatalf("current server %s", s.Servers.Current())
	}
}

// A list pushed by the policy is saved in the config, also on a PC enrolled
// by hand (no config yet), and is the list after a restart.
func TestSaveServersFromPolicy(t *testing.T) {
	f := newFakeServer(t)
	dir := enrollTest(t, f)
	st, _ := LoadState(dir)
	if got, _ := ServersOf(dir, st); len(got) != 1 || got[0] != f.srv.URL {
		t.Fatalf("without config: %v", got)
	}
	list := []string{"https://b.example:8443", "https://c.example:8443"}
	if err := SaveServers(dir, list); err != nil {
		t.Fatal(err)
	}
	got, err := ServersOf(dir, st)
	if err != nil || strings.Join(got, ",") != strings.Join(append(list, f.srv.URL), ",") {
		t.Fatalf("after SaveServers: %v %v (the enrolled server goes last)", got, err)
	}
	c, _ := LoadConfig(dir)
	if c.CAHash != f.hash() {
		t.Fatalf("config CA hash %s, want the pinned %s", c.CAHash, f.hash())
	}
}
