package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/state"
)

// Cookie names. __Host- makes browsers insist on Secure, Path=/ and no
// Domain, so no other host or path can plant a session.
const (
	cookieSession = "__Host-mamori-session"
	cookieLogin   = "__Host-mamori-login" // CSRF token of the login form
	cookieLang    = "mamori-lang"
)

// Session lifetimes: idle and absolute. sessionRecheck is how long a
// server trusts its copy of a session before asking etcd again (a logout or
// role change on another server reaches it that late); sessionTouch is how
// often a session in use renews its idle time in etcd.
const (
	sessionIdle    = 30 * time.Minute
	sessionMax     = 12 * time.Hour
	sessionRecheck = time.Second
	sessionTouch   = time.Minute
)

// session is a logged-in user. Sessions live in etcd (state.Session, under
// a hash of the id), so every server of a site knows them and a server's
// restart or failure logs no one out; each server keeps a copy it trusts
// for sessionRecheck, and while etcd is unavailable, for as long as the
// session would live.
type session struct {
	id, CSRF   string
	Name, Role string
	created    time.Time
	seen       time.Time
	lease      int64     // etcd lease that ends the session when idle
	fetched    time.Time // when etcd last confirmed it
	touched    time.Time // when its lease was last renewed
}

// sessionStore is where sessions live (state.State).
type sessionStore interface {
	CreateSession(ctx context.Context, id string, s state.Session, idle time.Duration) error
	SessionByID(ctx context.Context, id string) (state.Session, int64, error)
	TouchSession(ctx context.Context, lease int64) error
	DeleteSession(ctx context.Context, id string) error
	DeleteUserSessions(ctx context.Context, name string) error
}

type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	now func() time.Time
	st  sessionStore
	log zerolog.Logger
}

func newSessions(now func() time.Time, st sessionStore, log zerolog.Logger) *sessions {
	return &sessions{m: map[string]*session{}, now: now, st: st, log: log}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) create(ctx context.Context, name, role string) (*session, error) {
	now := ss.now()
	s := &session{id: randomToken(), CSRF: randomToken(), Name: name, Role: role, created: now, seen: now, fetched: now, touched: now}
	if err := ss.st.CreateSession(ctx, s.id, state.Session{Name: name, Role: role, CSRF: s.CSRF, Created: now}, sessionIdle); err != nil {
		return nil, err
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, o := range ss.m { // sweep expired copies while we are here
		if ss.expired(o, now) {
			delete(ss.m, id)
		}
	}
	ss.m[s.id] = s
	c := *s
	return &c, nil
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) > sessionIdle || now.Sub(s.created) > sessionMax
}

// get returns the live session of id, or nil.
func (ss *sessions) get(ctx context.Context, id string) *session {
	now := ss.now()
	var s session // a copy: requests of one session run at once
	ss.mu.Lock()
	cached, ok := ss.m[id]
	if ok {
		s = *cached
	}
	ss.mu.Unlock()
	if !ok || now.Sub(s.fetched) >= sessionRecheck {
		stored, lease, err := ss.st.SessionByID(ctx, id)
		switch {
		case errors.Is(err, state.ErrNotFound):
			ss.forget(id)
			return nil
		case err != nil:
			// etcd unavailable: a session this server knows goes on.
			if !ok {
				return nil
			}
			ss.log.Debug().Err(err).Msg("web: session checked against this server's copy")
		default:
			touched := s.touched // zero when first seen here: renew its idle time now
			s = session{id: id, CSRF: stored.CSRF, Name: stored.Name, Role: stored.Role, created: stored.Created,
				seen: now, lease: lease, fetched: now, touched: touched}
		}
	}
	if ss.expired(&s, now) {
		ss.drop(ctx, id)
		return nil
	}
	s.seen = now
	if now.Sub(s.touched) > sessionTouch && s.lease != 0 {
		if err := ss.st.TouchSession(ctx, s.lease); err != nil {
			ss.log.Debug().Err(err).Msg("web: session idle time not renewed")
		} else {
			s.touched = now
		}
	}
	c := s
	ss.mu.Lock()
	ss.m[id] = &c
	ss.mu.Unlock()
	return &s
}

func (ss *sessions) forget(id string) {
	ss.mu.Lock()
	delete(ss.m, id)
	ss.mu.Unlock()
}

// drop ends a session on every server (logout).
func (ss *sessions) drop(ctx context.Context, id string) {
	ss.forget(id)
	if err := ss.st.DeleteSession(ctx, id); err != nil {
		ss.log.Error().Err(err).Msg("web: session not ended in etcd: it ends when idle")
	}
}

// dropUser logs a user out everywhere (after a role change, disable or
// password reset).
func (ss *sessions) dropUser(ctx context.Context, name string) error {
	ss.mu.Lock()
	for id, s := range ss.m {
		if s.Name == name {
			delete(ss.m, id)
		}
	}
	ss.mu.Unlock()
	return ss.st.DeleteUserSessions(ctx, name)
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) *session { s, _ := ctx.Value(sessionKey{}).(*session); return s }

// need says who may use a handler.
type need int

const (
	anyRole    need = iota // any logged-in user (reads)
	deciders               // managers and admins: carry-out decisions, the registers
	adminsOnly             // policies, assignments, users, tokens, notification settings
)

func (n need) allows(role string) bool {
	switch n {
	case anyRole:
		return role == "admin" || role == "auditor" || role == "manager"
	case deciders:
		return role == "admin" || role == "manager"
	default:
		return role == "admin"
	}
}

// maxForm bounds form bodies; CSV imports are the largest.
const maxForm = 9 << 20

