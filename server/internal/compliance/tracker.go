package compliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/policies"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
)

// Alert event vocabulary, appended to the server stream.
const (
	AlertControl = "compliance"
	AlertType    = "compliance.alert"
)

// Alert kinds.
const (
	KindViolation = "violation" // a control's latest status is fail
	KindSilent    = "silent"    // the agent has been silent longer than silent_after
)

// Events is the part of the event store the tracker uses; eventlog.Store
// satisfies it.
type Events interface {
	Query(ctx context.Context, f eventlog.Filter) (eventlog.Page, error)
	Agents(ctx context.Context) ([]eventlog.Head, error)
	AppendServer(ctx context.Context, e event.Event) (event.Event, error)
}

// Inventory lists the enrolled agents with their effective policies.
type Inventory interface {
	Hosts(ctx context.Context) ([]HostInfo, error)
}

// Config configures New. Events and Inventory are required.
type Config struct {
	Events    Events
	Inventory Inventory
	// Now is the clock silence is measured with; default time.Now.
	Now func() time.Time
	Log zerolog.Logger
	// Poll is how often Run tails the event log; default 1s. Requests also
	// catch up first, so they always see every stored status.
	Poll time.Duration
	// AlertEvery is how often Run checks for silent agents; default 30s.
	AlertEvery time.Duration
	// InventoryTTL is how long the inventory is cached; default 15s.
	// Invalidate drops it at once (on a policy or assignment change).
	InventoryTTL time.Duration
	// PolicyGrace is how long an agent may run another policy version
	// than the assigned one before its controls stop counting; default
	// PolicyGrace.
	PolicyGrace time.Duration
	// SnapshotPath, if set, is where Run keeps a snapshot of the tracker's
	// state (every SaveEvery when it changed, and on exit) so that a
	// restart reads only the events stored since, not all status events.
	SnapshotPath string
	// SaveEvery is the snapshot period; default 30s.
	SaveEvery time.Duration
	// History, if set, keeps one row of pass rates per day, recorded by
	// Run every HistoryEvery (default 10 minutes), so trends do not depend
	// on anyone opening a page. Location draws the day line; default JST.
	History      HistoryStore
	HistoryEvery time.Duration
	Location     *time.Location
}

// Tracker keeps the latest status per (agent, control) by tailing the event
// log, and derives reports and alerts from it. Safe for concurrent use.
type Tracker struct {
	cfg     Config
	log     zerolog.Logger
	started time.Time

	catchMu sync.Mutex // serialises tailing
	loaded  bool       // snapshot considered; guarded by catchMu
	alertMu sync.Mutex // serialises alert raising

	mu           sync.RWMutex
	cursors      map[string]string            // stream (event type) -> Query cursor
	cursorHashes map[string]snapCursor        // stream -> index and hash at the cursor
	gen          uint64                       // bumped on every change, for snapshots
	latest       map[string]map[string]Latest // agent -> control -> latest
	alerted      map[string]bool              // alert keys already raised
	running      map[string]Running           // agent -> policy version it reports running
	tampered     map[string]Tampered          // agent -> latest agent.policy_tampered
	dirty        bool                         // a fail status arrived since the last alert check

	invMu    sync.Mutex
	inv      []HostInfo
	invTime  time.Time
	effSince map[string]effSeen // agent -> its effective version and when first seen; guarded by invMu

	hist *history // nil without Config.History
}

