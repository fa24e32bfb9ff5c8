package notify

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/notify/alertkind"
	"github.com/mamori/mamori/shared/event"
)

// ErrNoAlert is returned by AlertAction when no alert has that index.
var ErrNoAlert = errors.New("notify: no such alert")

// Alert actions (POST /api/v1/alerts/{index}/{action} and the 通知 page).
const (
	ActionAcknowledge = "acknowledge"
	ActionResolve     = "resolve"
)

// alertTypes are the events a person can acknowledge or resolve: the
// compliance tracker's alerts and failed deliveries (a lost alert is an
// alert itself).
var alertTypes = []source{{"compliance", "compliance.alert"}, {Control, TypeFailed}}

// AlertAction records that user acknowledged or resolved the alert event
// at idx with comment; via ("web", or "" for the API) goes in the record.
// Bad input wraps ErrInvalid, an unknown index ErrNoAlert; the event is
// the action, so without it nothing happened.
func (n *Notifier) AlertAction(ctx context.Context, user, via string, idx int64, action, comment string) error {
	typ := map[string]string{ActionAcknowledge: TypeAcknowledged, ActionResolve: TypeResolved}[action]
	if typ == "" {
		return invalid("action must be acknowledge or resolve")
	}
	comment = strings.TrimSpace(comment)
	switch c := utf8.RuneCountInString(comment); {
	case c == 0:
		return invalid("comment is required: say what was checked or done")
	case c > MaxComment:
		return invalid("comment is %d characters; at most %d characters", c, MaxComment)
	}
	a, err := n.alertAt(ctx, idx)
	if err != nil {
		return err
	}
	if action == ActionAcknowledge {
		// A stale tab must not set a resolved alert back to acknowledged.
		if r, ok, err := n.resolution(ctx, a); err != nil {
			return err
		} else if ok {
			return &ResolvedError{By: r.User, At: r.Time}
		}
	}
	key, _ := a.Attrs["key"].(string)
	attrs := event.Attrs{"alert_index": idx, "alert_type": a.Type, "key": key, "comment": comment}
	if via != "" {
		attrs["via"] = via
	}
	e := event.Event{Agent: event.ServerStream, Control: "compliance", Type: typ, Severity: event.Info,
		Object: a.Object, User: user, Time: n.cfg.Now().UTC(), Attrs: attrs}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := n.cfg.Events.AppendServer(rctx, e); err != nil {
		return fmt.Errorf("notify: recording %s: %w", typ, err)
	}
	return nil
}

// MaxComment bounds an acknowledge or resolve comment, in characters (the
// form's maxlength).
const MaxComment = 2000

// ErrResolved refuses acknowledging an alert already resolved; the error
// is a *ResolvedError.
var ErrResolved = errors.New("the alert is already resolved")

// ResolvedError says who resolved the alert, and when.
type ResolvedError struct {
	By string
	At time.Time
}

func (e *ResolvedError) Error() string {
	return fmt.Sprintf("%v by %s at %s", ErrResolved, e.By, e.At.UTC().Format(time.RFC3339))
}

func (e *ResolvedError) Is(target error) bool { return target == ErrResolved }

// resolution finds the resolve recorded for alert a, if any.
func (n *Notifier) resolution(ctx context.Context, a eventlog.Stored) (eventlog.Stored, bool, error) {
	f := eventlog.Filter{Control: "compliance", Type: TypeResolved, From: a.Time, Limit: eventlog.MaxLimit}
	for {
		p, err := n.cfg.Events.Query(ctx, f)
		if err != nil {
			return eventlog.Stored{}, false, fmt.Errorf("notify: reading resolutions: %w", err)
		}
		for _, e := range p.Events {
			if e.Agent == event.ServerStream && fmt.Sprint(e.Attrs["alert_index"]) == strconv.FormatInt(a.Index, 10) {
				return e, true, nil
			}
		}
		if p.Next == "" || len(p.Events) == 0 {
			return eventlog.Stored{}, false, nil
		}
		f.Cursor = p.Next
	}
}

// alertAt reads the alert event at idx from the server stream.
func (n *Notifier) alertAt(ctx context.Context, idx int64) (eventlog.Stored, error) {
	if idx < 0 {
		return eventlog.Stored{}, fmt.Errorf("%w at index %d", ErrNoAlert, idx)
	}
	for _, src := range alertTypes {
		// No Agent in the filter: with one, the store reads the cursor as
		// a position in that agent's stream, and idx-1 may belong to another.
		p, err := n.cfg.Events.Query(ctx, eventlog.Filter{Control: src.control, Type: src.typ,
			Cursor: eventlog.CursorAfter(idx - 1), Limit: 1})
		if err != nil {
			return eventlog.Stored{}, fmt.Errorf("notify: reading alert %d: %w", idx, err)
		}
		if len(p.Events) == 1 && p.Events[0].Index == idx && p.Events[0].Agent == event.ServerStream {
			return p.Events[0], nil
		}
	}
	return eventlog.Stored{}, fmt.Errorf("%w at index %d", ErrNoAlert, idx)
}

