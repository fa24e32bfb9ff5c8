// Package web is the Mamori web UI for managers, auditors and admins:
// server-rendered html/template pages (assets in package dashboards) behind
// a password login with sessions in secure cookies, CSRF tokens on every
// form, rate-limited login and role checks on the server. Japanese is the
// default language, English the switch; times show in JST unless
// configured otherwise. Every login and change is recorded as a server
// event.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/dashboards"
	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

// Config is what New needs. Events, State and Compliance are required;
// without Evidence the export and checkpoint parts say so, and without
// Registers the register and approval pages answer 404.
type Config struct {
	Events     api.EventStore
	Evidence   api.Evidence
	State      *state.State
	Compliance *compliance.Tracker
	Registers  *register.Service
	// PublicKey is the log's note verifier key (log-key.pub).
	PublicKey string
	// Location is the time zone pages show times in; default JST.
	Location *time.Location
	// Now is the clock (sessions, rate limits, trend); default time.Now.
	Now func() time.Time
	// Integrity checks the evidence log for the 証跡 page; optional (the
	// page then says it cannot tell).
	Integrity IntegrityChecker
	// VerifierDir holds the verifier builds the 証跡 page offers
	// (mamori-server for Linux and Windows, as `make build` lays them out:
	// DIR/mamori-server, DIR/windows-amd64/mamori-server.exe, or
	// DIR/linux-amd64/mamori-server); optional.
	VerifierDir string
	// PolicyChanged is called after a UI change that may change agents'
	// effective policies, to wake their long-polls; optional.
	PolicyChanged func()
	Log           zerolog.Logger
	// Alerting serves the notification, incident and report pages; nil
	// leaves them out.
	Alerting *Alerting
}

// UI serves the web UI. It is an http.Handler, safe for concurrent use.
type UI struct {
	cfg      Config
	log      zerolog.Logger
	mux      *http.ServeMux
	pages    map[string]*template.Template
	css      string // content-hash URL of the stylesheet
	sessions *sessions
	ipLimit  *limiter
	usrLimit *limiter
	flood    *throttleLog
	failed   *rateBudget // failed logins recorded one by one
	trend    *trend
	vol      volumes
	firstMu  sync.Mutex
	first    map[int64]string // time -> cursor before its first event (firstAt)
}

// New parses the templates and builds the route table.
func New(cfg Config) (*UI, error) {
	switch {
	case cfg.Events == nil:
		return nil, errors.New("web: Config.Events is nil")
	case cfg.State == nil:
		return nil, errors.New("web: Config.State is nil")
	case cfg.Compliance == nil:
		return nil, errors.New("web: Config.Compliance is nil")
	}
	if cfg.Location == nil {
		cfg.Location = api.JST
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	u := &UI{cfg: cfg, log: cfg.Log.With().Str("component", "web").Logger(),
		first:    map[int64]string{},
		ipLimit:  newLimiter(cfg.Now, 20, 15*time.Minute),
		usrLimit: newLimiter(cfg.Now, 5, 15*time.Minute),
		trend:    &trend{st: cfg.State, now: cfg.Now, loc: cfg.Location},
	}
	u.sessions = newSessions(cfg.Now, cfg.State, u.log)
	u.ipLimit.kind, u.ipLimit.shared, u.ipLimit.log = "ip\x00", cfg.State, u.log
	u.usrLimit.kind, u.usrLimit.shared, u.usrLimit.log = "user\x00", cfg.State, u.log
	u.flood = newThrottleLog(cfg.Now, u.recordThrottled)
	u.failed = &rateBudget{now: cfg.Now, n: maxFailedLoginsPerMinute}
	if err := u.parse(); err != nil {
		return nil, err
	}
	css, err := fs.ReadFile(dashboards.Static, "static/app.css")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	sum := sha256.Sum256(css)
	u.css = "/static/app.css?v=" + hex.EncodeToString(sum[:6])
	u.mux = u.routes()
	u.moreRoutes(u.mux)
	return u, nil
}

// moreRoutes adds the pages beyond the core table in login.go.
func (u *UI) moreRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /events/{index}", u.auth(anyRole, u.handleEvent))
	mux.HandleFunc("GET /hosts/export", u.auth(anyRole, u.handleHostsExport))
	mux.HandleFunc("GET /approvals/new", u.auth(deciders, u.handleRequestForm))
	mux.HandleFunc("POST /approvals/new", u.auth(deciders, u.handleRequest))
	mux.HandleFunc("GET /approvals/{id}/confirm", u.auth(deciders, u.handleConfirm))
	mux.HandleFunc("GET /evidence/log-key.pub", u.auth(anyRole, u.handleLogKey))
	mux.HandleFunc("GET /evidence/checkpoint", u.auth(anyRole, u.handleCheckpointFile))
	mux.HandleFunc("GET /evidence/verifier/{os}", u.auth(anyRole, u.handleVerifier))
}

