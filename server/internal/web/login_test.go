package web_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/app"
)

// newBrowserFrom is newBrowser connecting from a given loopback address, so
// that tests can play several sources (all of 127.0.0.0/8 is loopback).
func newBrowserFrom(tb testing.TB, srv *app.Server, local string) *browser {
	tb.Helper()
	b := newBrowser(tb, srv)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM())
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	jar, _ := cookiejar.New(nil)
	b.c = &http.Client{Jar: jar, Timeout: time.Minute,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DialContext: d.DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return b
}

// openRedirects is the usual bypass corpus for a post-login redirect, as
// the login form receives it (already form-decoded once).
var openRedirects = []string{
	"//evil.example", "///evil.example", "////evil.example/x", "/\\evil.example", "\\\\evil.example",
	"/\\/evil.example", "/\t/evil.example/x", "/%09/evil.example/x", "/\n/evil.example", "/\r/evil.example",
	"/%0d/evil.example", "/%5cevil.example", "/%5c%5cevil.example", "/%2f/evil.example", "/%2F%2Fevil.example",
	"/ /evil.example", "/\x00/evil.example", "https://evil.example", "http:/evil.example", "http:evil.example",
	"//evil.example@good.example", "/.//evil.example", "/..//evil.example", "/./\\evil.example",
	"javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", " //evil.example", "\t//evil.example",
	"evil.example", "@evil.example", "/\u3000/evil.example", "/\u2028/evil.example", "/%E2%80%A8/evil.example",
	"/%25%30%39/evil.example", "/\x7f/evil.example", "/a/../../evil.example",
}

// TestLoginOpenRedirect logs in with every bypass as next=: the Location
// must be a path on this server that no browser reads as another host.
func TestLoginOpenRedirect(t *testing.T) {
	srv := startServer(t, t.TempDir())
	b := newBrowser(t, srv)
	for _, next := range append(openRedirects, "/hosts?x=1", "/registers/media") {
		pg := b.get("/login")
		a := b.post("/login", url.Values{"csrf": {csrfOf(t, pg.body)}, "username": {"admin"},
			"password": {srv.AdminPassword()}, "next": {next}})
		if a.status != http.StatusSeeOther {
			t.Fatalf("next=%q: %d", next, a.status)
		}
		loc := a.header.Get("Location")
		u, err := url.Parse(loc)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(loc, "/") ||
			strings.HasPrefix(loc, "//") || strings.ContainsAny(loc, "\\\t\r\n\x00") {
			t.Errorf("next=%q: Location %q leaves the site", next, loc)
		}
		if base, _ := url.Parse("https://mamori.example/login"); err == nil && base.ResolveReference(u).Host != base.Host {
			t.Errorf("next=%q: Location %q resolves to another host", next, loc)
		}
		if (next == "/hosts?x=1" || next == "/registers/media") && loc != next {
			t.Errorf("next=%q: Location %q, want it kept", next, loc)
		}
	}
}

// TestLoginFloodSummarised: a client hammering the login form after being
// throttled once added one stored event per refused attempt. Now the first
// refused attempt of a window is recorded and the rest are only counted,
// and the user name stored is bounded.
func TestLoginFloodSummarised(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	b := newBrowser(t, srv)
	long := strings.Repeat("管理者", 300) // 2,700 bytes of user name, under the event field limit
	for i := range 20 {
		b.tryLogin(long, "wrong "+itoa(int64(i)))
	}
	before := len(serverEvents(t, srv, ""))
	pg := b.get("/login")
	csrf := csrfOf(t, pg.body)
	for range 300 {
		a := b.post("/login", url.Values{"csrf": {csrf}, "username": {long}, "password": {"x"}})
		if a.status != http.StatusTooManyRequests {
			t.Fatalf("flood: %d, want 429", a.status)
		}
	}
	after := serverEvents(t, srv, "")
	if n := len(after) - before; n > 2 {
		t.Fatalf("300 refused attempts stored %d events, want at most 2", n)
	}
	for _, e := range after {
		if len(e.User) > 80 || len(e.Object) > 100 {
			t.Fatalf("%s stores a %d-byte user and %d-byte object from the login form", e.Type, len(e.User), len(e.Object))
		}
	}
	// The window's count is recorded when the server stops before the
	// window ends, not lost with it.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, dir)
	sum := serverEvents(t, srv, "ui.login_throttled")
	if len(sum) != 1 {
		t.Fatalf("%d throttling summaries after a stop mid-window, want 1", len(sum))
	}
	if n, _ := strconv.Atoi(fmt.Sprint(sum[0].Attrs["attempts"])); n < 299 {
		t.Fatalf("summary counts %v refused attempts, want at least 299: %+v", sum[0].Attrs["attempts"], sum[0].Attrs)
	}
}

// TestLoginFailuresFromManySources: every source under its own limit, many
// sources (addresses on the LAN): failed logins are recorded one by one up
// to a server-wide rate, the rest only counted into a summary, so adding
// addresses does not grow the log without bound. Nothing goes uncounted.
func TestLoginFailuresFromManySources(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	const sources, each = 7, 18 // under the 20 failures a source may make
	began := time.Now()
	for s := range sources {
		b := newBrowserFrom(t, srv, "127.0.0."+strconv.Itoa(10+s))
		for i := range each {
			if a := b.tryLogin("guess-"+strconv.Itoa(s)+"-"+strconv.Itoa(i), "x"); a.status != http.StatusUnauthorized {
				t.Fatalf("source %d attempt %d: %d, want 401", s, i, a.status)
			}
		}
	}
	took := time.Since(began)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, dir)
	failed := len(serverEvents(t, srv, "ui.login_failed"))
	counted := 0
	for _, e := range serverEvents(t, srv, "ui.login_throttled") {
		n, _ := strconv.Atoi(fmt.Sprint(e.Attrs["attempts"]))
		counted += n
	}
	if failed+counted != sources*each {
		t.Fatalf("%d failed logins recorded and %d counted, want %d in all", failed, counted, sources*each)
	}
	const perMinute = 60 // the UI's maxFailedLoginsPerMinute
	if took < time.Minute && failed > perMinute+1 {
		t.Fatalf("%d failed logins recorded one by one in %s, want at most %d", failed, took.Round(time.Second), perMinute+1)
	}
	t.Logf("%d attempts in %s: %d recorded, %d counted", sources*each, took.Round(time.Second), failed, counted)
}

// TestLockoutPerSource: failures from one address must not lock the user
// out from another: the right password from a clean source always works.
func TestLockoutPerSource(t *testing.T) {
	srv := startServer(t, t.TempDir())
	attacker := newBrowserFrom(t, srv, "127.0.0.2")
	for i := range 30 {
		attacker.tryLogin("admin", "guess "+itoa(int64(i)))
	}
	if a := attacker.tryLogin("admin", srv.AdminPassword()); a.status != http.StatusTooManyRequests {
		t.Fatalf("attacker's source after 30 failures: %d, want 429", a.status)
	}
	if a := newBrowserFrom(t, srv, "127.0.0.3").tryLogin("admin", srv.AdminPassword()); a.status != http.StatusSeeOther {
		t.Fatalf("admin from a clean source while the attack runs: %d, want 303", a.status)
	}
}

// TestHSTS: the UI tells browsers to use HTTPS only.
func TestHSTS(t *testing.T) {
	srv := startServer(t, t.TempDir())
	if h := newBrowser(t, srv).get("/login").header.Get("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=") {
		t.Fatalf("Strict-Transport-Security: %q", h)
	}
}