// New returns a tracker that has read nothing yet; CatchUp (or Run) reads
// the event log.
func New(cfg Config) (*Tracker, error) {
	if cfg.Events == nil || cfg.Inventory == nil {
		return nil, errors.New("compliance: Config.Events and Config.Inventory are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.AlertEvery <= 0 {
		cfg.AlertEvery = 30 * time.Second
	}
	if cfg.InventoryTTL <= 0 {
		cfg.InventoryTTL = 15 * time.Second
	}
	if cfg.PolicyGrace <= 0 {
		cfg.PolicyGrace = PolicyGrace
	}
	if cfg.SaveEvery <= 0 {
		cfg.SaveEvery = 30 * time.Second
	}
	if cfg.HistoryEvery <= 0 {
		cfg.HistoryEvery = 10 * time.Minute
	}
	if cfg.Location == nil {
		cfg.Location = time.FixedZone("JST", 9*3600)
	}
	var hist *history
	if cfg.History != nil {
		hist = &history{store: cfg.History, loc: cfg.Location}
	}
	return &Tracker{
		hist:         hist,
		cfg:          cfg,
		log:          cfg.Log.With().Str("component", "compliance").Logger(),
		started:      cfg.Now(),
		cursors:      map[string]string{},
		cursorHashes: map[string]snapCursor{},
		latest:       map[string]map[string]Latest{},
		alerted:      map[string]bool{},
		running:      map[string]Running{},
		tampered:     map[string]Tampered{},
		effSince:     map[string]effSeen{},
	}, nil
}

// Run tails the event log every Poll, keeps the snapshot and drops the
// inventory on changes (a policy or assignment changed, signalled on
// changes, which may be nil) until ctx ends. It appends nothing, so every
// server runs it: a standby's reports stay current. RunAlerts, on the
// writer only, raises the alerts and records the daily history.
func (t *Tracker) Run(ctx context.Context, changes <-chan struct{}) error {
	poll := time.NewTicker(t.cfg.Poll)
	defer poll.Stop()
	save := time.NewTicker(t.cfg.SaveEvery)
	defer save.Stop()
	var saved uint64 // gen at the last snapshot
	snap := func() {
		t.mu.RLock()
		gen := t.gen
		t.mu.RUnlock()
		if gen == saved {
			return
		}
		if err := t.SaveSnapshot(); err != nil {
			t.log.Warn().Err(err).Msg("compliance: saving snapshot")
			return
		}
		saved = gen
	}
	defer snap()
	var failing bool // log a persistent failure once, not every tick
	step := func() {
		err := t.CatchUp(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			t.log.Warn().Err(err).Msg("compliance: tailing failed; retrying")
			failing = true
		case err == nil && failing:
			t.log.Info().Msg("compliance: tailing recovered")
			failing = false
		}
	}
	step()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			step()
		case <-save.C:
			snap()
		case _, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			t.Invalidate()
		}
	}
}

// RunAlerts raises alerts every AlertEvery, and within a Poll of a new fail
// status (which Run or a request read), and records the daily history
// every HistoryEvery, until ctx ends. Both write (alerts into the log,
// history into etcd), so only the writer runs it: a server runs it while
// it holds the writer role.
func (t *Tracker) RunAlerts(ctx context.Context) {
	poll := time.NewTicker(t.cfg.Poll)
	defer poll.Stop()
	check := time.NewTicker(t.cfg.AlertEvery)
	defer check.Stop()
	day := time.NewTicker(t.cfg.HistoryEvery)
	defer day.Stop()
	record := func() {
		if err := t.RecordDay(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn().Err(err).Msg("compliance: daily history not recorded")
		}
	}
	var failing bool // log a persistent failure once, not every tick
	step := func(all bool) {
		if !all {
			t.mu.RLock()
			all = t.dirty
			t.mu.RUnlock()
			if !all {
				return
			}
		}
		err := t.CheckAlerts(ctx) // catches up first
		if err == nil && t.missingToday() {
			record()
		}
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			t.log.Warn().Err(err).Msg("compliance: alerting failed; retrying")
			failing = true
		case err == nil && failing:
			t.log.Info().Msg("compliance: alerting recovered")
			failing = false
		}
	}
	step(true)
	record()
	for {
		select {
		case <-ctx.Done():
			return
		case <-day.C:
			record()
		case <-poll.C:
			step(false)
		case <-check.C:
			step(true)
		}
	}
}

// Invalidate drops the cached inventory, so the next report reads it anew.
func (t *Tracker) Invalidate() {
	t.invMu.Lock()
	t.inv, t.invTime = nil, time.Time{}
	t.invMu.Unlock()
}

