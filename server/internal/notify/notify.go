// Package notify sends Mamori's alerts to people: it tails the event log
// for compliance alerts and the events the rules name (blocked media, bulk
// copies, out-of-hours access to registered folders, chain gaps, failed
// logins, overdue incident reports), groups them per rule for a delay,
// rate-limits each rule, and delivers mail (SMTP through go-mail) and
// webhooks (generic JSON, Microsoft Teams, Slack) with retries and
// exponential backoff. Every delivery outcome is an event in the server
// stream (control "notify"), which is the delivery log.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/notify/alertkind"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

// Delivery log vocabulary (server stream).
const (
	Control           = "notify"
	TypeSent          = "notify.sent"
	TypeAttemptFailed = "notify.attempt_failed"
	TypeFailed        = "notify.failed"
	TypeSettings      = "notify.settings_changed"
)

// Keys below state.Prefix.
const (
	SettingsKey = "notifications/settings"
	cursorsKey  = "notifications/cursors"
)

// saveEvery spaces the cursor saves: a restart re-reads at most this much
// (at least once), and etcd is not written every poll.
const saveEvery = 10 * time.Second

// maxItems bounds the alerts listed in one message; the count says the rest.
const maxItems = 50

// Events is the part of the event store the notifier uses.
type Events interface {
	Query(ctx context.Context, f eventlog.Filter) (eventlog.Page, error)
	AppendServer(ctx context.Context, e event.Event) (event.Event, error)
	TreeSize(ctx context.Context) (int64, error)
}

// KV is the control-plane store (state.State).
type KV interface {
	GetJSON(ctx context.Context, key string, v any) (int64, error)
	PutJSON(ctx context.Context, key string, v any, ifRev int64) (int64, error)
}

// AgentInfo is what alerts say about an agent.
type AgentInfo struct{ Hostname, Department string }

// Config configures New.
type Config struct {
	Events Events
	KV     KV
	// Agents lists enrolled agents by id (for hostname and department).
	Agents func(ctx context.Context) (map[string]AgentInfo, error)
	// IsNotFound says whether a KV error means a missing key.
	IsNotFound func(error) bool
	Now        func() time.Time
	Log        zerolog.Logger
	// Poll is how often the log is tailed and groups are flushed; default 1s.
	Poll time.Duration
	// Caller names who made an admin request (api.Caller); IsConflict
	// says whether a KV error is a lost optimistic write.
	Caller     func(*http.Request) string
	IsConflict func(error) bool
	// Packs lists the built-in policy packs assigned to agents; their
	// DefaultRules are in force while no settings are stored. Nil means
	// the baseline only.
	Packs func(ctx context.Context) ([]string, error)
	// DashboardURL ("https://host:port/") is where messages send people to
	// look; nil or empty, they name the page only.
	DashboardURL func() string
}

// Notifier delivers alerts. Run drives it.
type Notifier struct {
	cfg Config
	log zerolog.Logger

	mu       sync.Mutex
	settings Settings
	rev      int64 // etcd revision of settings; -1 never loaded
	loadedAt time.Time
	cursors  map[string]int64 // source -> last index read
	saved    map[string]int64
	groups   map[string]*group
	// repeats holds, per rule and PC and control, when a violation or
	// silence was last put into a message and how many were held back
	// since (Rule.RepeatAfter). Lost on restart: at most one extra mail.
	repeats  map[string]repeatState
	limiters map[string]*rate.Limiter
	inflight map[int]map[string]int64 // delivery id -> source -> smallest event index in it
	nextID   int
	// resending holds the failed deliveries being re-sent (one at a time).
	resending map[int64]bool
	agents    map[string]AgentInfo
	agentsAt  time.Time
	savedAt   time.Time // last cursor save; saves are spaced by saveEvery

	wg sync.WaitGroup
}