// AlertRow is one alert as the 通知 page lists it, with its latest state.
type AlertRow struct {
	Index      int64
	Time       time.Time
	Type       string // compliance.alert | notify.failed
	Severity   event.Severity
	Kind       string // violation | silent | the rule kind of a failed delivery
	Agent      string // compliance alerts: the agent id
	Host       string
	Department string
	Control    string
	// The reason in Japanese and English, and its code; a failed delivery
	// has its subject and error in both.
	ReasonJA, ReasonEN, Reason string
	State                      string // open | acknowledged | resolved
	By                         string
	Comment                    string
	At                         time.Time
	// A failed delivery's message (what was lost: Count alerts, the first
	// Items of them), its error raw and in Japanese (the latest re-send's,
	// if one failed), and whether it can be re-sent or was: ResendBy and
	// ResendAt name the latest re-send.
	Subject            string
	Items              []Item
	Count              int
	Error, ErrorJA     string
	Resendable, Resent bool
	ResendBy           string
	ResendAt           time.Time
	// Alerted marks an alerted item (Alerted): the row is the event a
	// message was about, not an alert to acknowledge; Outcome is its
	// message's (sent or failed).
	Alerted bool
	Outcome string
}

// OutcomeJA is an alerted item's notification in Japanese, in the audit
// report's words.
func (r AlertRow) OutcomeJA() string {
	return alertkind.OutcomeJA(r.Outcome)
}

// alertedRow is the 通知 page's row of an event alerted as kind (by a
// message, or by itself): its PC and what it was about in one line.
func alertedRow(it Item, kind string) AlertRow {
	host := it.Hostname
	if host == "" && it.Agent != event.ServerStream {
		host = it.Agent
	}
	var why []string
	for _, s := range []string{it.Reason, it.Detail, it.Object, it.User, it.IP} {
		if s != "" {
			why = append(why, s)
		}
	}
	r := AlertRow{Index: it.Index, Time: it.Time, Type: it.Type, Kind: kind, Agent: it.Agent, Host: host,
		Department: it.Department, Control: it.Control, ReasonJA: strings.Join(why, " "), Alerted: true}
	r.ReasonEN = r.ReasonJA
	return r
}

// Alerted lists the items of the messages delivered or failed since from
// (the delivery log keeps them), and every other event the classification
// makes an alert by itself (alertkind.Standalone) that no message named
// (Outcome "": a default rule without recipients delivers nothing), one
// row per event, newest first, at most limit. Compliance alerts are left
// out: Alerts lists them with their state.
func (n *Notifier) Alerted(ctx context.Context, from time.Time, limit int) ([]AlertRow, error) {
	byIndex := map[int64]AlertRow{}
	f := eventlog.Filter{Agent: event.ServerStream, Control: Control, From: from, Limit: eventlog.MaxLimit}
	for {
		p, err := n.cfg.Events.Query(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("notify: reading the delivery log: %w", err)
		}
		for i := range p.Events {
			e := &p.Events[i]
			if e.Type != TypeSent && e.Type != TypeFailed {
				continue
			}
			var items []Item
			if b, err := json.Marshal(e.Attrs["items"]); err == nil {
				_ = json.Unmarshal(b, &items)
			}
			kind, _ := e.Attrs["kind"].(string)
			for _, it := range items {
				if it.Type == "compliance.alert" || it.Time.Before(from) {
					continue
				}
				r, seen := byIndex[it.Index]
				if !seen {
					r = alertedRow(it, kind)
				}
				// Sent to any destination is sent.
				if r.Outcome != "sent" {
					r.Outcome = strings.TrimPrefix(e.Type, "notify.")
				}
				byIndex[it.Index] = r
			}
		}
		if p.Next == "" || len(p.Events) == 0 {
			break
		}
		f.Cursor = p.Next
	}
	// The alerts no message named.
	set, _, err := n.Settings(ctx)
	if err != nil {
		return nil, err
	}
	agents, err := n.agentInfo(ctx)
	if err != nil {
		return nil, err
	}
	for _, src := range alertkind.Standalone {
		if src.Type == "compliance.alert" {
			continue
		}
		f := eventlog.Filter{Control: src.Control, Type: src.Type, From: from, Limit: eventlog.MaxLimit}
		for {
			p, err := n.cfg.Events.Query(ctx, f)
			if err != nil {
				return nil, fmt.Errorf("notify: reading %s: %w", src.Type, err)
			}
			for i := range p.Events {
				e := &p.Events[i]
				if _, seen := byIndex[e.Index]; seen || e.Pruned {
					continue
				}
				for _, c := range classify(set, agents, e) {
					byIndex[e.Index] = alertedRow(c.item, c.kind)
				}
			}
			if p.Next == "" || len(p.Events) == 0 {
				break
			}
			f.Cursor = p.Next
		}
	}
	rows := make([]AlertRow, 0, len(byIndex))
	for _, r := range byIndex {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b AlertRow) int { return cmp.Compare(b.Index, a.Index) })
	if len(rows) > limit {
		rows = rows[:limit]
	}
	return rows, nil
}