// streams are the event-log streams tailed: one per control, and the
// server's own alerts (to know which were raised before a restart).
func streams() []eventlog.Filter {
	out := make([]eventlog.Filter, 0, len(Controls)+1)
	for _, c := range Controls {
		out = append(out, eventlog.Filter{Control: c, Type: c + ".status"})
	}
	// The policy version each agent runs (at start, on every change) and
	// its reports of an edited policy file.
	for _, typ := range []string{typeStarted, typeApplied, typeTampered} {
		out = append(out, eventlog.Filter{Control: "agent", Type: typ})
	}
	return append(out, eventlog.Filter{Agent: event.ServerStream, Control: AlertControl, Type: AlertType})
}

// CatchUp reads every status and alert event stored since the last call.
// Each stream is read through the store's (control, type) index from its
// cursor on, so the cost is the number of new events.
func (t *Tracker) CatchUp(ctx context.Context) error {
	t.catchMu.Lock()
	defer t.catchMu.Unlock()
	if !t.loaded {
		t.loadSnapshot(ctx)
		t.loaded = true
	}
	for _, f := range streams() {
		key := f.Type
		t.mu.RLock()
		f.Cursor = t.cursors[key]
		t.mu.RUnlock()
		f.Limit = eventlog.MaxLimit
		for {
			p, err := t.cfg.Events.Query(ctx, f)
			if err != nil {
				return fmt.Errorf("compliance: reading %s events: %w", f.Type, err)
			}
			if len(p.Events) == 0 {
				break
			}
			t.mu.Lock()
			for i := range p.Events {
				t.apply(&p.Events[i])
			}
			last := p.Events[len(p.Events)-1]
			f.Cursor = strconv.FormatInt(last.Index, 10)
			t.cursors[key] = f.Cursor
			t.cursorHashes[key] = snapCursor{Index: last.Index, Hash: last.Hash}
			t.gen++
			t.mu.Unlock()
			if p.Next == "" {
				break
			}
		}
	}
	return nil
}

// apply folds one stored event into the tracker; t.mu is held.
func (t *Tracker) apply(st *eventlog.Stored) {
	if st.Type == AlertType {
		if k, ok := st.Attrs["key"].(string); ok {
			t.alerted[k] = true
		}
		return
	}
	if st.Control == "agent" {
		t.applyAgent(st)
		return
	}
	l := parseStatus(st)
	byControl := t.latest[st.Agent]
	if byControl == nil {
		byControl = map[string]Latest{}
		t.latest[st.Agent] = byControl
	}
	prev, had := byControl[st.Control]
	if had && prev.Index > l.Index {
		return // never replace a newer status (cannot happen while tailing in order)
	}
	// An agent's since starts afresh when the agent does (it re-sends its
	// statuses at start with since = then): while the state and reason stay
	// the same, the status began when the tracker first saw it begin.
	if had && prev.Status == l.Status && prev.Reason == l.Reason && prev.Since.Before(l.Since) {
		l.Since = prev.Since
	}
	if l.Status == Fail {
		if had && prev.Status == Fail {
			l.FailRun = prev.FailRun
		} else {
			l.FailRun = l.Index
			t.dirty = true
		}
	}
	byControl[st.Control] = l
}

// parseStatus reads a "<control>.status" event (see the agent's
// controls.StatusEvent). A missing or unknown status value counts as
// unknown with reason status.invalid; a missing since is the event time.
func parseStatus(st *eventlog.Stored) Latest {
	str := func(k string) string { s, _ := st.Attrs[k].(string); return s }
	l := Latest{Index: st.Index, Time: st.Time, Since: st.Time, FailRun: -1,
		Reason: str("reason"), ReasonJA: str("reason_ja"), ReasonEN: str("reason_en")}
	switch s := Status(str("status")); s {
	case Pass, Fail, Unknown:
		l.Status = s
	case Off:
		// Derive only looks at statuses of controls the assigned policy
		// runs: the agent runs another policy (Derive names the versions).
		l.Status = Unknown
		l.Reason = ReasonMismatch
		l.ReasonJA, l.ReasonEN = mismatchTexts("", "", false, true)
	default:
		l.Status = Unknown
		l.Reason, l.ReasonJA, l.ReasonEN = ReasonBadStatus,
			fmt.Sprintf("状態の値 %q が不正です", str("status")), fmt.Sprintf("invalid status value %q", str("status"))
	}
	if s, err := time.Parse(time.RFC3339, str("since")); err == nil {
		l.Since = s.UTC()
	}
	return l
}

