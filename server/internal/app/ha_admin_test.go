package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// haBrowser is one browser; its cookies go to every server of the site, as
// behind a load balancer (cookies do not depend on the port).
type haBrowser struct {
	t *testing.T
	c *http.Client
}

func newHABrowser(t *testing.T, caPEM []byte) *haBrowser {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	jar, _ := cookiejar.New(nil)
	return &haBrowser{t: t, c: &http.Client{Jar: jar, Timeout: time.Minute,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *haBrowser) do(method, u string, form url.Values) (int, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

var haCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *haBrowser) csrf(base, path string) string {
	b.t.Helper()
	st, page := b.do("GET", base+path, nil)
	m := haCSRF.FindStringSubmatch(page)
	if st != 200 || m == nil {
		b.t.Fatalf("GET %s: %d, no csrf", path, st)
	}
	return m[1]
}

func (b *haBrowser) login(base, user, password string) int {
	b.t.Helper()
	st, _ := b.do("POST", base+"/login", url.Values{"csrf": {b.csrf(base, "/login")}, "username": {user},
		"password": {password}, "next": {"/"}})
	return st
}

// Admins may use any server of a site. On a standby, what an admin does is
// recorded in the one log (the writer appends it, naming the standby), a web
// session opened there works on the writer and a logout on the writer ends
// it there too, and failed logins count across the servers.
func TestStandbyAdminPlane(t *testing.T) {
	ep, _ := siteEtcd(t)
	kek := testKEK(t)
	events := "sqlite:" + filepath.Join(t.TempDir(), "events.db")
	ctx := context.Background()
	node := func(join bool) *app.Server {
		c := nodeConfig(t, t.TempDir(), ep, events, "127.0.0.1", kek)
		c.Hostnames = []string{"127.0.0.1"}
		c.ServiceName = "localhost"
		c.Join = join
		srv, err := app.Start(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		return srv
	}
	n1 := node(false)
	n2 := node(true)
	if n1.Role() != "writer" || n2.Role() != "standby" {
		t.Fatalf("roles %s %s", n1.Role(), n2.Role())
	}
	caPEM, token := n1.CAPEM(), n1.AdminToken()
	w, s := n1.NodeURL(), n2.NodeURL()
	standby := strings.TrimPrefix(s, "https://")

	// An export on the standby (admin API) and a login there (web UI).
	a := enroll(t, w, n1.EnrollToken(), n1.CAFingerprint(), caPEM, "pc-ha-01")
	if _, err := a.send(a.events(5)); err != nil {
		t.Fatal(err)
	}
	waitCheckpoint(t, s, token, caPEM, 5)
	if st, _ := adminDownloadAt(t, s, token, caPEM, event.ServerStream, 0); st != 200 {
		t.Fatalf("export on the standby: %d", st)
	}
	b := newHABrowser(t, caPEM)
	if st := b.login(s, "admin", n1.AdminPassword()); st != http.StatusSeeOther {
		t.Fatalf("login on the standby: %d", st)
	}
	// The session opened on the standby works on the writer.
	if st, _ := b.do("GET", w+"/", nil); st != 200 {
		t.Fatalf("the standby's session on the writer: %d, want 200", st)
	}
	// Logout on the writer ends it on the standby.
	if st, _ := b.do("POST", w+"/logout", url.Values{"csrf": {b.csrf(w, "/")}}); st != http.StatusSeeOther {
		t.Fatalf("logout on the writer: %d", st)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, _ := b.do("GET", s+"/", nil)
		if st == http.StatusSeeOther {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby still serves a session logged out on the writer: %d", st)
		}
	}
	// Five wrong passwords spread over the two servers lock the name on
	// both: the sixth, even right, is refused on either.
	for i := range 5 {
		base := []string{w, s}[i%2]
		if st := newHABrowser(t, caPEM).login(base, "admin", "wrong"); st != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, st)
		}
	}
	for _, base := range []string{w, s} {
		if st := newHABrowser(t, caPEM).login(base, "admin", n1.AdminPassword()); st != http.StatusTooManyRequests {
			t.Fatalf("after five failures over two servers, login on %s: %d, want 429", base, st)
		}
	}

	// All of it is in the log, appended by the writer; what was done on
	// the standby names it. Failed logins: five wrong passwords and, on
	// each server, the first refused attempt of the address.
	want := map[string]int{"export.made": 1, "ui.login": 1, "ui.logout": 1, "ui.login_failed": 7}
	onStandby := map[string]int{"export.made": 1, "ui.login": 1, "ui.login_failed": 3}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got, fromStandby := map[string]int{}, map[string]int{}
		var q queried
		if st := adminGet(t, w, token, caPEM, "/api/v1/events", url.Values{"agent": {event.ServerStream}, "limit": {"1000"}}, &q); st != 200 {
			t.Fatalf("events: %d", st)
		}
		for _, e := range q.Events {
			if _, ok := want[e.Type]; !ok {
				continue
			}
			got[e.Type]++
			if e.Attrs[api.RecordedOnAttr] == standby {
				fromStandby[e.Type]++
			}
		}
		if mapsEqual(got, want) && mapsEqual(fromStandby, onStandby) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records in the log: %v (from the standby %v); want %v (%v)", got, fromStandby, want, onStandby)
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A first-server start (no --join) on a fresh data dir against an etcd that
// already holds the site (a restore into a new data dir, or a second server
// started without --join) makes no new bootstrap secrets: no second
// never-expiring admin token or year-long enrollment token, and no
// initial-admin-password file that does not log in.
func TestFreshDataDirAdoptsTheSite(t *testing.T) {
	ep, _ := siteEtcd(t)
	kek := testKEK(t)
	events := "sqlite:" + filepath.Join(t.TempDir(), "events.db")
	ctx := context.Background()
	c := nodeConfig(t, t.TempDir(), ep, events, "127.0.0.1", kek)
	c.Hostnames, c.ServiceName = []string{"127.0.0.1"}, "localhost"
	n1, err := app.Start(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	count := func(st *state.State) int {
		a, err1 := st.ListAPITokens(ctx)
		e, err2 := st.ListEnrollTokens(ctx)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		return len(a) + len(e)
	}
	tokensBefore := count(n1.State())
	n1.Close()
	dir2 := t.TempDir()
	c2 := nodeConfig(t, dir2, ep, events, "127.0.0.1", kek)
	c2.Hostnames, c2.ServiceName = []string{"127.0.0.1"}, "localhost"
	n2, err := app.Start(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if !n2.AdoptedSite() {
		t.Error("the server does not say it adopted the existing site")
	}
	if after := count(n2.State()); after != tokensBefore {
		t.Errorf("tokens before %d, after the fresh start %d: new bootstrap secrets were made", tokensBefore, after)
	}
	for _, f := range []string{app.FileAdminPassword, app.FileAdminToken, app.FileEnrollToken} {
		if _, err := os.Stat(filepath.Join(dir2, f)); !os.IsNotExist(err) {
			t.Errorf("%s written in the fresh data dir: %v", f, err)
		}
	}
}
