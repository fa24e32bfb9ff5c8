package web

import (
	"crypto/subtle"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/mamori/mamori/dashboards"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// routes is the UI's one route table.
func (u *UI) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(dashboards.Static, "static")
	fileServer := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable") // content-hash URLs
		fileServer.ServeHTTP(w, r)
	})
	// Browsers ask for /favicon.ico on their own; answer it without a
	// session rather than send it to the login page.
	mux.HandleFunc("GET /favicon.ico", http.NotFound)
	mux.HandleFunc("GET /login", u.handleLoginPage)
	mux.HandleFunc("POST /login", u.handleLogin)
	mux.HandleFunc("GET /lang/{lang}", u.handleLang)
	mux.HandleFunc("POST /logout", u.auth(anyRole, u.handleLogout))

	mux.HandleFunc("GET /{$}", u.auth(anyRole, u.handleOverview))
	mux.HandleFunc("GET /hosts", u.auth(anyRole, u.handleHosts))
	mux.HandleFunc("GET /hosts/{id}", u.auth(anyRole, u.handleHost))
	mux.HandleFunc("GET /events", u.auth(anyRole, u.handleEvents))
	mux.HandleFunc("GET /events/export", u.auth(anyRole, u.handleExport))
	mux.HandleFunc("GET /evidence", u.auth(anyRole, u.handleEvidence))
	mux.HandleFunc("GET /policies", u.auth(anyRole, u.handlePolicies))
	mux.HandleFunc("GET /policies/{name}", u.auth(anyRole, u.handlePolicies))
	mux.HandleFunc("POST /policies/assign", u.auth(adminsOnly, u.handleAssign))
	mux.HandleFunc("GET /registers/{kind}", u.auth(anyRole, u.handleRegister))
	mux.HandleFunc("GET /registers/{kind}/export", u.auth(anyRole, u.handleRegisterExport))
	mux.HandleFunc("POST /registers/{kind}/import", u.auth(deciders, u.handleRegisterImport))
	mux.HandleFunc("GET /registers/{kind}/{id}", u.auth(anyRole, u.handleEntry))
	mux.HandleFunc("POST /registers/{kind}/{id}", u.auth(deciders, u.handleSaveEntry))
	mux.HandleFunc("POST /registers/{kind}/{id}/retire", u.auth(deciders, u.handleRetire))
	mux.HandleFunc("GET /approvals", u.auth(anyRole, u.handleApprovals))
	mux.HandleFunc("POST /approvals/{id}/{decision}", u.auth(deciders, u.handleDecide))
	mux.HandleFunc("GET /account", u.auth(anyRole, u.handleAccount))
	mux.HandleFunc("POST /account/password", u.auth(anyRole, u.handleChangePassword))
	mux.HandleFunc("GET /users", u.auth(adminsOnly, u.handleUsers))
	mux.HandleFunc("POST /users", u.auth(adminsOnly, u.handleCreateUser))
	mux.HandleFunc("POST /users/{name}", u.auth(adminsOnly, u.handleUpdateUser))
	mux.HandleFunc("GET /tokens", u.auth(adminsOnly, u.handleTokens))
	mux.HandleFunc("POST /tokens", u.auth(adminsOnly, u.handleCreateToken))
	mux.HandleFunc("POST /tokens/{id}/revoke", u.auth(adminsOnly, u.handleRevokeToken))
	u.alertingRoutes(mux)
	// Anything else: logged-in users get a 404 page, others the login page.
	mux.HandleFunc("/", u.auth(anyRole, func(w http.ResponseWriter, r *http.Request) {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
	}))
	return mux
}

type loginData struct{ Next string }

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request, status int, errKey string) {
	// Keep a login token the browser already holds: a second login page
	// (another tab, or the browser's own /favicon.ico request redirected
	// here) must not invalidate the form already shown.
	tok := ""
	if c, err := r.Cookie(cookieLogin); err == nil && len(c.Value) == len(randomToken()) {
		tok = c.Value
	}
	if tok == "" {
		tok = randomToken()
	}
	setCookie(w, cookieLogin, tok, 3600)
	p := u.newPage(r, "", "login")
	p.CSRF = tok
	p.User = nil
	p.Data = loginData{Next: localPath(r.FormValue("next"))}
	if errKey != "" {
		p.Err = p.L[errKey]
	}
	u.render(w, r, status, "login", p)
}

func (u *UI) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	u.loginPage(w, r, http.StatusOK, "")
}

// handleLogin checks the login form's own CSRF token (double-submit
// cookie), the rate limits per source address and per (user name, source),
// then the password. A source that has not failed is never refused the
// right password, so no one elsewhere can lock a user out. Success and
// failure are recorded; refused attempts are summarised per source and
// window (throttleLog), and the user name stored is bounded.
func (u *UI) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	c, err := r.Cookie(cookieLogin)
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		u.loginPage(w, r, http.StatusForbidden, "err_csrf")
		return
	}
	name := strings.TrimSpace(r.PostFormValue("username"))
	shown := boundName(name)
	ip := clientIP(r)
	pairKey := strings.ToLower(shown) + "\x00" + ip
	if !u.ipLimit.allowed(r.Context(), ip) || !u.usrLimit.allowed(r.Context(), pairKey) {
		if u.flood.add(ip, shown) {
			u.recordFailed(r, shown, ip, "throttled")
		}
		u.loginPage(w, r, http.StatusTooManyRequests, "err_throttled")
		return
	}
	usr, err := u.cfg.State.CheckPassword(r.Context(), name, r.PostFormValue("password"))
	if err != nil {
		if !errors.Is(err, state.ErrBadCredentials) {
			u.internal(w, r, "checking password", err)
			return
		}
		u.ipLimit.fail(r.Context(), ip)
		u.usrLimit.fail(r.Context(), pairKey)
		u.recordFailed(r, shown, ip, "bad credentials")
		u.loginPage(w, r, http.StatusUnauthorized, "err_login")
		return
	}
	u.usrLimit.reset(r.Context(), pairKey)
	s, err := u.sessions.create(r.Context(), usr.Name, usr.Role)
	if err != nil {
		u.internal(w, r, "creating the session", err)
		return
	}
	setCookie(w, cookieSession, s.id, 0)
	setCookie(w, cookieLogin, "", -1)
	u.record(r, usr.Name, event.Event{Type: "ui.login", Object: "user/" + usr.Name, Attrs: event.Attrs{"ip": ip, "role": usr.Role}})
	http.Redirect(w, r, localPath(r.PostFormValue("next")), http.StatusSeeOther)
}

func (u *UI) handleLogout(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	if c, err := r.Cookie(cookieSession); err == nil {
		u.sessions.drop(r.Context(), c.Value)
	}
	setCookie(w, cookieSession, "", -1)
	u.record(r, s.Name, event.Event{Type: "ui.logout", Object: "user/" + s.Name})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// handleLang switches the language (a preference cookie, no server state).
func (u *UI) handleLang(w http.ResponseWriter, r *http.Request) {
	lang := r.PathValue("lang")
	if lang != "ja" && lang != "en" {
		http.Error(w, "lang: want ja or en", http.StatusBadRequest)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieLang, Value: lang, Path: "/", MaxAge: 365 * 24 * 3600,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	// Back to the page the user was on (same origin only).
	to := "/"
	if ref, err := url.Parse(r.Referer()); err == nil && ref.Host == r.Host && ref.Path != "" {
		to = localPath(ref.RequestURI())
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}
