package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Every user changes their own password: an auditor's password need not
// stay one the admin chose. The current password is asked for, the new one
// meets the policy and is typed twice; the change ends the user's other
// sessions, keeps this one, and is recorded.
func TestOwnPasswordChange(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "kansa", "auditor")
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)
	other := newBrowser(t, srv) // the same user elsewhere
	other.login("kansa", testPassword)

	top := b.get("/")
	if !strings.Contains(top.body, `href="/account"`) {
		t.Fatalf("no link to the account page:\n%.2000s", top.body)
	}
	pg := b.get("/account")
	if pg.status != 200 || !strings.Contains(pg.body, `name="current"`) || !strings.Contains(pg.body, "パスワードの変更") {
		t.Fatalf("account page: %d\n%.3000s", pg.status, pg.body)
	}
	csrf := csrfOf(t, pg.body)
	const next = "a quiet library at dawn"
	for name, c := range map[string]struct {
		form   url.Values
		status int
		want   string
	}{
		"wrong current": {url.Values{"current": {"not my password at all"}, "password": {next}, "confirm": {next}}, http.StatusUnauthorized, "現在のパスワードが違います"},
		"not confirmed": {url.Values{"current": {testPassword}, "password": {next}, "confirm": {next + "!"}}, http.StatusBadRequest, "確認用のパスワードが一致しません"},
		"too short":     {url.Values{"current": {testPassword}, "password": {"short"}, "confirm": {"short"}}, http.StatusBadRequest, "12文字以上"},
		"the same":      {url.Values{"current": {testPassword}, "password": {testPassword}, "confirm": {testPassword}}, http.StatusBadRequest, "現在のパスワードと同じです"},
	} {
		c.form.Set("csrf", csrf)
		if a := b.post("/account/password", c.form); a.status != c.status || !strings.Contains(a.body, c.want) {
			t.Errorf("%s: %d, want %d with %q:\n%.2000s", name, a.status, c.status, c.want, a.body)
		}
	}
	if a := newBrowser(t, srv).tryLogin("kansa", testPassword); a.status != http.StatusSeeOther {
		t.Fatalf("a refused change changed the password: login %d", a.status)
	}
	ok := b.post("/account/password", url.Values{"csrf": {csrf}, "current": {testPassword}, "password": {next}, "confirm": {next}})
	if ok.status != http.StatusSeeOther {
		t.Fatalf("change: %d\n%.2000s", ok.status, ok.body)
	}
	if a := b.get("/account"); a.status != 200 {
		t.Errorf("this session ended with the change: %d", a.status)
	}
	if a := other.get("/"); a.status == 200 {
		t.Error("the user's other session survived the change")
	}
	if a := newBrowser(t, srv).tryLogin("kansa", testPassword); a.status == http.StatusSeeOther {
		t.Error("the old password still logs in")
	}
	newBrowser(t, srv).login("kansa", next)
	var changed, failed int
	for _, e := range serverEvents(t, srv, "user.password_changed") {
		if e.User == "kansa" && e.Object == "user/kansa" {
			changed++
		}
	}
	for _, e := range serverEvents(t, srv, "user.password_change_failed") {
		if e.User == "kansa" {
			failed++
		}
	}
	if changed != 1 || failed != 1 {
		t.Errorf("recorded %d changes and %d wrong current passwords, want 1 and 1", changed, failed)
	}
}