// hosts returns the inventory, cached for InventoryTTL. A cached list
// that lacks an agent whose status the tracker holds is read again (at
// most once per Poll): a PC enrolled since, whose first statuses fail,
// is alerted at once rather than when the cache expires.
func (t *Tracker) hosts(ctx context.Context) ([]HostInfo, error) {
	t.invMu.Lock()
	defer t.invMu.Unlock()
	if t.inv != nil && time.Since(t.invTime) < t.cfg.InventoryTTL && (time.Since(t.invTime) < t.cfg.Poll || !t.unknownAgent(t.inv)) {
		return t.inv, nil
	}
	inv, err := t.cfg.Inventory.Hosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("compliance: inventory: %w", err)
	}
	inv = slices.Clone(inv)
	if inv == nil {
		inv = []HostInfo{}
	}
	now := t.cfg.Now()
	for i := range inv {
		h := &inv[i]
		if h.Policy == nil {
			continue
		}
		h.version = h.Policy.Version()
		e, ok := t.effSince[h.Agent]
		if !ok || e.version != h.version {
			e = effSeen{version: h.version, at: now}
			t.effSince[h.Agent] = e
		}
		h.versionSeen = e.at
	}
	t.inv, t.invTime = inv, time.Now()
	return inv, nil
}

// unknownAgent says whether an agent with statuses is not in inv.
func (t *Tracker) unknownAgent(inv []HostInfo) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if len(t.latest) <= len(inv) {
		known := make(map[string]bool, len(inv))
		for _, h := range inv {
			known[h.Agent] = true
		}
		for a := range t.latest {
			if !known[a] {
				return true
			}
		}
		return false
	}
	return true
}