// New returns a notifier; Run starts it.
func New(cfg Config) (*Notifier, error) {
	if cfg.Events == nil || cfg.KV == nil || cfg.Agents == nil || cfg.IsNotFound == nil {
		return nil, errors.New("notify: Config.Events, KV, Agents and IsNotFound are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	return &Notifier{cfg: cfg, log: cfg.Log.With().Str("component", "notify").Logger(), rev: -1,
		groups: map[string]*group{}, limiters: map[string]*rate.Limiter{}, inflight: map[int]map[string]int64{}}, nil
}

// source is one tailed (control, type) stream of the log.
type source struct{ control, typ string }

// sources are the streams the notifier tails: every one the
// classification makes alerts of by itself (alertkind.Standalone, shared
// with the report, so a new kind of alert cannot be classified and never
// tailed), and those the settings judge: file events (out of hours) and
// failed logins (a threshold).
var sources = func() []source {
	out := make([]source, 0, len(alertkind.Standalone)+6)
	for _, s := range alertkind.Standalone {
		out = append(out, source{s.Control, s.Type})
	}
	for _, t := range []string{"file.created", "file.modified", "file.deleted", "file.renamed", "file.read"} {
		out = append(out, source{"fileaccess", t})
	}
	return append(out, source{"server", "ui.login_failed"})
}()

func (s source) key() string { return s.control + "/" + s.typ }

// Settings returns the current settings (defaults filled), reading etcd
// when the cached copy is older than a few seconds.
func (n *Notifier) Settings(ctx context.Context) (Settings, int64, error) {
	n.mu.Lock()
	if n.rev >= 0 && n.cfg.Now().Sub(n.loadedAt) < 5*time.Second {
		s, rev := n.settings, n.rev
		n.mu.Unlock()
		return s, rev, nil
	}
	n.mu.Unlock()
	var s Settings
	rev, err := n.cfg.KV.GetJSON(ctx, SettingsKey, &s)
	if err != nil && !n.cfg.IsNotFound(err) {
		return Settings{}, 0, fmt.Errorf("notify: reading settings: %w", err)
	}
	if err != nil {
		s, rev = Settings{AreDefaults: true, Rules: DefaultRules(n.packs(ctx))}, 0
	}
	s.Defaults()
	n.mu.Lock()
	defer n.mu.Unlock()
	if rev < n.rev {
		// A PutSettings landed while this read was out: keep the newer
		// (a notifier starting with the writer role read the defaults
		// just before an admin's change and hid it for 5 s).
		return n.settings, n.rev, nil
	}
	n.settings, n.rev, n.loadedAt = s, rev, n.cfg.Now()
	return s, rev, nil
}

// PutSettings validates and stores s; an empty SMTP password keeps the
// stored one. ifRev as state.PutJSON (-1 unconditional).
func (n *Notifier) PutSettings(ctx context.Context, s Settings, ifRev int64) (Settings, error) {
	s.Defaults()
	s.AreDefaults = false
	if err := s.Validate(); err != nil {
		return Settings{}, err
	}
	if s.SMTP != nil && s.SMTP.Password == "" && s.SMTP.Username != "" {
		var old Settings
		if _, err := n.cfg.KV.GetJSON(ctx, SettingsKey, &old); err == nil && old.SMTP != nil && old.SMTP.Username == s.SMTP.Username {
			s.SMTP.Password = old.SMTP.Password
		}
	}
	if s.SMTP != nil {
		s.SMTP.PasswordSet = false
	}
	rev, err := n.cfg.KV.PutJSON(ctx, SettingsKey, s, ifRev)
	if err != nil && n.cfg.IsConflict != nil && n.cfg.IsConflict(err) {
		return Settings{}, fmt.Errorf("notify: storing settings: %w: %w", ErrConflict, err)
	}
	if err != nil {
		return Settings{}, fmt.Errorf("notify: storing settings: %w", err)
	}
	n.mu.Lock()
	n.settings, n.rev, n.loadedAt = s, rev, n.cfg.Now()
	n.mu.Unlock()
	return s, nil
}

// Run tails and delivers until ctx ends, then waits for deliveries in flight.
func (n *Notifier) Run(ctx context.Context) {
	defer n.wg.Wait()
	// A server runs this once per term as the writer: what an earlier term
	// read but had not delivered is read again from the saved cursors.
	n.mu.Lock()
	n.cursors, n.groups = nil, map[string]*group{}
	n.mu.Unlock()
	if err := n.loadCursors(ctx); err != nil && ctx.Err() == nil {
		n.log.Warn().Err(err).Msg("notify: cursors")
	}
	t := time.NewTicker(n.cfg.Poll)
	defer t.Stop()
	var failing bool
	for {
		err := n.Step(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			n.log.Warn().Err(err).Msg("notify: step failed; retrying")
			failing = true
		case err == nil && failing:
			n.log.Info().Msg("notify: recovered")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loadCursors reads the stored cursors; without them the notifier starts
// at the end of the log (history is not re-sent).
func (n *Notifier) loadCursors(ctx context.Context) error {
	var cs map[string]int64
	_, err := n.cfg.KV.GetJSON(ctx, cursorsKey, &cs)
	if err != nil && !n.cfg.IsNotFound(err) {
		return fmt.Errorf("notify: reading cursors: %w", err)
	}
	if err != nil || cs == nil {
		size, err := n.cfg.Events.TreeSize(ctx)
		if err != nil {
			return fmt.Errorf("notify: tree size: %w", err)
		}
		cs = map[string]int64{}
		for _, s := range sources {
			cs[s.key()] = size - 1
		}
	}
	n.mu.Lock()
	n.cursors = cs
	n.saved = maps(cs)
	n.mu.Unlock()
	return nil
}

func maps(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Step tails the log once, flushes due groups and saves the cursors.
func (n *Notifier) Step(ctx context.Context) error {
	n.mu.Lock()
	if n.cursors == nil {
		n.mu.Unlock()
		if err := n.loadCursors(ctx); err != nil {
			return err
		}
	} else {
		n.mu.Unlock()
	}
	set, _, err := n.Settings(ctx)
	if err != nil {
		return err
	}
	if err := n.tail(ctx, set); err != nil {
		return err
	}
	n.flush(ctx, set)
	return n.saveCursors(ctx)
}

// tail reads every source from its cursor and groups what rules match.
func (n *Notifier) tail(ctx context.Context, set Settings) error {
	agents, err := n.agentInfo(ctx)
	if err != nil {
		return err
	}
	// File events are most of the log: without an out-of-hours rule they
	// are skipped rather than read, the cursor moved to the end.
	hours := false
	for _, r := range set.Rules {
		hours = hours || (!r.Disabled && r.Kind == KindOutOfHours)
	}
	size := int64(-1)
	refreshed := false
	for _, src := range sources {
		n.mu.Lock()
		after, ok := n.cursors[src.key()]
		n.mu.Unlock()
		if !ok {
			// A source added since the cursors were stored starts at
			// the end: its history is not news.
			if size < 0 {
				if size, err = n.cfg.Events.TreeSize(ctx); err != nil {
					return fmt.Errorf("notify: tree size: %w", err)
				}
			}
			after = size - 1
		}
		if strings.HasPrefix(src.typ, "file.") && !hours {
			if size < 0 {
				if size, err = n.cfg.Events.TreeSize(ctx); err != nil {
					return fmt.Errorf("notify: tree size: %w", err)
				}
			}
			n.mu.Lock()
			n.cursors[src.key()] = max(after, size-1)
			n.mu.Unlock()
			continue
		}
		for {
			p, err := n.cfg.Events.Query(ctx, eventlog.Filter{Control: src.control, Type: src.typ,
				Cursor: eventlog.CursorAfter(after), Limit: eventlog.MaxLimit})
			if err != nil {
				return fmt.Errorf("notify: reading %s: %w", src.key(), err)
			}
			if !refreshed && unknownAgent(agents, p.Events) {
				// A PC enrolled since the list was read: without its
				// name and department its alerts would miss the
				// department's recipients.
				if agents, err = n.readAgents(ctx); err != nil {
					return err
				}
				refreshed = true
			}
			n.mu.Lock()
			for i := range p.Events {
				n.consider(set, agents, src.key(), &p.Events[i])
				after = p.Events[i].Index
			}
			n.cursors[src.key()] = after
			n.mu.Unlock()
			if p.Next == "" || len(p.Events) == 0 {
				break
			}
		}
	}
	return nil
}

func (n *Notifier) agentInfo(ctx context.Context) (map[string]AgentInfo, error) {
	n.mu.Lock()
	if n.agents != nil && n.cfg.Now().Sub(n.agentsAt) < 15*time.Second {
		a := n.agents
		n.mu.Unlock()
		return a, nil
	}
	n.mu.Unlock()
	return n.readAgents(ctx)
}

// readAgents reads the agent list anew and caches it.
func (n *Notifier) readAgents(ctx context.Context) (map[string]AgentInfo, error) {
	a, err := n.cfg.Agents(ctx)
	if err != nil {
		return nil, fmt.Errorf("notify: agents: %w", err)
	}
	n.mu.Lock()
	n.agents, n.agentsAt = a, n.cfg.Now()
	n.mu.Unlock()
	return a, nil
}

// unknownAgent says whether an agent's event in evs is from an agent not
// in agents (compliance alerts name their PC themselves).
func unknownAgent(agents map[string]AgentInfo, evs []eventlog.Stored) bool {
	for i := range evs {
		if a := evs[i].Agent; a != event.ServerStream {
			if _, ok := agents[a]; !ok {
				return true
			}
		}
	}
	return false
}

// classified is one event seen as one kind of alert.
type classified struct {
	kind string
	item Item
}

// classify says which kinds of alert st is; n.mu is held.
func classify(set Settings, agents map[string]AgentInfo, st *eventlog.Stored) []classified {
	str := func(k string) string { s, _ := st.Attrs[k].(string); return s }
	it := Item{Index: st.Index, Time: st.Time, Agent: st.Agent, Type: st.Type, Control: st.Control,
		Object: st.Object, User: st.User, Reason: str("reason"), RegisterID: st.RegisterID}
	if a, ok := agents[st.Agent]; ok {
		it.Hostname, it.Department = a.Hostname, a.Department
	}
	it.Detail = detailOf(st)
	// Which kinds: the code the audit report counts with too.
	kinds := alertkind.Of(st.Type, st.Severity, st.Attrs)
	switch st.Type {
	case "compliance.alert":
		it.Agent, it.Hostname, it.Department, it.Control = str("agent"), str("hostname"), str("department"), str("control")
		if ja := str("reason_ja"); ja != "" {
			it.Reason = ja
		}
	case "fileaccess.bulk":
		it.From, it.To, _ = bulkWindow(st)
		for op := range bulkTypes(st) {
			it.ops = append(it.ops, op)
		}
	case "ui.login_failed":
		// The web records the name tried as the user and as "user/NAME".
		it.Object = strings.TrimPrefix(st.Object, "user/")
		if it.User == it.Object {
			it.User = ""
		}
		it.Reason, it.IP = loginReasonJA(it.Reason), str("ip")
	default:
		if strings.HasPrefix(st.Type, "file.") && st.RegisterID != "" && changedOutOfHours(set.HoursOf(it.Department), st) {
			kinds = []string{KindOutOfHours}
		}
	}
	out := make([]classified, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, classified{k, it})
	}
	return out
}

// changedOutOfHours says whether a file event happened out of hours. One
// found when the agent started again happened at an unknown time in the
// agent's outage (window_from..window_to), so it is out of hours only if
// every moment of that outage was; past a month it is not judged.
func changedOutOfHours(h Hours, st *eventlog.Stored) bool {
	// not_recorded: seen while the agent's spool refused events (a full
	// disk), found again later; its time too is a window.
	if s := st.Attrs["attribution_source"]; s != "while_agent_stopped" && s != "not_recorded" {
		return OutOfHours(h, st.Time)
	}
	from, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(st.Attrs["window_from"]))
	to, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(st.Attrs["window_to"]))
	if err1 != nil || err2 != nil || to.Before(from) || to.Sub(from) > 31*24*time.Hour {
		return false
	}
	start, err := clock(h.Start)
	if err != nil {
		return false
	}
	// A day's working hours are one span from Start: the outage's first
	// moment in it, if any, is the later of the outage's start and Start.
	f := from.In(JST)
	for d := time.Date(f.Year(), f.Month(), f.Day(), 0, 0, 0, 0, JST); !d.After(to); d = d.AddDate(0, 0, 1) {
		c := d.Add(time.Duration(start) * time.Minute)
		if c.Before(from) {
			c = from
		}
		if !c.After(to) && !OutOfHours(h, c) {
			return false
		}
	}
	return true
}

// HoursOf returns the working hours of a department.
func (s Settings) HoursOf(dept string) Hours {
	if d, ok := s.Departments[dept]; ok && d.Hours != nil {
		return *d.Hours
	}
	return s.Hours
}

// group collects the alerts of one rule (and department, when the rule
// mails department recipients) until it is due.
type group struct {
	rule  Rule
	dept  string
	key   string // limiter key
	due   time.Time
	items []Item
	seen  map[string]bool
	count int
	// byWhat counts every alert by what it is and why (the 内訳); of those
	// not listed, repeats were the same as one counted before, over were
	// different but past maxItems: the message adds up to count.
	byWhat  map[string]int
	repeats int
	over    int
	ops     map[string]bool // bulk_copy: the operation types summarised ("" unknown)
	// logins holds each user's failures (login_failures): only users at
	// the rule's threshold are the alert, judged when the group is due.
	// The web bounds how many it records a minute.
	logins map[string][]Item
	users  map[string]int // login_failures: failures of each user judged
	first  time.Time
	last   time.Time
	mins   map[string]int64 // source -> smallest event index held
}

// consider adds st to the groups of every rule it matches; n.mu is held.
func (n *Notifier) consider(set Settings, agents map[string]AgentInfo, src string, st *eventlog.Stored) {
	for _, c := range classify(set, agents, st) {
		for _, r := range set.Rules {
			if r.Disabled || r.Kind != c.kind {
				continue
			}
			if len(r.Departments) > 0 && !slices.Contains(r.Departments, c.item.Department) {
				continue
			}
			key := "rule/" + r.Name
			dept := ""
			if r.DepartmentRecipients {
				dept = c.item.Department
				key += "/" + dept
			}
			it, ok := n.repeatCheck(r, key, c.item)
			if !ok {
				continue
			}
			g := n.groups[key]
			if g == nil {
				g = &group{rule: r, dept: dept, key: key, due: n.cfg.Now().Add(time.Duration(r.Delay)),
					seen: map[string]bool{}, byWhat: map[string]int{}, logins: map[string][]Item{}, mins: map[string]int64{}}
				n.groups[key] = g
			}
			if m, ok := g.mins[src]; !ok || st.Index < m {
				g.mins[src] = st.Index
			}
			g.add(it)
		}
	}
}

// repeatState is one PC's control under a rule's RepeatAfter.
type repeatState struct {
	last time.Time
	held int
}

// repeatCheck says whether it goes into rule r's message (key is the
// group's): a violation or silence of a PC's control alerted under r less
// than RepeatAfter ago is held back and counted, so a control that flaps
// between fail and pass makes one mail an interval, not one a flap. The
// first one after the interval says how many were held. n.mu is held.
func (n *Notifier) repeatCheck(r Rule, key string, it Item) (Item, bool) {
	if r.RepeatAfter <= 0 || (r.Kind != KindViolation && r.Kind != KindSilent) || it.Agent == "" {
		return it, true
	}
	if n.repeats == nil {
		n.repeats = map[string]repeatState{}
	}
	now := n.cfg.Now()
	k := key + "|" + it.Agent + "|" + it.Control
	q, seen := n.repeats[k]
	if seen && now.Sub(q.last) < time.Duration(r.RepeatAfter) {
		q.held++
		n.repeats[k] = q
		return it, false
	}
	if q.held > 0 {
		d := fmt.Sprintf("前回の通知 (%s) のあと %d 回繰り返しました (%s 以内の繰り返しは通知していません)",
			jst(q.last), q.held, durationJA(time.Duration(r.RepeatAfter)))
		if it.Detail != "" {
			d = it.Detail + "。" + d
		}
		it.Detail = d
	}
	n.repeats[k] = repeatState{last: now}
	if len(n.repeats) > maxRepeats {
		for k, q := range n.repeats {
			if now.Sub(q.last) > 7*24*time.Hour {
				delete(n.repeats, k)
			}
		}
	}
	return it, true
}

// maxRepeats is when repeatCheck drops states past the longest interval.
const maxRepeats = 20000

func (g *group) add(it Item) {
	if g.rule.Kind == KindLoginFailures {
		g.logins[it.Object] = append(g.logins[it.Object], it)
		return
	}
	g.tally(it)
}

// tally counts it into the message.
func (g *group) tally(it Item) {
	g.count++
	from, to := it.Time, it.Time
	if !it.From.IsZero() && !it.To.IsZero() {
		// A summary's own window, not when it was recorded.
		from, to = it.From, it.To
	}
	if g.first.IsZero() || from.Before(g.first) {
		g.first = from
	}
	if to.After(g.last) {
		g.last = to
	}
	g.byWhat[strings.TrimSpace(what(it)+" "+it.Reason)]++
	if g.rule.Kind == KindBulkCopy {
		if g.ops == nil {
			g.ops = map[string]bool{}
		}
		if len(it.ops) == 0 {
			g.ops[""] = true
		}
		for _, op := range it.ops {
			g.ops[op] = true
		}
	}
	// Deduplicate: the same thing on the same PC is listed once.
	k := it.Type + "|" + it.Agent + "|" + it.Control + "|" + it.Object + "|" + it.Reason + "|" + it.IP + "|" + it.Detail
	switch {
	case g.seen[k]:
		g.repeats++
	case len(g.items) < maxItems:
		g.items = append(g.items, it)
	default:
		g.over++
	}
	g.seen[k] = true
}

// judge makes a due login_failures group the failures of the users at or
// over the threshold, in log order, and forgets the others' (the
// threshold counts within the delay); false if no user is left.
func (g *group) judge() bool {
	g.count, g.items, g.repeats, g.over = 0, nil, 0, 0
	g.seen, g.byWhat, g.users = map[string]bool{}, map[string]int{}, map[string]int{}
	g.first, g.last = time.Time{}, time.Time{}
	var its []Item
	for u, fs := range g.logins {
		if len(fs) < g.rule.Threshold {
			delete(g.logins, u)
			continue
		}
		g.users[u] = len(fs)
		its = append(its, fs...)
	}
	sort.Slice(its, func(i, j int) bool { return its[i].Index < its[j].Index })
	for _, it := range its {
		g.tally(it)
	}
	return g.count > 0
}

// limiter returns the rate limiter of one rule (and department).
func (n *Notifier) limiter(set Settings, key string) *rate.Limiter {
	per := rate.Every(time.Hour / time.Duration(set.RateLimit))
	l := n.limiters[key]
	if l == nil || l.Limit() != per {
		l = rate.NewLimiter(per, min(3, set.RateLimit))
		n.limiters[key] = l
	}
	return l
}

// flush sends every due group whose rule may send now; a group held by
// the rate limit stays and keeps collecting, so a flood becomes a few
// messages with large counts.
func (n *Notifier) flush(ctx context.Context, set Settings) {
	now := n.cfg.Now()
	n.mu.Lock()
	var due []*group
	for k, g := range n.groups {
		if now.Before(g.due) {
			continue
		}
		if g.rule.Kind == KindLoginFailures && !g.judge() { // too few failures in the window
			delete(n.groups, k)
			continue
		}
		if !n.limiter(set, g.key).AllowN(now, 1) {
			continue
		}
		delete(n.groups, k)
		due = append(due, g)
	}
	n.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].key < due[j].key })
	for _, g := range due {
		dashboard := ""
		if n.cfg.DashboardURL != nil {
			dashboard = n.cfg.DashboardURL()
		}
		m := render(g, dashboard)
		ds := destinations(set, g)
		if len(ds) == 0 && !g.rule.Default {
			// The admin meant these alerts to reach someone (a default
			// rule without recipients shows its alerts on the pages only).
			why := "the rule has no recipients or webhooks"
			if g.rule.DepartmentRecipients {
				why = fmt.Sprintf("department %q has no recipients", g.dept)
			}
			n.record(ctx, TypeFailed, event.Warning, destination{name: "none"}, m, 0, errors.New("notify: nowhere to send: "+why))
			continue
		}
		for _, d := range ds {
			n.mu.Lock()
			id := n.nextID
			n.nextID++
			n.inflight[id] = g.mins
			n.mu.Unlock()
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.deliver(ctx, set, d, m)
				n.mu.Lock()
				delete(n.inflight, id)
				n.mu.Unlock()
			}()
		}
	}
}

