package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/shared/event"
)

// snapshot is everything a UI POST could change: users, registers,
// approvals, assignments, policies, and the UI's own server events.
func snapshot(t *testing.T, srv *app.Server) string {
	t.Helper()
	ctx := context.Background()
	us, err := srv.State().ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pols, err := srv.State().ListPolicies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{"users": us, "policies": pols}
	for _, p := range []string{"/api/v1/register", "/api/v1/media", "/api/v1/approvals", "/api/v1/disposals", "/api/v1/assignments"} {
		var v any
		if st := apiDo(t, srv, "GET", p, nil, &v); st != 200 {
			t.Fatalf("GET %s: %d", p, st)
		}
		out[p] = v
	}
	var changes []string
	for _, e := range serverEvents(t, srv, "") {
		if e.Attrs["via"] == "web" && !strings.HasPrefix(e.Type, "ui.log") {
			changes = append(changes, e.Type+" "+e.Object)
		}
	}
	out["changes"] = changes
	b, _ := json.Marshal(out)
	return string(b)
}

// writeRoutes are every state-changing POST of the UI with a valid form.
func writeRoutes(piID string, piRev int64, apID string, apRev int64) []struct {
	path string
	form url.Values
} {
	entry := `{"name":"顧客名簿","purpose":"商品発送","medium":"paper","owner":"山田 太郎","department":"営業部","retention":"5y","disposal_method":"シュレッダー"}`
	rev := func(n int64) []string { return []string{itoa(n)} }
	return []struct {
		path string
		form url.Values
	}{
		{"/policies/assign", url.Values{"target": {"department"}, "id": {"営業部"}, "policy": {"strict"}}},
		{"/registers/pi/new", url.Values{"entry": {entry}}},
		{"/registers/pi/" + piID, url.Values{"entry": {strings.Replace(entry, "顧客名簿", "顧客名簿（2026年度）", 1)}, "revision": rev(piRev)}},
		{"/registers/pi/" + piID + "/retire", url.Values{"revision": rev(piRev)}},
		{"/registers/pi/import", url.Values{}},
		{"/approvals/" + apID + "/approve", url.Values{"revision": rev(apRev)}},
		{"/approvals/" + apID + "/deny", url.Values{"revision": rev(apRev)}},
		{"/users", url.Values{"username": {"mallory"}, "role": {"admin"}, "password": {testPassword}}},
		{"/users/admin", url.Values{"role": {"auditor"}, "password": {testPassword}}},
		{"/registers/media/import", url.Values{}},
		{"/registers/approvals/import", url.Values{}},
		{"/registers/disposals/import", url.Values{}},
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func with(v url.Values, k, val string) url.Values {
	c := url.Values{}
	for kk, vv := range v {
		c[kk] = slices.Clone(vv)
	}
	if val != "" {
		c.Set(k, val)
	}
	return c
}

func TestRoles(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "audrey", "auditor")
	addUser(t, srv, "manabu", "manager")
	var pi struct {
		ID       string `json:"id"`
		Revision int64  `json:"revision"`
	}
	if st := apiDo(t, srv, "POST", "/api/v1/register", map[string]any{"name": "顧客名簿", "purpose": "商品発送", "medium": "paper",
		"owner": "山田 太郎", "department": "営業部", "retention": "5y", "disposal_method": "シュレッダー"}, &pi); st != 201 {
		t.Fatalf("create PI entry: %d", st)
	}
	apID, apRev := newApproval(t, srv, "山田", "PC-SALES01")
	routes := writeRoutes(pi.ID, pi.Revision, apID, apRev)

	t.Run("auditor changes nothing", func(t *testing.T) {
		b := newBrowser(t, srv)
		csrf := b.login("audrey", testPassword)
		before := snapshot(t, srv)
		for _, rt := range routes {
			if a := b.post(rt.path, with(rt.form, "csrf", csrf)); a.status != http.StatusForbidden {
				t.Errorf("auditor POST %s: %d, want 403", rt.path, a.status)
			}
		}
		for _, p := range []string{"/", "/hosts", "/events", "/registers/pi", "/approvals", "/policies", "/evidence"} {
			a := b.get(p)
			if a.status != 200 {
				t.Errorf("auditor GET %s: %d", p, a.status)
			}
			if strings.Contains(a.body, `action="/users`) || strings.Contains(a.body, `/approve"`) {
				t.Errorf("auditor sees a form it may not use on %s", p)
			}
		}
		if a := b.get("/users"); a.status != http.StatusForbidden {
			t.Errorf("auditor GET /users: %d", a.status)
		}
		if after := snapshot(t, srv); after != before {
			t.Fatalf("auditor changed state:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("manager cannot manage users or policies", func(t *testing.T) {
		b := newBrowser(t, srv)
		csrf := b.login("manabu", testPassword)
		before := snapshot(t, srv)
		if a := b.get("/users"); a.status != http.StatusForbidden {
			t.Errorf("manager GET /users: %d", a.status)
		}
		for _, rt := range routes {
			if !strings.HasPrefix(rt.path, "/users") && rt.path != "/policies/assign" {
				continue
			}
			if a := b.post(rt.path, with(rt.form, "csrf", csrf)); a.status != http.StatusForbidden {
				t.Errorf("manager POST %s: %d, want 403", rt.path, a.status)
			}
		}
		if strings.Contains(b.get("/").body, `href="/users"`) {
			t.Error("manager's menu links to users")
		}
		if after := snapshot(t, srv); after != before {
			t.Fatalf("manager changed state:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("anonymous", func(t *testing.T) {
		b := newBrowser(t, srv)
		for _, p := range []string{"/", "/hosts", "/hosts/x", "/events", "/events/export?format=csv", "/registers/pi", "/approvals", "/users", "/nope"} {
			a := b.get(p)
			if a.status != http.StatusSeeOther || !strings.HasPrefix(a.header.Get("Location"), "/login?next=") {
				t.Errorf("anonymous GET %s: %d %q, want the login page", p, a.status, a.header.Get("Location"))
			}
		}
		if a := b.get("/login?next=%2Fhosts"); a.status != 200 || !strings.Contains(a.body, `id="password"`) || !strings.Contains(a.body, `value="/hosts"`) {
			t.Errorf("login page: %d", a.status)
		}
		before := snapshot(t, srv)
		for _, rt := range routes {
			if a := b.post(rt.path, rt.form); a.status != http.StatusUnauthorized {
				t.Errorf("anonymous POST %s: %d, want 401", rt.path, a.status)
			}
		}
		if after := snapshot(t, srv); after != before {
			t.Fatal("anonymous request changed state")
		}
	})

	t.Run("csrf", func(t *testing.T) {
		admin := newBrowser(t, srv)
		admin.login("admin", srv.AdminPassword())
		other := newBrowser(t, srv)
		otherTok := other.login("audrey", testPassword)
		before := snapshot(t, srv)
		for _, rt := range routes {
			for _, tok := range []string{"", otherTok, "x"} {
				if a := admin.post(rt.path, with(rt.form, "csrf", tok)); a.status != http.StatusForbidden {
					t.Errorf("admin POST %s with csrf %q: %d, want 403", rt.path, tok, a.status)
				}
			}
		}
		if after := snapshot(t, srv); after != before {
			t.Fatalf("a form without its CSRF token changed state:\nbefore %s\nafter  %s", before, after)
		}
		// The login form has its own token.
		fresh := newBrowser(t, srv)
		fresh.get("/login")
		if a := fresh.post("/login", url.Values{"username": {"admin"}, "password": {srv.AdminPassword()}}); a.status != http.StatusForbidden {
			t.Errorf("login without its token: %d", a.status)
		}
	})

	t.Run("admin changes are recorded", func(t *testing.T) {
		b := newBrowser(t, srv)
		csrf := b.login("admin", srv.AdminPassword())
		for _, rt := range routes {
			switch {
			case strings.HasSuffix(rt.path, "/import"), rt.path == "/users/admin", rt.path == "/approvals/"+apID+"/deny",
				rt.path == "/registers/pi/"+pi.ID+"/retire":
				continue // import needs a file; an admin cannot demote themselves; one decision only
			}
			if a := b.post(rt.path, with(rt.form, "csrf", csrf)); a.status != http.StatusSeeOther {
				t.Errorf("admin POST %s: %d\n%.600s", rt.path, a.status, a.body)
			}
		}
		if a := b.post("/users/admin", with(routes[8].form, "csrf", csrf)); a.status != http.StatusBadRequest {
			t.Errorf("admin demoted themselves: %d", a.status)
		}
		b.post("/logout", url.Values{"csrf": {csrf}})
		if a := b.get("/"); a.status != http.StatusSeeOther {
			t.Errorf("after logout: %d", a.status)
		}
		var got []string
		for _, e := range serverEvents(t, srv, "") {
			if e.Attrs["via"] == "web" && e.User == "admin" {
				if e.Control == "" || e.Agent != event.ServerStream {
					t.Errorf("event %s without control or off the server stream", e.Type)
				}
				got = append(got, e.Type)
			}
		}
		for _, want := range []string{"ui.login", "policy.assigned", "register.created", "register.updated", "register.approved", "user.created", "ui.logout"} {
			if !slices.Contains(got, want) {
				t.Errorf("no %s event from the admin's session; got %v", want, got)
			}
		}
		// The new user can log in with their role.
		if newBrowser(t, srv).tryLogin("mallory", testPassword).status != http.StatusSeeOther {
			t.Error("created user cannot log in")
		}
	})

	// The 個人情報保護管理者 keeps the registers (JIS Q 15001 A.3.3.1).
	t.Run("manager keeps the registers", func(t *testing.T) {
		b := newBrowser(t, srv)
		csrf := b.login("manabu", testPassword)
		var cur struct {
			Revision int64 `json:"revision"`
		}
		if st := apiDo(t, srv, "GET", "/api/v1/register/"+pi.ID, nil, &cur); st != 200 {
			t.Fatalf("get entry: %d", st)
		}
		if a := b.post("/registers/pi/"+pi.ID+"/retire", url.Values{"csrf": {csrf}, "revision": {itoa(cur.Revision)}}); a.status != http.StatusSeeOther {
			t.Fatalf("manager retire: %d\n%.600s", a.status, a.body)
		}
		var after struct {
			Status string `json:"status"`
		}
		if apiDo(t, srv, "GET", "/api/v1/register/"+pi.ID, nil, &after); after.Status != "retired" {
			t.Errorf("entry after the manager retired it: %q", after.Status)
		}
	})
}

func TestLoginRateLimit(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "audrey", "auditor")
	b := newBrowser(t, srv)
	for i := range 5 {
		if a := b.tryLogin("audrey", "wrong password "+itoa(int64(i))); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, a.status)
		}
	}
	// The sixth try is refused before the password is checked, even the right one.
	if a := b.tryLogin("audrey", testPassword); a.status != http.StatusTooManyRequests {
		t.Fatalf("after 5 failures: %d, want 429", a.status)
	}
	// Another user from the same address still gets in (per-user limit).
	if a := b.tryLogin("admin", srv.AdminPassword()); a.status != http.StatusSeeOther {
		t.Fatalf("admin after audrey's failures: %d", a.status)
	}
	// The per-address limit: 20 failures from one address (5 above, 15
	// here) bite for every name.
	c := newBrowser(t, srv)
	for i := range 20 {
		c.tryLogin("nobody"+itoa(int64(i)), "x")
	}
	if a := c.tryLogin("admin", srv.AdminPassword()); a.status != http.StatusTooManyRequests {
		t.Fatalf("after 20 failures from one address: %d, want 429", a.status)
	}
	failed := serverEvents(t, srv, "ui.login_failed")
	var throttled, bad int
	for _, e := range failed {
		switch e.Attrs["reason"] {
		case "throttled":
			throttled++
		case "bad credentials":
			bad++
		}
	}
	// Refused attempts from one address: the first is recorded, the other
	// six only counted for the window's summary (TestLoginFloodSummarised).
	if bad != 20 || throttled != 1 {
		t.Fatalf("login_failed events: %d bad, %d throttled; want 20 and 1", bad, throttled)
	}
	if n := len(serverEvents(t, srv, "ui.login")); n != 1 {
		t.Fatalf("ui.login events: %d", n)
	}
	for _, e := range failed {
		if strings.Contains(fmt.Sprint(e.Attrs)+e.Object, "wrong password") {
			t.Fatal("a tried password reached the log")
		}
	}
}