var funcs = template.FuncMap{
	"pct":  func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"pctw": func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	// rate is a control's pass rate, or a dash where no host runs it: 0%
	// would read as every host failing.
	"rate": func(r compliance.Rate) string {
		if r.Pass+r.Fail+r.Unknown == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f%%", r.Rate*100)
	},
	"args": func(v ...any) []any { return v },
	// base is a path's last element, for Windows and Unix paths alike (a
	// process column shows the program, its title the full path).
	"base": func(p string) string {
		if i := strings.LastIndexAny(p, `/\`); i >= 0 && i < len(p)-1 {
			return p[i+1:]
		}
		return p
	},
}

// parse builds one template per page: layout + partials + the page.
func (u *UI) parse() error {
	names, err := fs.Glob(dashboards.Templates, "templates/*.html")
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	u.pages = map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || base == "partials" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(dashboards.Templates, "templates/layout.html", "templates/partials.html", n)
		if err != nil {
			return fmt.Errorf("web: template %s: %w", base, err)
		}
		u.pages[base] = t
	}
	return nil
}

// ServeHTTP implements http.Handler with security headers on every answer.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Strict-Transport-Security", "max-age=31536000") // the UI is only ever served over TLS
	u.mux.ServeHTTP(w, r)
}

// page is what every template gets.
type page struct {
	Title, Lang, Nav, CSRF, Flash, Err, CSS, TZ string
	L                                           map[string]string
	User                                        *session
	Data                                        any
	loc                                         *time.Location
	hosts                                       map[string]string
}

// Time formats a time.Time or *time.Time in the configured zone.
func (p *page) Time(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return ""
		}
		t = *x
	}
	if t.IsZero() {
		return ""
	}
	return t.In(p.loc).Format("2006-01-02 15:04:05")
}

// yesNo says b in lang (有/無, Yes/No).
func yesNo(lang string, b bool) string {
	if b {
		return labels.Of(labels.YesNo, lang, "yes")
	}
	return labels.Of(labels.YesNo, lang, "no")
}

// Reason picks the reason text in the page's language.
func (p *page) Reason(ja, en, code string) string {
	if p.Lang == "ja" && ja != "" {
		return ja
	}
	if en != "" {
		return en
	}
	return code
}

// T labels a code of a catalog set (control, type, severity, status,
// register, role, verdict, field) in the page's language.
// code may be any string type (compliance.Status, event.Severity).
func (p *page) T(set string, code any) string {
	return labels.Of(labels.Set(set), p.Lang, fmt.Sprint(code))
}

// Dur says a duration (time.Duration or a type of it, such as
// notify.Duration) in the page's language: 5分, 1時間 rather than 5m, 1h.
func (p *page) Dur(v any) string {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || !rv.CanInt() {
		return fmt.Sprint(v)
	}
	return labels.Duration(time.Duration(rv.Int()), p.Lang)
}

// AttrName labels an event attribute key, keeping the key beside an
// unknown one's.
func (p *page) AttrName(k string) string { return labels.Of(labels.Attr, p.Lang, k) }

// Fails counts a host's failing controls.
func (p *page) Fails(h compliance.Host) int { return fails(h) }

// Unrecorded returns the attribution_source of a change that was found
// later, by comparing the disk with the agent's snapshot (no user or
// process known), or "": the list marks those rows, since their time is
// when the change was found, not made.
func (p *page) Unrecorded(e event.Event) string {
	switch src, _ := e.Attrs["attribution_source"].(string); src {
	case "while_agent_stopped", "not_recorded":
		return src
	}
	return ""
}

// UnregisteredMedia reports whether e is about a removable medium that is
// not in 媒体管理台帳: a media event naming a device (serial) without a
// register id. The list and the event page mark those.
func (p *page) UnregisteredMedia(e event.Event) bool { return unregisteredMedia(e) }

func unregisteredMedia(e event.Event) bool {
	if e.Control != "media" || e.RegisterID != "" {
		return false
	}
	if id, _ := e.Attrs["register_id"].(string); id != "" {
		return false
	}
	_, dev := e.Attrs["serial"]
	return dev
}

// HostName shows an agent id as its hostname where known.
func (p *page) HostName(agent string) string {
	if n, ok := p.hosts[agent]; ok && n != "" {
		return n
	}
	return agent
}

func langOf(r *http.Request) string {
	if c, err := r.Cookie(cookieLang); err == nil && c.Value == "en" {
		return "en"
	}
	return "ja"
}

func (u *UI) newPage(r *http.Request, nav, titleKey string) *page {
	lang := langOf(r)
	p := &page{Lang: lang, Nav: nav, L: messages[lang], CSS: u.css, loc: u.cfg.Location,
		TZ: u.cfg.Location.String()}
	p.Title = p.L[titleKey]
	if s := sessionFrom(r.Context()); s != nil {
		p.User, p.CSRF = s, s.CSRF
	}
	switch r.URL.Query().Get("ok") {
	case "":
	default:
		p.Flash = p.L[r.URL.Query().Get("ok")]
	}
	return p
}

// render executes a page into a buffer first so that a template error
// becomes a clean 500, not half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	t, ok := u.pages[name]
	if !ok {
		u.log.Error().Str("page", name).Msg("web: no such template")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		u.log.Error().Err(err).Str("page", name).Msg("web: render failed")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders an error page with the message key in the user's language.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, status int, key, detail string) {
	p := u.newPage(r, "", key)
	p.Err = p.L[key]
	if detail != "" {
		p.Err += " " + detail
	}
	p.Data = backLink(r)
	u.render(w, r, status, "error", p)
}

// backLink is where an error page's "back" goes: the page the user came
// from on this server (its path only), else the overview.
func backLink(r *http.Request) string {
	ref, err := url.Parse(r.Referer())
	if err != nil || ref.Host != r.Host || !strings.HasPrefix(ref.Path, "/") || strings.HasPrefix(ref.Path, "//") || ref.Path == r.URL.Path {
		return "/"
	}
	if ref.RawQuery != "" {
		return ref.Path + "?" + ref.RawQuery
	}
	return ref.Path
}

// internal logs err and renders 500; or 503 with the reason when etcd is
// unavailable (lost quorum, cut off): what needs it cannot be done now,
// pages read from the cache still work.
func (u *UI) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, state.ErrUnavailable) {
		u.log.Warn().Err(err).Str("path", r.URL.Path).Msg("web: " + what)
		w.Header().Set("Retry-After", "5")
		u.fail(w, r, http.StatusServiceUnavailable, "err_etcd_unavailable", "")
		return
	}
	u.log.Error().Err(err).Str("path", r.URL.Path).Msg("web: " + what)
	u.fail(w, r, http.StatusInternalServerError, "err_internal", "")
}

// record appends a UI action to the server's own event stream. The action
// already happened, so a failure is logged loudly, not undone.
func (u *UI) record(r *http.Request, user string, e event.Event) {
	e.Agent = event.ServerStream
	if e.Control == "" {
		e.Control = "server"
	}
	if e.Severity == "" {
		e.Severity = event.Info
	}
	if e.Time.IsZero() {
		e.Time = u.cfg.Now().UTC()
	}
	e.User = user
	if e.Attrs == nil {
		e.Attrs = event.Attrs{}
	}
	e.Attrs["via"] = "web"
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	if _, err := u.cfg.Events.AppendServer(ctx, e); err != nil {
		u.log.Error().Err(err).Str("type", e.Type).Str("object", e.Object).Msg("web: action NOT recorded in the server stream")
	}
}

// back redirects after a successful POST (303, so reload does not repost).
func back(w http.ResponseWriter, r *http.Request, path, okKey string) {
	if okKey != "" {
		if strings.Contains(path, "?") {
			path += "&ok=" + okKey
		} else {
			path += "?ok=" + okKey
		}
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}
