package web

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
)

// Bounds on what unauthenticated login attempts put in the log.
const (
	// maxLoggedName bounds a user name taken from the login form.
	maxLoggedName = 64
	// throttleWindow is the period one summary of refused attempts covers.
	throttleWindow = 5 * time.Minute
	// maxThrottleSources bounds the sources summarised apart; the rest
	// share one summary.
	maxThrottleSources = 10000
	// maxSummaryNames bounds the user names one summary lists.
	maxSummaryNames = 8
	// maxFailedLoginsPerMinute bounds the failed logins recorded one by
	// one, server-wide: past it they are counted under allSources, so
	// attempts from many addresses, each under its own limit, cannot grow
	// the log without bound either.
	maxFailedLoginsPerMinute = 60
	// allSources is the throttleLog source of failed logins past that rate.
	allSources = "*"
)

// rateBudget allows n takes per minute (fixed windows).
type rateBudget struct {
	mu    sync.Mutex
	now   func() time.Time
	n     int
	start time.Time
	used  int
}

func (b *rateBudget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.now(); t.Sub(b.start) >= time.Minute || t.Before(b.start) {
		b.start, b.used = t, 0
	}
	if b.used >= b.n {
		return false
	}
	b.used++
	return true
}

// recordFailed records a failed login (reason: throttled or bad
// credentials) one by one within the server-wide rate; past it, the first
// of a window is recorded saying so and the rest are counted into that
// window's ui.login_throttled summary (source "*").
func (u *UI) recordFailed(r *http.Request, name, ip, reason string) {
	if !u.failed.take() {
		if !u.flood.add(allSources, name) {
			return
		}
		reason = "over " + strconv.Itoa(maxFailedLoginsPerMinute) + " failed logins a minute (" + reason + "): the rest of this window is counted in ui.login_throttled"
	}
	u.record(r, name, event.Event{Type: "ui.login_failed", Severity: event.Warning, Object: "user/" + name,
		Attrs: event.Attrs{"ip": ip, "reason": reason}})
}

// boundName makes a user name from the login form safe to store: at most
// maxLoggedName bytes of valid UTF-8 without control characters.
func boundName(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '\uFFFD'
		}
		return r
	}, s)
	if len(s) <= maxLoggedName {
		return s
	}
	cut := maxLoggedName
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// throttleLog summarises refused (throttled) login attempts: the first of a
// source in a window is recorded as it happens, the rest only counted, and
// when the window ends one summary event says how many there were. One
// client hammering the login page so adds two events per window, not one
// per attempt (which once grew the log by 158 MiB in 15 s).
type throttleLog struct {
	mu        sync.Mutex
	window    time.Duration
	now       func() time.Time
	afterFunc func(time.Duration, func())
	emit      func(source string, s throttleSummary)
	open      map[string]*throttleSummary
}

// throttleSummary is one source's refused attempts in one window.
type throttleSummary struct {
	From, To time.Time
	Count    int // attempts after the first, which was recorded itself
	Names    []string
}

func newThrottleLog(now func() time.Time, emit func(string, throttleSummary)) *throttleLog {
	return &throttleLog{window: throttleWindow, now: now, emit: emit, open: map[string]*throttleSummary{},
		afterFunc: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}
}

// add counts a refused attempt from source for name; first says it opened
// a window, so the caller records this attempt itself.
func (t *throttleLog) add(source, name string) (first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.open[source]; !ok && len(t.open) >= maxThrottleSources {
		source = "other"
	}
	s, ok := t.open[source]
	if !ok {
		t.open[source] = &throttleSummary{From: t.now()}
		t.afterFunc(t.window, func() { t.close(source) })
		return true
	}
	s.Count++
	s.To = t.now()
	if len(s.Names) < maxSummaryNames && !contains(s.Names, name) {
		s.Names = append(s.Names, name)
	}
	return false
}

// close ends source's window and emits its summary if more attempts came.
func (t *throttleLog) close(source string) {
	t.mu.Lock()
	s := t.open[source]
	delete(t.open, source)
	t.mu.Unlock()
	if s != nil && s.Count > 0 {
		t.emit(source, *s)
	}
}

// flush ends every open window now, emitting their summaries: the server
// is stopping, and a window's count would go with it.
func (t *throttleLog) flush() {
	t.mu.Lock()
	sources := make([]string, 0, len(t.open))
	for src := range t.open {
		sources = append(sources, src)
	}
	t.mu.Unlock()
	for _, src := range sources {
		t.close(src)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Close records what the UI still holds in memory: the summaries of
// refused logins whose windows are open. Call it once no more requests
// come and before the event store closes.
func (u *UI) Close() { u.flood.flush() }

// recordThrottled stores a summary in the server stream.
func (u *UI) recordThrottled(source string, s throttleSummary) {
	e := event.Event{Agent: event.ServerStream, Control: "server", Type: "ui.login_throttled", Severity: event.Warning,
		Time: u.cfg.Now().UTC(), Object: "source/" + source, Attrs: event.Attrs{
			"ip": source, "attempts": s.Count, "from": s.From.UTC().Format(time.RFC3339),
			"to": s.To.UTC().Format(time.RFC3339), "users": strings.Join(s.Names, ", "), "via": "web"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := u.cfg.Events.AppendServer(ctx, e); err != nil {
		u.log.Error().Err(err).Str("type", e.Type).Msg("web: login throttling summary NOT recorded in the server stream")
	}
}