// destination is one place a message goes.
type destination struct {
	name   string // for the log: "mail:a@x,b@y" or "webhook:NAME" (never a URL: it may hold a secret)
	mail   []string
	smtp   SMTP
	hook   Webhook
	isHook bool
}

func destinations(set Settings, g *group) []destination {
	var out []destination
	rcpts := slices.Clone(g.rule.Recipients)
	if g.rule.DepartmentRecipients {
		rcpts = append(rcpts, set.Departments[g.dept].Recipients...)
	}
	slices.Sort(rcpts)
	rcpts = slices.Compact(rcpts)
	if len(rcpts) > 0 && set.SMTP != nil {
		out = append(out, destination{name: "mail:" + strings.Join(rcpts, ","), mail: rcpts, smtp: *set.SMTP})
	}
	for _, name := range g.rule.Webhooks {
		for _, w := range set.Webhooks {
			if w.Name == name {
				out = append(out, destination{name: "webhook:" + name, hook: w, isHook: true})
			}
		}
	}
	return out
}

// deliver sends m to d with retries and records the outcome.
func (n *Notifier) deliver(ctx context.Context, set Settings, d destination, m Message) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = time.Duration(set.Retry.Initial)
	b.MaxInterval = time.Duration(set.Retry.Max)
	b.Multiplier = 2
	b.RandomizationFactor = 0.1
	attempt := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		err := send(actx, d, m)
		if err != nil {
			n.record(ctx, TypeAttemptFailed, event.Warning, d, m, attempt, err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(b), backoff.WithMaxTries(uint(set.Retry.Attempts)), backoff.WithMaxElapsedTime(0))
	if err != nil {
		n.log.Error().Err(err).Str("destination", d.name).Str("rule", m.Rule).Int("attempts", attempt).Msg("notify: delivery failed")
		n.record(ctx, TypeFailed, event.Warning, d, m, attempt, err)
		return
	}
	n.record(ctx, TypeSent, event.Info, d, m, attempt, nil)
}