// derive catches up and derives every host's state now.
func (t *Tracker) derive(ctx context.Context) ([]Host, time.Time, error) {
	if err := t.CatchUp(ctx); err != nil {
		return nil, time.Time{}, err
	}
	inv, err := t.hosts(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	heads, err := t.cfg.Events.Agents(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("compliance: stream heads: %w", err)
	}
	seen := make(map[string]time.Time, len(heads))
	for _, h := range heads {
		seen[h.Agent] = h.LastSeen
	}
	now := t.cfg.Now()
	t.mu.RLock()
	hosts := derive(now, t.started, inv, seen, t.latest, &policyInfo{grace: t.cfg.PolicyGrace, running: t.running, tampered: t.tampered})
	t.mu.RUnlock()
	return hosts, now, nil
}

// Report is the answer of GET /api/v1/compliance.
type Report struct {
	Time time.Time `json:"time"`
	// Clauses are the clause references (PPC 通則編, JIS Q 15001) each
	// reported control proves, from the catalog of the built-in packs.
	Clauses     map[string][]string        `json:"clauses"`
	Hosts       []Host                     `json:"hosts"`
	Fleet       map[string]Rate            `json:"fleet"`
	Departments map[string]map[string]Rate `json:"departments"`
}

// Filter narrows a report. Agent and Department select hosts (and so the
// fleet figures); Control keeps one control; Status keeps hosts with at
// least one (kept) control in that status, and only those controls. Status
// does not change the fleet figures, which would be meaningless otherwise.
type Filter struct {
	Agent, Department, Control string
	Status                     Status
}

// Report derives the compliance report for f.
func (t *Tracker) Report(ctx context.Context, f Filter) (Report, error) {
	all, now, err := t.derive(ctx)
	if err != nil {
		return Report{}, err
	}
	controls := Controls
	if f.Control != "" {
		controls = []string{f.Control}
	}
	var sel []Host
	for _, h := range all {
		if (f.Agent == "" || h.Agent == f.Agent) && (f.Department == "" || h.Department == f.Department) {
			sel = append(sel, h)
		}
	}
	r := Report{Time: now.UTC(), Hosts: []Host{}, Fleet: Rates(sel, controls), Departments: map[string]map[string]Rate{},
		Clauses: map[string][]string{}}
	for _, c := range controls {
		r.Clauses[c] = policies.Clauses()[c]
	}
	byDept := map[string][]Host{}
	for _, h := range sel {
		byDept[h.Department] = append(byDept[h.Department], h)
	}
	for d, hs := range byDept {
		r.Departments[d] = Rates(hs, controls)
	}
	for _, h := range sel {
		kept := make(map[string]ControlState, len(controls))
		for _, c := range controls {
			if cs := h.Controls[c]; f.Status == "" || cs.Status == f.Status {
				kept[c] = cs
			}
		}
		if len(kept) == 0 {
			continue
		}
		h.Controls = kept
		r.Hosts = append(r.Hosts, h)
	}
	return r, nil
}

// Alert is one open violation or silent agent.
type Alert struct {
	Kind       string    `json:"kind"` // violation | silent
	Agent      string    `json:"agent"`
	Hostname   string    `json:"hostname"`
	Department string    `json:"department"`
	Control    string    `json:"control,omitempty"` // violations only
	Reason     string    `json:"reason"`
	ReasonJA   string    `json:"reason_ja"`
	ReasonEN   string    `json:"reason_en"`
	Since      time.Time `json:"since"`
	Index      *int64    `json:"index,omitempty"` // the status event, violations only
	// Clauses the failing control (or, for a silent agent, the agent's
	// record keeping) proves.
	Clauses []string `json:"clauses"`

	key string // identifies the violation run or the silence
}

// alertsOf lists the open alerts of hosts, oldest first.
func alertsOf(hosts []Host) []Alert {
	out := []Alert{}
	for _, h := range hosts {
		if tp := h.tampered; tp != nil {
			ja, en := tamperedTexts(*tp)
			idx := tp.Index
			out = append(out, Alert{Kind: KindPolicyTampered, Agent: h.Agent, Hostname: h.Hostname, Department: h.Department,
				Reason: ReasonTampered, ReasonJA: ja, ReasonEN: en, Since: tp.Received, Index: &idx,
				Clauses: policies.Clauses()["agent"], key: fmt.Sprintf("%s|%s|%d", KindPolicyTampered, h.Agent, tp.Index)})
		}
		if h.Silent {
			c := h.anyControlState()
			out = append(out, Alert{Kind: KindSilent, Agent: h.Agent, Hostname: h.Hostname, Department: h.Department,
				Reason: ReasonSilent, ReasonJA: c.ReasonJA, ReasonEN: c.ReasonEN, Since: h.silentRef,
				Clauses: policies.Clauses()["agent"],
				key:     fmt.Sprintf("%s|%s|%d", KindSilent, h.Agent, h.silentRef.UnixNano())})
			continue
		}
		if m := h.PolicyMismatch; m != nil {
			ja, en := mismatchTexts(m.Running, m.Assigned, true, false)
			out = append(out, Alert{Kind: KindPolicyMismatch, Agent: h.Agent, Hostname: h.Hostname, Department: h.Department,
				Reason: ReasonMismatch, ReasonJA: ja, ReasonEN: en, Since: m.Since,
				Clauses: policies.Clauses()["agent"], key: h.mismatchKey})
		}
		for _, c := range Controls {
			cs := h.Controls[c]
			if cs.Status != Fail {
				continue
			}
			a := Alert{Kind: KindViolation, Agent: h.Agent, Hostname: h.Hostname, Department: h.Department, Control: c,
				Reason: cs.Reason, ReasonJA: cs.ReasonJA, ReasonEN: cs.ReasonEN, Index: cs.Index, Clauses: policies.Clauses()[c],
				key: fmt.Sprintf("%s|%s|%s|%d", KindViolation, h.Agent, c, h.failRuns[c])}
			if cs.Since != nil {
				a.Since = *cs.Since
			}
			out = append(out, a)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// anyControlState returns a state carrying the silence text, or a zero one
// when every control is off.
func (h *Host) anyControlState() ControlState {
	for _, c := range Controls {
		if cs := h.Controls[c]; cs.Reason == ReasonSilent {
			return cs
		}
	}
	return ControlState{ReasonJA: "エージェントから応答がありません", ReasonEN: "agent silent"}
}

// Alerts lists the open alerts: controls whose latest status is fail, and
// silent agents.
func (t *Tracker) Alerts(ctx context.Context) ([]Alert, error) {
	hosts, _, err := t.derive(ctx)
	if err != nil {
		return nil, err
	}
	return alertsOf(hosts), nil
}

// CheckAlerts appends a compliance.alert event to the server stream for
// every open alert not raised before: once per violation run (a control
// turning fail) and once per silence (an agent turning silent). Raised
// alerts are read back from the log after a restart, so they are not raised
// twice.
func (t *Tracker) CheckAlerts(ctx context.Context) error {
	t.alertMu.Lock()
	defer t.alertMu.Unlock()
	t.mu.Lock()
	t.dirty = false
	t.mu.Unlock()
	alerts, err := t.Alerts(ctx)
	if err != nil {
		return err
	}
	// Keys of closed alerts never come back (they name a violation run or
	// a silence by its start), so only open ones need remembering.
	t.mu.Lock()
	open := make(map[string]bool, len(alerts))
	for _, a := range alerts {
		if t.alerted[a.key] {
			open[a.key] = true
		}
	}
	if len(open) != len(t.alerted) {
		t.alerted = open
		t.gen++
	}
	t.mu.Unlock()
	for _, a := range alerts {
		t.mu.RLock()
		done := t.alerted[a.key]
		t.mu.RUnlock()
		if done {
			continue
		}
		attrs := event.Attrs{"key": a.key, "kind": a.Kind, "agent": a.Agent, "hostname": a.Hostname,
			"department": a.Department, "reason": a.Reason, "reason_ja": a.ReasonJA, "reason_en": a.ReasonEN,
			"since": a.Since.UTC().Format(time.RFC3339), "clauses": clausesAttr(a.Clauses)}
		sev := event.Warning
		switch a.Kind {
		case KindViolation:
			sev = event.Violation
			attrs["control"] = a.Control
			if a.Index != nil {
				attrs["index"] = json.Number(strconv.FormatInt(*a.Index, 10))
			}
		case KindPolicyMismatch, KindPolicyTampered:
			// The PC does not run the assigned policy: as grave as a violation.
			sev = event.Violation
			if a.Index != nil {
				attrs["index"] = json.Number(strconv.FormatInt(*a.Index, 10))
			}
		}
		e := event.Event{Control: AlertControl, Type: AlertType, Severity: sev, Object: a.Agent, Attrs: attrs}
		if _, err := t.cfg.Events.AppendServer(ctx, e); err != nil {
			return fmt.Errorf("compliance: raising %s alert for %s: %w", a.Kind, a.Agent, err)
		}
		t.mu.Lock()
		t.alerted[a.key] = true
		t.gen++
		t.mu.Unlock()
		t.log.Warn().Str("kind", a.Kind).Str("agent", a.Agent).Str("hostname", a.Hostname).
			Str("control", a.Control).Str("reason", a.Reason).Msg("compliance: alert raised")
	}
	return nil
}

// clausesAttr is clauses as an attrs value ([]any is what attrs decode to,
// so the stored event re-encodes to the bytes that were hashed).
func clausesAttr(cs []string) []any {
	out := make([]any, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}