// auth wraps a handler: no session sends GETs to the login page and
// answers 401 otherwise; a state-changing request must carry the session's
// CSRF token; the role must be allowed. All checked here, on the server.
func (u *UI) auth(n need, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var s *session
		if c, err := r.Cookie(cookieSession); err == nil {
			s = u.sessions.get(r.Context(), c.Value)
		}
		if s == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Cookie realm="mamori"`)
			u.fail(w, r, http.StatusUnauthorized, "err_forbidden", "")
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, s))
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) != 1 {
				u.log.Warn().Str("path", r.URL.Path).Str("user", s.Name).Msg("web: refused a request without its CSRF token")
				u.fail(w, r, http.StatusForbidden, "err_csrf", "")
				return
			}
		}
		if !n.allows(s.Role) {
			u.fail(w, r, http.StatusForbidden, "err_forbidden", "")
			return
		}
		h(w, r)
	}
}

// limiter counts failures per key in a sliding window. Up to max failures
// in the window cost nothing; after that the key waits a backoff that
// doubles with each further failure (base, 2×base, ... up to the window).
// Failures are counted here and in etcd (shared by every server of the
// site, so spreading attempts over the servers gains nothing); while etcd
// is unavailable this server's own count still limits.
type limiter struct {
	mu     sync.Mutex
	now    func() time.Time
	max    int
	base   time.Duration
	window time.Duration
	fails  map[string][]time.Time
	kind   string     // the key's namespace in the shared count
	shared failCounts // nil: this server's count only
	log    zerolog.Logger
}

// failCounts is the site's shared count of failed logins (state.State).
type failCounts interface {
	LoginFailures(ctx context.Context, key string) ([]time.Time, error)
	AddLoginFailure(ctx context.Context, key string, t time.Time, window time.Duration, keep int) error
	ResetLoginFailures(ctx context.Context, key string) error
}

func newLimiter(now func() time.Time, max int, window time.Duration) *limiter {
	return &limiter{now: now, max: max, base: 30 * time.Second, window: window, fails: map[string][]time.Time{}}
}

func (l *limiter) prune(key string, now time.Time) []time.Time {
	ts := l.fails[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > l.window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.fails, key)
	} else {
		l.fails[key] = ts
	}
	return ts
}

// allowed reports whether key may try now: fewer than max failures in the
// window, or the backoff since its last failure has passed; counted here
// and across the site.
func (l *limiter) allowed(ctx context.Context, key string) bool {
	l.mu.Lock()
	now := l.now()
	ok := l.allows(l.prune(key, now), now)
	l.mu.Unlock()
	if !ok || l.shared == nil {
		return ok
	}
	ts, err := l.shared.LoginFailures(ctx, l.kind+key)
	if err != nil {
		l.log.Debug().Err(err).Msg("web: shared login failure count unavailable: this server's count limits")
		return true
	}
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > l.window {
		i++
	}
	return l.allows(ts[i:], now)
}

// allows applies the rule to the failures of the window (oldest first).
func (l *limiter) allows(ts []time.Time, now time.Time) bool {
	if len(ts) < l.max {
		return true
	}
	return now.Sub(ts[len(ts)-1]) >= l.backoff(len(ts))
}

// backoff is the wait after n failures (n >= max).
func (l *limiter) backoff(n int) time.Duration {
	d := l.base
	for i := l.max; i < n && d < l.window; i++ {
		d *= 2
	}
	return min(d, l.window)
}

func (l *limiter) fail(ctx context.Context, key string) {
	l.mu.Lock()
	now := l.now()
	if len(l.fails) > 100000 { // bound memory under a spray of keys
		for k := range l.fails {
			l.prune(k, now)
		}
	}
	ts := l.prune(key, now)
	if len(ts) >= 4*l.max { // enough to keep the backoff at its cap
		ts = ts[1:]
	}
	l.fails[key] = append(ts, now)
	l.mu.Unlock()
	if l.shared != nil {
		if err := l.shared.AddLoginFailure(ctx, l.kind+key, now, l.window, 4*l.max); err != nil {
			l.log.Warn().Err(err).Msg("web: failed login not counted across the site (counted on this server)")
		}
	}
}

func (l *limiter) reset(ctx context.Context, key string) {
	l.mu.Lock()
	delete(l.fails, key)
	l.mu.Unlock()
	if l.shared != nil {
		if err := l.shared.ResetLoginFailures(ctx, l.kind+key); err != nil {
			l.log.Warn().Err(err).Msg("web: shared login failure count not reset")
		}
	}
}

// clientIP is the peer address; the UI is served directly, not behind a
// proxy, so forwarded headers are not trusted.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// localPath keeps a post-login redirect on this site: only a path of this
// origin, with no control characters or backslashes (raw or
// percent-encoded) and no second leading slash once cleaned, so that no
// browser can read it as another host ("//evil", "/\\evil", "/\t/evil").
// Anything else goes to "/".
func localPath(p string) string {
	if p == "" || len(p) > 2048 || badPathChars(p) || !strings.HasPrefix(p, "/") ||
		strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		!strings.HasPrefix(u.Path, "/") || badPathChars(u.Path) {
		return "/"
	}
	clean := path.Clean(u.Path)
	if strings.HasPrefix(clean, "//") {
		return "/"
	}
	out := (&url.URL{Path: clean, RawQuery: u.RawQuery}).RequestURI()
	if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || badPathChars(out) {
		return "/"
	}
	return out
}

// badPathChars reports control characters, backslashes and invalid UTF-8.
func badPathChars(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\\' || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return true
		}
	}
	return false
}