// record appends a delivery outcome to the server stream.
func (n *Notifier) record(ctx context.Context, typ string, sev event.Severity, d destination, m Message, attempt int, err error) {
	n.recordAs(ctx, typ, sev, d, m, attempt, err, "", nil)
}

// recordAs is record by user (a re-send) with more attrs. A final outcome
// keeps the message's items, a failure its text too (keepMessage).
func (n *Notifier) recordAs(ctx context.Context, typ string, sev event.Severity, d destination, m Message, attempt int, err error,
	user string, more event.Attrs) {
	attrs := event.Attrs{"rule": m.Rule, "kind": m.Kind, "destination": d.name, "attempt": attempt,
		"count": m.Count, "subject": m.Subject}
	if err != nil {
		msg := err.Error()
		if len(msg) > 500 {
			msg = msg[:500]
		}
		attrs["error"] = msg
	}
	for k, v := range more {
		attrs[k] = v
	}
	if typ == TypeFailed || typ == TypeSent {
		keepMessage(attrs, m, typ == TypeFailed)
	}
	e := event.Event{Agent: event.ServerStream, Control: Control, Type: typ, Severity: sev, Object: d.name,
		User: user, Time: n.cfg.Now().UTC(), Attrs: attrs}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := n.cfg.Events.AppendServer(rctx, e); err != nil {
		n.log.Error().Err(err).Str("type", typ).Msg("notify: delivery outcome NOT recorded")
	}
}