// Alerts lists the alerts raised since from, newest first, at most limit,
// each with the last acknowledge or resolve recorded for it.
func (n *Notifier) Alerts(ctx context.Context, from time.Time, limit int) ([]AlertRow, error) {
	read := func(control, typ string, each func(*eventlog.Stored)) error {
		f := eventlog.Filter{Control: control, Type: typ, From: from, Limit: eventlog.MaxLimit}
		for {
			p, err := n.cfg.Events.Query(ctx, f)
			if err != nil {
				return fmt.Errorf("notify: reading %s: %w", typ, err)
			}
			for i := range p.Events {
				if p.Events[i].Agent == event.ServerStream {
					each(&p.Events[i])
				}
			}
			if p.Next == "" || len(p.Events) == 0 {
				return nil
			}
			f.Cursor = p.Next
		}
	}
	var rows []AlertRow
	for _, src := range alertTypes {
		err := read(src.control, src.typ, func(e *eventlog.Stored) {
			str := func(k string) string { s, _ := e.Attrs[k].(string); return s }
			r := AlertRow{Index: e.Index, Time: e.Time, Type: e.Type, Severity: e.Severity, State: "open"}
			if e.Type == TypeFailed {
				r.Kind, r.Control, r.Host = str("kind"), Control, str("destination")
				r.Error, r.ErrorJA = str("error"), ErrorJA(str("error"))
				r.ReasonJA, r.ReasonEN = str("subject"), str("subject")
				if r.Error != "" {
					r.ReasonJA += " (" + r.ErrorJA + ")"
					r.ReasonEN += " (" + r.Error + ")"
				}
				m, ok := storedMessage(e)
				r.Subject, r.Items, r.Count = str("subject"), m.Items, m.Count
				r.Resendable = ok && r.Kind != "report" && r.Host != "none"
			} else {
				r.Kind, r.Agent, r.Host, r.Department, r.Control = str("kind"), str("agent"), str("hostname"), str("department"), str("control")
				r.ReasonJA, r.ReasonEN, r.Reason = str("reason_ja"), str("reason_en"), str("reason")
				if r.Host == "" {
					r.Host = str("agent")
				}
			}
			rows = append(rows, r)
		})
		if err != nil {
			return nil, err
		}
	}
	at := make(map[int64]int, len(rows))
	for i, r := range rows {
		at[r.Index] = i
	}
	for _, typ := range []string{TypeAcknowledged, TypeResolved} {
		err := read("compliance", typ, func(e *eventlog.Stored) {
			idx, err := strconv.ParseInt(fmt.Sprint(e.Attrs["alert_index"]), 10, 64)
			i, ok := at[idx]
			// Resolved is final: an acknowledge recorded after it (before
			// acknowledging a resolved alert was refused) does not reopen it.
			if err != nil || !ok || (e.Time.Before(rows[i].At) && !(typ == TypeResolved && rows[i].State != "resolved")) {
				return
			}
			c, _ := e.Attrs["comment"].(string)
			rows[i].State, rows[i].By, rows[i].Comment, rows[i].At = strings.TrimPrefix(typ, "alert."), e.User, c, e.Time
		})
		if err != nil {
			return nil, err
		}
	}
	// Re-sends, in log order per type; one that got through is final.
	for _, typ := range []string{TypeAttemptFailed, TypeSent} {
		err := read(Control, typ, func(e *eventlog.Stored) {
			of, err := strconv.ParseInt(fmt.Sprint(e.Attrs["resend_of"]), 10, 64)
			i, ok := at[of]
			if err != nil || !ok || rows[i].Type != TypeFailed {
				return
			}
			rows[i].ResendBy, rows[i].ResendAt = e.User, e.Time
			if typ == TypeSent {
				rows[i].Resent = true
				return
			}
			msg, _ := e.Attrs["error"].(string)
			rows[i].Error, rows[i].ErrorJA = msg, ErrorJA(msg)
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(rows, func(a, b AlertRow) int { return int(b.Index - a.Index) })
	if len(rows) > limit {
		rows = rows[:limit]
	}
	return rows, nil
}
