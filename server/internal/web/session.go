package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Cookie names. __Host- makes browsers insist on Secure, Path=/ and no
// Domain, so no other host or path can plant a session.
const (
	cookieSession = "__Host-mamori-session"
	cookieLogin   = "__Host-mamori-login" // CSRF token of the login form
	cookieLang    = "mamori-lang"
)

// Session lifetimes: idle and absolute.
const (
	sessionIdle = 30 * time.Minute
	sessionMax  = 12 * time.Hour
)

// session is a logged-in user. Sessions live in memory: a restart logs
// everyone out, which is fine for a handful of office users.
type session struct {
	id, CSRF   string
	Name, Role string
	created    time.Time
	seen       time.Time
}

type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	now func() time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) create(name, role string) *session {
	now := ss.now()
	s := &session{id: randomToken(), CSRF: randomToken(), Name: name, Role: role, created: now, seen: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, o := range ss.m { // sweep expired ones while we are here
		if ss.expired(o, now) {
			delete(ss.m, id)
		}
	}
	ss.m[s.id] = s
	return s
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) > sessionIdle || now.Sub(s.created) > sessionMax
}

func (ss *sessions) get(id string) *session {
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if !ok {
		return nil
	}
	if ss.expired(s, now) {
		delete(ss.m, id)
		return nil
	}
	s.seen = now
	c := *s
	return &c
}

func (ss *sessions) drop(id string) {
	ss.mu.Lock()
	delete(ss.m, id)
	ss.mu.Unlock()
}

// dropUser logs a user out everywhere (after a role change, disable or
// password reset).
func (ss *sessions) dropUser(name string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, s := range ss.m {
		if s.Name == name {
			delete(ss.m, id)
		}
	}
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
	adminsOnly             // changes to registers, policies, users
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
			s = u.sessions.get(c.Value)
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
type limiter struct {
	mu     sync.Mutex
	now    func() time.Time
	max    int
	base   time.Duration
	window time.Duration
	fails  map[string][]time.Time
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
// window, or the backoff since its last failure has passed.
func (l *limiter) allowed(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	ts := l.prune(key, now)
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

func (l *limiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
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
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	delete(l.fails, key)
	l.mu.Unlock()
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