// saveCursors stores, per source, the last index read but never past an
// event still waiting in a group or in a delivery, so a restart re-reads
// (at least once) what was not yet delivered.
func (n *Notifier) saveCursors(ctx context.Context) error {
	n.mu.Lock()
	if n.cfg.Now().Sub(n.savedAt) < saveEvery {
		n.mu.Unlock()
		return nil
	}
	cs := maps(n.cursors)
	hold := func(mins map[string]int64) {
		for k, m := range mins {
			if v, ok := cs[k]; ok && m-1 < v {
				cs[k] = m - 1
			}
		}
	}
	for _, g := range n.groups {
		hold(g.mins)
	}
	for _, m := range n.inflight {
		hold(m)
	}
	same := len(cs) == len(n.saved)
	for k, v := range cs {
		if n.saved[k] != v {
			same = false
		}
	}
	n.mu.Unlock()
	if same {
		return nil
	}
	if _, err := n.cfg.KV.PutJSON(ctx, cursorsKey, cs, -1); err != nil {
		return fmt.Errorf("notify: saving cursors: %w", err)
	}
	n.mu.Lock()
	n.saved, n.savedAt = cs, n.cfg.Now()
	n.mu.Unlock()
	return nil
}

// render writes the Japanese subject and body of a group; dashboard is
// Config.DashboardURL.
func render(g *group, dashboard string) Message {
	// Each item links to its event, so a reader goes straight to it.
	items := slices.Clone(g.items)
	for i := range items {
		if dashboard != "" {
			items[i].URL = dashboard + "events/" + strconv.FormatInt(items[i].Index, 10)
		}
	}
	m := Message{Rule: g.rule.Name, Kind: g.rule.Kind, Count: g.count, Items: items, First: g.first, Last: g.last}
	hosts := map[string]bool{}
	for _, it := range g.items {
		if it.Agent != "" && it.Agent != event.ServerStream {
			hosts[it.Agent] = true
		}
	}
	title := titleOf(g)
	m.Subject = fmt.Sprintf("[Mamori] %s %d 件", title, g.count)
	if len(hosts) > 1 {
		m.Subject += fmt.Sprintf(" (%d 台)", len(hosts))
	}
	if g.dept != "" {
		m.Subject += " " + g.dept
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Mamori からの通知です。\n\nルール: %s\n種類: %s\n件数: %d 件", g.rule.Name, title, g.count)
	if len(hosts) > 0 {
		fmt.Fprintf(&b, " (端末 %d 台)", len(hosts))
	}
	fmt.Fprintf(&b, "\n期間: %s から %s まで\n", jst(g.first), jst(g.last))
	if g.rule.Kind == KindLoginFailures {
		users := make([]string, 0, len(g.users))
		for u := range g.users {
			users = append(users, u)
		}
		sort.Strings(users)
		fmt.Fprintf(&b, "\n失敗が %d 回以上の利用者:\n", g.rule.Threshold)
		for _, u := range users {
			fmt.Fprintf(&b, "- %s: %d 回\n", u, g.users[u])
		}
	}
	whats := make([]string, 0, len(g.byWhat))
	for w := range g.byWhat {
		whats = append(whats, w)
	}
	sort.Strings(whats)
	b.WriteString("\n内訳:\n")
	for _, w := range whats {
		fmt.Fprintf(&b, "- %s: %d 件\n", w, g.byWhat[w])
	}
	fmt.Fprintf(&b, "\n一覧 (最大 %d 件):\n", maxItems)
	for _, it := range items {
		host := it.Hostname
		if host == "" && it.Agent != event.ServerStream {
			host = it.Agent
		}
		fmt.Fprintf(&b, "- %s", jst(it.Time))
		if host != "" {
			b.WriteString(" " + host)
		}
		if it.Department != "" {
			fmt.Fprintf(&b, " (%s)", it.Department)
		}
		b.WriteString(" " + what(it))
		for _, s := range []string{it.Reason, it.Detail, it.Object, it.User, it.RegisterID} {
			if s != "" {
				b.WriteString(" " + s)
			}
		}
		if it.IP != "" {
			fmt.Fprintf(&b, " (%s %s)", labels.Of(labels.Attr, labels.JA, "ip"), it.IP)
		}
		fmt.Fprintf(&b, " [#%s]\n", strconv.FormatInt(it.Index, 10))
		if it.URL != "" {
			b.WriteString("  " + it.URL + "\n")
		}
	}
	if rest := g.repeats + g.over; rest > 0 {
		var why []string
		if g.repeats > 0 {
			why = append(why, fmt.Sprintf("同じ内容の繰り返し %d 件", g.repeats))
		}
		if g.over > 0 {
			why = append(why, fmt.Sprintf("一覧の上限 (%d 件) を超えた別の内容 %d 件", maxItems, g.over))
		}
		fmt.Fprintf(&b, "ほか %d 件 (%s)\n", rest, strings.Join(why, "、"))
	}
	page, path := "通知", "notifications"
	if g.rule.Kind == KindIncidentOverdue {
		page, path = "事故", "incidents"
		if len(g.items) == 1 && g.items[0].Object != "" {
			path += "/" + url.PathEscape(g.items[0].Object)
		}
	}
	if dashboard != "" {
		fmt.Fprintf(&b, "\n詳細は Mamori の管理画面の「%s」で確認してください: %s%s\n", page, dashboard, path)
	} else {
		fmt.Fprintf(&b, "\n詳細は Mamori の管理画面の「%s」で確認してください。\n", page)
	}
	m.Text = b.String()
	return m
}

// titleOf names a group's alerts. A bulk summary is named by the
// operations it counted: only reads take data out of the folder, and
// creations bring files in.
func titleOf(g *group) string {
	if g.rule.Kind != KindBulkCopy {
		return kindJA[g.rule.Kind]
	}
	only := func(ops ...string) bool {
		for op := range g.ops {
			if !slices.Contains(ops, op) {
				return false
			}
		}
		return len(g.ops) > 0
	}
	switch {
	case only("read"):
		return "登録フォルダからの大量読み出し・コピー"
	case only("created", "modified") && g.ops["created"]:
		return "登録フォルダへの大量作成・コピー"
	case only("modified"):
		return "登録フォルダ内の大量変更"
	case only("deleted"):
		return "登録フォルダ内の大量削除"
	case only("renamed"):
		return "登録フォルダ内の大量名前変更"
	}
	return "登録フォルダでの大量操作"
}

// what names an item's event in Japanese: its type, and for a compliance
// alert the control that failed ("[#index]" keeps the exact codes a click
// away).
func what(it Item) string {
	if it.Type == "compliance.alert" && it.Control != "" {
		return labels.Of(labels.Control, labels.JA, it.Control)
	}
	return labels.Of(labels.EventType, labels.JA, it.Type)
}

// loginReasons are the reasons the web records a failed login with.
var loginReasons = map[string]string{"bad credentials": "パスワードの誤り", "throttled": "試行回数の制限"}

// loginReasonJA is a failed login's reason in Japanese; one past the
// server-wide rate reads "over N failed logins a minute (REASON): ...".
func loginReasonJA(r string) string {
	if ja, ok := loginReasons[r]; ok {
		return ja
	}
	if rest, ok := strings.CutPrefix(r, "over "); ok {
		n, _, _ := strings.Cut(rest, " ")
		_, why, _ := strings.Cut(rest, "(")
		why, _, _ = strings.Cut(why, ")")
		return fmt.Sprintf("%s (失敗が 1 分に %s 回を超え、以降は件数のみ記録)", loginReasonJA(why), n)
	}
	return r
}

// detailOf is Item.Detail.
func detailOf(st *eventlog.Stored) string {
	switch st.Type {
	case "fileaccess.bulk":
		return bulkDetail(st)
	case "incident.overdue":
		s, _ := st.Attrs["title"].(string)
		return s
	}
	return ""
}

// bulkWindow is when the operations a bulk summary counts happened: from
// and to, or for changes found after the agent was stopped or could not
// record, that outage (window_from, window_to).
func bulkWindow(st *eventlog.Stored) (from, to time.Time, outage bool) {
	kf, kt := "from", "to"
	if src := st.Attrs["attribution_source"]; src == "while_agent_stopped" || src == "not_recorded" {
		kf, kt, outage = "window_from", "window_to", true
	}
	from, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(st.Attrs[kf]))
	to, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(st.Attrs[kt]))
	if err1 != nil || err2 != nil {
		return time.Time{}, time.Time{}, outage
	}
	return from, to, outage
}

