package web_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTokensPage: an admin lists tokens, makes an expiring read-only API
// token for an auditor's script (shown once), and revokes it; it stops
// working at once. Other roles cannot see the page.
func TestTokensPage(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "audrey", "auditor")
	adm := newBrowser(t, srv)
	csrf := adm.login("admin", srv.AdminPassword())
	pg := adm.get("/tokens")
	if pg.status != 200 || strings.Count(pg.body, "/revoke") < 2 { // bootstrap enroll and admin tokens
		t.Fatalf("tokens page: %d\n%.2000s", pg.status, pg.body)
	}
	a := adm.post("/tokens", url.Values{"csrf": {csrf}, "name": {"audit-script"}, "role": {"auditor"}, "days": {"30"}})
	m := regexp.MustCompile(`<code id="new-token">([A-Za-z0-9_-]+)</code> \(([0-9a-f]{16})\)`).FindStringSubmatch(a.body)
	if a.status != http.StatusCreated || m == nil {
		t.Fatalf("create: %d\n%.2000s", a.status, a.body)
	}
	tok, id := m[1], m[2]
	use := func() int {
		req, _ := http.NewRequest("GET", srv.URL()+"/api/v1/events?limit=1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := adm.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := use(); st != 200 {
		t.Fatalf("new token: %d", st)
	}
	if pg := adm.get("/tokens"); strings.Contains(pg.body, tok) {
		t.Fatal("the token's secret is shown again")
	}
	if a := adm.post("/tokens/"+id+"/revoke", url.Values{"csrf": {csrf}}); a.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d", a.status)
	}
	if st := use(); st != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", st)
	}
	aud := newBrowser(t, srv)
	aud.login("audrey", testPassword)
	if pg := aud.get("/tokens"); pg.status != http.StatusForbidden {
		t.Fatalf("auditor on the tokens page: %d", pg.status)
	}
	if n := len(serverEvents(t, srv, "token.revoked")); n != 1 {
		t.Fatalf("token.revoked events: %d", n)
	}
	// A token whose uses are spent within its life is "used up", not
	// "expired": the admin needs more uses, not a longer life.
	plain, et, err := srv.State().CreateEnrollToken(context.Background(), time.Hour, 1, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.State().ConsumeEnrollToken(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	var row string
	for _, r := range strings.Split(adm.get("/tokens").body, "<tr") {
		if strings.Contains(r, et.ID) {
			row = r
		}
	}
	if !strings.Contains(row, "使用回数切れ") || strings.Contains(row, "期限切れ") {
		t.Errorf("spent token's row: %s", row)
	}
}
