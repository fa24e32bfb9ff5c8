package web_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// The tests drive a real server (app.Start: embedded etcd, SQLite event
// store, compliance tracker, registers) on loopback over TLS, since the UI's
// cookies are Secure and __Host- prefixed.

const testPassword = "correct horse battery staple"

func testConfig(tb testing.TB, dir, verifierDir string) app.Config {
	return app.Config{DataDir: dir, Listen: "127.0.0.1:0", VerifierDir: verifierDir,
		Hostnames: []string{"127.0.0.1", "localhost"}, Log: zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.ErrorLevel)}
}

func startServer(tb testing.TB, dir string) *app.Server {
	tb.Helper()
	srv, err := app.Start(context.Background(), testConfig(tb, dir, tb.TempDir()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	return srv
}

// addUser creates a user with testPassword.
func addUser(tb testing.TB, srv *app.Server, name, role string) {
	tb.Helper()
	if err := srv.State().CreateUser(context.Background(), name, role, testPassword); err != nil {
		tb.Fatal(err)
	}
}

// status is one control's verdict as an agent reports it.
type status struct {
	control, state, reason, ja, en string
}

// addHost enrols an agent record in state and stores its status events
// (plus files file.modified events by user) through the event store the app uses, as the
// agent plane would after chain checks.
func addHost(tb testing.TB, srv *app.Server, hostname, dept string, sts []status, files int, user string) string {
	tb.Helper()
	ctx := context.Background()
	id := pki.NewAgentID()
	now := time.Now().UTC()
	if err := srv.State().PutAgent(ctx, state.Agent{ID: id, Hostname: hostname, OS: "windows", Arch: "amd64",
		OSVersion: "11 23H2", Department: dept, Enrolled: now.Add(-time.Hour)}); err != nil {
		tb.Fatal(err)
	}
	var evs []event.Event
	for _, s := range sts {
		sev := event.Info
		if s.state == "fail" {
			sev = event.Violation
		}
		a := event.Attrs{"status": s.state, "since": now.Add(-10 * time.Minute).Format(time.RFC3339)}
		if s.reason != "" {
			a["reason"], a["reason_ja"], a["reason_en"] = s.reason, s.ja, s.en
		}
		evs = append(evs, event.Event{Control: s.control, Type: s.control + ".status", Severity: sev, Attrs: a})
	}
	for i := range files {
		evs = append(evs, event.Event{Control: "fileaccess", Type: "file.modified", Severity: event.Info,
			User: user, Process: "EXCEL.EXE", Object: fmt.Sprintf(`D:\顧客\list-%03d.xlsx`, i)})
	}
	prev := ""
	for i := range evs {
		evs[i].Agent, evs[i].Seq, evs[i].Time = id, uint64(i+1), now.Add(time.Duration(i-len(evs))*time.Second)
		if err := evs[i].Seal(prev); err != nil {
			tb.Fatal(err)
		}
		prev = evs[i].Hash
	}
	if _, err := srv.Store().Append(ctx, id, evs); err != nil {
		tb.Fatal(err)
	}
	srv.Compliance().Invalidate() // the inventory is cached; a new agent must show at once
	return id
}

// serverEvents reads the server stream's events of one type.
func serverEvents(tb testing.TB, srv *app.Server, typ string) []eventlog.Stored {
	tb.Helper()
	var out []eventlog.Stored
	f := eventlog.Filter{Agent: event.ServerStream, Type: typ, Limit: eventlog.MaxLimit}
	for {
		pg, err := srv.Store().Query(context.Background(), f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, pg.Events...)
		if pg.Next == "" {
			return out
		}
		f.Cursor = pg.Next
	}
}

// browser is an HTTP client with its own cookie jar (one user's session)
// that does not follow redirects, so tests see each answer.
type browser struct {
	tb   testing.TB
	base string
	c    *http.Client
}

func newBrowser(tb testing.TB, srv *app.Server) *browser {
	tb.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM())
	jar, _ := cookiejar.New(nil)
	return &browser{tb: tb, base: srv.URL(), c: &http.Client{Jar: jar, Timeout: time.Minute,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type answer struct {
	status int
	body   string
	header http.Header
}

func (b *browser) do(method, path string, form url.Values, hdr map[string]string) answer {
	b.tb.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.tb.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.tb.Fatal(err)
	}
	return answer{status: resp.StatusCode, body: string(raw), header: resp.Header}
}

func (b *browser) get(path string) answer { b.tb.Helper(); return b.do("GET", path, nil, nil) }

func (b *browser) post(path string, form url.Values) answer {
	b.tb.Helper()
	return b.do("POST", path, form, nil)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf finds the CSRF token of the first form on a page.
func csrfOf(tb testing.TB, page string) string {
	tb.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		tb.Fatalf("no csrf token on the page:\n%.2000s", page)
	}
	return m[1]
}

// tryLogin posts the login form as a browser would: read the form (which
// sets its CSRF cookie), submit it.
func (b *browser) tryLogin(name, password string) answer {
	b.tb.Helper()
	pg := b.get("/login")
	if pg.status != 200 {
		b.tb.Fatalf("GET /login: %d", pg.status)
	}
	return b.post("/login", url.Values{"csrf": {csrfOf(b.tb, pg.body)}, "username": {name}, "password": {password}, "next": {"/"}})
}

// login logs in and returns the session's CSRF token.
func (b *browser) login(name, password string) string {
	b.tb.Helper()
	a := b.tryLogin(name, password)
	if a.status != http.StatusSeeOther {
		b.tb.Fatalf("login %s: %d\n%.1000s", name, a.status, a.body)
	}
	pg := b.get("/")
	if pg.status != 200 {
		b.tb.Fatalf("overview after login: %d", pg.status)
	}
	return csrfOf(b.tb, pg.body)
}

// apiDo calls the admin API with the bootstrap admin token.
func apiDo(tb testing.TB, srv *app.Server, method, path string, in, out any) int {
	tb.Helper()
	b := newBrowser(tb, srv)
	var body io.Reader
	if in != nil {
		raw, _ := json.Marshal(in)
		body = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, srv.URL()+path, body)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// newApproval files a carry-out request through the admin API.
func newApproval(tb testing.TB, srv *app.Server, requester, host string) (id string, rev int64) {
	tb.Helper()
	now := time.Now()
	var ap struct {
		ID       string `json:"id"`
		Revision int64  `json:"revision"`
	}
	req := map[string]any{"requester": requester, "serial": "AA00123456", "host": host, "purpose": "展示会デモ",
		"from": now.Format(time.RFC3339), "to": now.Add(48 * time.Hour).Format(time.RFC3339)}
	if st := apiDo(tb, srv, "POST", "/api/v1/approvals", req, &ap); st != 201 {
		tb.Fatalf("create approval: %d", st)
	}
	return ap.ID, ap.Revision
}