// bulkTypes are the kinds of operation a bulk summary counts: the whole
// window's (totals) where the agent says them, else the counted rest's.
func bulkTypes(st *eventlog.Stored) map[string]any {
	if t, _ := st.Attrs["totals"].(map[string]any); len(t) > 0 {
		return t
	}
	c, _ := st.Attrs["counts"].(map[string]any)
	return c
}

// bulkDetail words a bulk summary as the agent makes it (fileaccess
// closeBulk): of total operations, the first `individually` were recorded
// one by one and the rest only counted, by type (counts) and by program
// (processes: the top five, "(others)" the number of programs more).
func bulkDetail(st *eventlog.Stored) string {
	total, _ := whole(st.Attrs["total"])
	d := fmt.Sprintf("ファイル操作 計 %d 件", total)
	var parts []string
	counts, _ := st.Attrs["counts"].(map[string]any)
	summed := 0
	if totals, _ := st.Attrs["totals"].(map[string]any); len(totals) > 0 {
		// Newer agents give the whole window by type, and send removals
		// one by one past the threshold too: say both as they are.
		ops := make([]string, 0, len(totals))
		for op, v := range totals {
			n, _ := whole(v)
			ops = append(ops, fmt.Sprintf("%s %d 件", labels.Of(labels.EventType, labels.JA, "file."+op), n))
		}
		sort.Strings(ops)
		one, _ := whole(st.Attrs["individually"])
		summed, _ = whole(st.Attrs["suppressed"])
		parts = append(parts, fmt.Sprintf("内訳: %s。個別に記録 %d 件、件数のみ %d 件", strings.Join(ops, "、"), one, summed))
	} else if len(counts) > 0 {
		ops := make([]string, 0, len(counts))
		for op, v := range counts {
			n, _ := whole(v)
			summed += n
			ops = append(ops, fmt.Sprintf("%s %d 件", labels.Of(labels.EventType, labels.JA, "file."+op), n))
		}
		sort.Strings(ops)
		one, _ := whole(st.Attrs["individually"])
		parts = append(parts, fmt.Sprintf("最初の %d 件は個別に記録、残り %d 件の内訳: %s", one, summed, strings.Join(ops, "、")))
	} else {
		parts = append(parts, "種類の内訳なし")
	}
	if procs, _ := st.Attrs["processes"].(map[string]any); len(procs) > 0 {
		others, _ := whole(procs["(others)"])
		type prog struct {
			name string
			n    int
		}
		var ps []prog
		listed := 0
		for p, v := range procs {
			if p == "(others)" {
				continue
			}
			n, _ := whole(v)
			listed += n
			ps = append(ps, prog{path.Base(strings.ReplaceAll(p, `\`, "/")), n})
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].n > ps[j].n || ps[i].n == ps[j].n && ps[i].name < ps[j].name })
		var ws []string
		for _, p := range ps {
			ws = append(ws, fmt.Sprintf("%s %d 件", p.name, p.n))
		}
		// The rest were by programs past the top five, or by none known.
		if rest := summed - listed; others > 0 && rest > 0 {
			ws = append(ws, fmt.Sprintf("ほか %d 個のプログラムなど %d 件", others, rest))
		} else if rest > 0 {
			ws = append(ws, fmt.Sprintf("プログラム不明 %d 件", rest))
		}
		parts = append(parts, "プログラム別 (まとめた分): "+strings.Join(ws, "、"))
	} else if st.Process != "" {
		parts = append(parts, "最も多いプログラム: "+path.Base(strings.ReplaceAll(st.Process, `\`, "/")))
	}
	from, to, outage := bulkWindow(st)
	switch src := st.Attrs["attribution_source"]; {
	case outage:
		// Found when the agent started again, or could record again:
		// its time is not when.
		w := "エージェント停止中"
		if src == "not_recorded" {
			w = "記録できなかった間"
		}
		if !from.IsZero() {
			w += ": " + jst(from) + " から " + jst(to) + " まで"
		}
		parts = append(parts, w)
	case !from.IsZero():
		parts = append(parts, jst(from)+" から "+jst(to)+" まで")
	}
	return d + " (" + strings.Join(parts, "。") + ")"
}

// whole reads a whole-number attribute: json.Number as the store decodes
// it, or an int.
func whole(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	}
	return 0, false
}

func jst(t time.Time) string { return t.In(JST).Format("2006-01-02 15:04:05") + " JST" }

// Mail sends one message with attachments through the configured relay
// with the configured retries (the monthly report), and records the
// outcome in the delivery log.
func (n *Notifier) Mail(ctx context.Context, rule string, rcpts []string, subject, text string, files ...Attachment) error {
	set, _, err := n.Settings(ctx)
	if err != nil {
		return err
	}
	if set.SMTP == nil {
		return errors.New("notify: no smtp relay configured")
	}
	m := Message{Rule: rule, Kind: "report", Subject: subject, Text: text, Count: 1}
	d := destination{name: "mail:" + strings.Join(rcpts, ","), mail: rcpts, smtp: *set.SMTP}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = time.Duration(set.Retry.Initial), time.Duration(set.Retry.Max)
	attempt := 0
	_, err = backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		err := sendMail(ctx, d.smtp, d.mail, m, files...)
		if err != nil {
			n.record(ctx, TypeAttemptFailed, event.Warning, d, m, attempt, err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(b), backoff.WithMaxTries(uint(set.Retry.Attempts)), backoff.WithMaxElapsedTime(0))
	if err != nil {
		n.record(ctx, TypeFailed, event.Warning, d, m, attempt, err)
		return err
	}
	n.record(ctx, TypeSent, event.Info, d, m, attempt, nil)
	return nil
}
