package report

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/notify/alertkind"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

// The log's alert vocabulary (server/internal/compliance and notify): the
// compliance tracker's alerts, the deliveries of the notification rules'
// messages (each keeps its items: the events it was about), and a
// person's 確認/解決 of an alert or a failed delivery.
const (
	alertType          = "compliance.alert"
	notifyControl      = "notify"
	sentType           = "notify.sent"
	failedType         = "notify.failed"
	acknowledgedType   = "alert.acknowledged"
	resolvedType       = "alert.resolved"
	failedDeliveryKind = "delivery_failed" // the summary row of failed deliveries
)

// AlertKinds are the notification rules' kinds, in the report's order.
var AlertKinds = []string{"violation", "silent", "bulk_copy", "unregistered_media", "out_of_hours", "backup_overdue",
	"log_integrity", "login_failures", "incident_overdue"}

// AlertListMax bounds the list of the period's alerts; More counts the rest.
const AlertListMax = 200

// Alerts is what alerted in the period and how it was handled.
type Alerts struct {
	Kinds []AlertKindRow `json:"kinds"`
	List  []AlertEntry   `json:"list"`
	More  int            `json:"more"` // alerts of the period not in List
}

// Totals counts the period's alerts of every kind, and those open at its
// end.
func (a Alerts) Totals() (alerted, open int) {
	for _, k := range a.Kinds {
		alerted, open = alerted+k.Alerted, open+k.Open
	}
	return alerted, open
}

// AlertKindRow is one alert kind's figures. Alerted = Delivered + Failed
// + NotNotified. Unlisted counts (of Delivered and Failed) the alerts a
// message counted without naming them (a message names at most 50), which
// the list cannot show. Handled rows (the compliance tracker's alerts and
// failed deliveries, which people acknowledge and resolve) count those
// acknowledged and resolved by the period's end, and those still open
// (not resolved) then.
type AlertKindRow struct {
	Kind         string `json:"kind"`
	Name         string `json:"name"`
	Alerted      int    `json:"alerted"`
	Delivered    int    `json:"delivered"`
	Failed       int    `json:"failed"`
	NotNotified  int    `json:"not_notified"`
	Unlisted     int    `json:"unlisted"`
	Handled      bool   `json:"handled"`
	Acknowledged int    `json:"acknowledged"`
	Resolved     int    `json:"resolved"`
	Open         int    `json:"open"`
}

// AlertEntry is one alert of the period.
type AlertEntry struct {
	Index    int64         `json:"index"` // log index of the alert's event (evidence bundle)
	Time     time.Time     `json:"time"`
	Kind     string        `json:"kind"`
	KindName string        `json:"kind_name"`
	Host     string        `json:"host"`
	What     string        `json:"what"`
	Outcome  string        `json:"outcome"` // sent | failed | "" (no delivery recorded)
	Actions  []AlertAction `json:"actions,omitempty"`
}

// AlertAction is one 確認 or 解決 of an alert.
type AlertAction struct {
	Action  string    `json:"action"` // acknowledged | resolved
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment"`
}

// Notified says how the alert's notification went, in Japanese.
func (e AlertEntry) Notified() string {
	return alertkind.OutcomeJA(e.Outcome)
}

// Handling is the alert's 確認/解決 in Japanese, in order.
func (e AlertEntry) Handling() string {
	out := make([]string, len(e.Actions))
	for i, a := range e.Actions {
		w := "確認"
		if a.Action == "resolved" {
			w = "解決"
		}
		out[i] = w + " " + a.By + " " + a.At.In(JST).Format("2006-01-02 15:04") + "「" + a.Comment + "」"
	}
	return strings.Join(out, " / ")
}

// kindName is an alert kind's Japanese name.
func kindName(k string) string {
	if k == failedDeliveryKind {
		return "通知の送信失敗"
	}
	return labels.Of(labels.AlertKind, labels.JA, k)
}

// alertItem is an item of a delivered or failed message (notify.Item).
type alertItem struct {
	Index                  int64
	Time                   time.Time
	Agent, Hostname, Type  string
	Reason, Detail, Object string
	User, IP               string
}

// alerts reads the period's alerts [from, end) in scope: the compliance
// alerts, the items of the messages sent or failed (a delivery after end
// of an alert of the period counts), the failed deliveries, and every
// 確認/解決 up to the report's making (the figures count those before end).
func (s *Service) alerts(ctx context.Context, r *Report, base eventlog.CountQuery, byID map[string]Agent) error {
	inScope := scopeOf(base)
	from, end := base.From, base.To
	now := s.cfg.Now()
	read := func(control, typ string, to time.Time, each func(*eventlog.Stored) error) error {
		f := eventlog.Filter{Control: control, Type: typ, From: from, To: to, Limit: eventlog.MaxLimit}
		for {
			page, err := s.cfg.Store.Query(ctx, f)
			if err != nil {
				return fmt.Errorf("report: alerts: %s: %w", typ, err)
			}
			for i := range page.Events {
				if e := &page.Events[i]; !e.Pruned && e.Agent == event.ServerStream {
					if err := each(e); err != nil {
						return err
					}
				}
			}
			if page.Next == "" || len(page.Events) == 0 {
				return nil
			}
			f.Cursor = page.Next
		}
	}
	str := func(e *eventlog.Stored, k string) string { v, _ := e.Attrs[k].(string); return v }
	handled := map[int64]*AlertEntry{} // compliance alerts and failed deliveries
	byIndex := map[int64]*AlertEntry{}
	var entries []*AlertEntry
	add := func(a *AlertEntry) {
		a.KindName = kindName(a.Kind)
		entries = append(entries, a)
		byIndex[a.Index] = a
	}
	err := read("compliance", alertType, end, func(e *eventlog.Stored) error {
		if !inScope(str(e, "agent")) {
			return nil
		}
		host := cmp.Or(str(e, "hostname"), str(e, "agent"))
		what := str(e, "reason_ja")
		if c := str(e, "control"); c != "" {
			what = controlJAOf(c) + ": " + what
		}
		a := &AlertEntry{Index: e.Index, Time: e.Time, Kind: str(e, "kind"), Host: host, What: what}
		add(a)
		handled[a.Index] = a
		return nil
	})
	if err != nil {
		return err
	}
	// Every other event notify's classification makes an alert by itself
	// is one, notified or not (a default rule has no recipients).
	// The kinds counted from the log (all but those the settings judge).
	alone := map[string]bool{}
	for _, k := range AlertKinds {
		alone[k] = k != alertkind.OutOfHours && k != alertkind.LoginFailures && k != alertkind.Violation && k != alertkind.Silent
	}
	for _, src := range alertkind.Standalone {
		if src.Type == alertType {
			continue // above, with their handling
		}
		f := eventlog.Filter{Control: src.Control, Type: src.Type, From: from, To: end, Limit: eventlog.MaxLimit}
		for {
			page, err := s.cfg.Store.Query(ctx, f)
			if err != nil {
				return fmt.Errorf("report: alerts: %s: %w", src.Type, err)
			}
			for i := range page.Events {
				e := &page.Events[i]
				if e.Pruned || (e.Agent != event.ServerStream && !inScope(e.Agent)) || (e.Agent == event.ServerStream && base.Agents != nil) {
					continue
				}
				for _, k := range alertkind.Of(e.Type, e.Severity, e.Attrs) {
					host := e.Agent
					if host == event.ServerStream {
						host = "-"
					} else if a, ok := byID[e.Agent]; ok && a.Hostname != "" {
						host = a.Hostname
					}
					what := strings.TrimSpace(labels.Of(labels.EventType, labels.JA, e.Type) + " " + e.Object)
					add(&AlertEntry{Index: e.Index, Time: e.Time, Kind: k, Host: host, What: what})
				}
			}
			if page.Next == "" || len(page.Events) == 0 {
				break
			}
			f.Cursor = page.Next
		}
	}
	// Deliveries: items by index (sent to any destination is sent), and
	// per message the alerts it counted without naming them. A message to
	// two destinations is two events with the same rule, subject, count
	// and times; a re-send (resend_of) names the same items again.
	type msg struct {
		kind     string
		unlisted int
		sent     bool
	}
	msgs := map[string]*msg{}
	var failed []*AlertEntry
	for _, typ := range []string{sentType, failedType} {
		err := read(notifyControl, typ, now.Add(time.Minute), func(e *eventlog.Stored) error {
			var items []alertItem
			if b, err := json.Marshal(e.Attrs["items"]); err == nil {
				_ = json.Unmarshal(b, &items)
			}
			kind, outcome := str(e, "kind"), strings.TrimPrefix(typ, "notify.")
			scoped := base.Agents == nil
			for _, it := range items {
				if !inScope(it.Agent) {
					continue
				}
				scoped = true
				if it.Time.Before(from) || !it.Time.Before(end) {
					continue
				}
				a := byIndex[it.Index]
				if a == nil && it.Type != alertType {
					var why []string
					for _, s := range []string{it.Reason, it.Detail, it.Object, it.User, it.IP} {
						if s != "" {
							why = append(why, s)
						}
					}
					a = &AlertEntry{Index: it.Index, Time: it.Time, Kind: kind, Host: it.Hostname, What: strings.Join(why, " ")}
					if a.Host == "" && it.Agent != event.ServerStream {
						a.Host = it.Agent
					}
					add(a)
				}
				if a != nil && a.Outcome != "sent" {
					a.Outcome = outcome
				}
			}
			if typ == failedType && e.Time.Before(end) && scoped {
				failed = append(failed, &AlertEntry{Index: e.Index, Time: e.Time, Kind: failedDeliveryKind, Host: "-",
					What: strings.TrimSpace(kindName(kind) + " の通知「" + str(e, "subject") + "」を " + str(e, "destination") +
						" へ送れませんでした: " + str(e, "error"))})
			}
			if _, resend := e.Attrs["resend_of"]; resend || base.Agents != nil || kind == "violation" || kind == "silent" {
				return nil // a department's share of what a message did not name is unknown
			}
			first, err := time.Parse(time.RFC3339Nano, str(e, "first"))
			if err != nil {
				first = e.Time
			}
			if first.Before(from) || !first.Before(end) {
				return nil
			}
			count, _ := strconv.Atoi(fmt.Sprint(e.Attrs["count"]))
			key := strings.Join([]string{str(e, "rule"), kind, str(e, "subject"), str(e, "first"), str(e, "last"), fmt.Sprint(e.Attrs["count"])}, "\x00")
			m := msgs[key]
			if m == nil {
				m = &msg{kind: kind, unlisted: max(count-len(items), 0)}
				msgs[key] = m
			}
			m.sent = m.sent || typ == sentType
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, a := range failed {
		add(a)
		handled[a.Index] = a
	}
	for _, typ := range []string{acknowledgedType, resolvedType} {
		err := read("compliance", typ, now.Add(time.Minute), func(e *eventlog.Stored) error {
			idx, err := strconv.ParseInt(fmt.Sprint(e.Attrs["alert_index"]), 10, 64)
			if a := handled[idx]; err == nil && a != nil {
				c, _ := e.Attrs["comment"].(string)
				a.Actions = append(a.Actions, AlertAction{Action: strings.TrimPrefix(typ, "alert."), By: e.User, At: e.Time, Comment: c})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}

	rows := map[string]*AlertKindRow{}
	order := append(slices.Clone(AlertKinds), failedDeliveryKind)
	for _, k := range order {
		rows[k] = &AlertKindRow{Kind: k, Name: kindName(k), Handled: k == "violation" || k == "silent" || k == failedDeliveryKind}
	}
	row := func(k string) *AlertKindRow {
		if rows[k] == nil { // a kind this report does not know yet
			rows[k] = &AlertKindRow{Kind: k, Name: kindName(k)}
			order = append(order, k)
		}
		return rows[k]
	}
	for _, a := range entries {
		slices.SortStableFunc(a.Actions, func(x, y AlertAction) int { return x.At.Compare(y.At) })
		k := row(a.Kind)
		k.Alerted++
		if a.Kind != failedDeliveryKind {
			switch a.Outcome {
			case "sent":
				k.Delivered++
			case "failed":
				k.Failed++
			default:
				k.NotNotified++
			}
		}
		if handled[a.Index] != a {
			continue
		}
		k.Handled = true
		var acked, resolved bool
		for _, x := range a.Actions {
			if x.At.Before(end) {
				acked, resolved = acked || x.Action == "acknowledged", resolved || x.Action == "resolved"
			}
		}
		if acked {
			k.Acknowledged++
		}
		if resolved {
			k.Resolved++
		} else {
			k.Open++
		}
	}
	for _, m := range msgs {
		k := row(m.kind)
		if alone[m.kind] {
			// Counted from the log already: the message's unnamed alerts
			// are among those no delivery names.
			n := min(m.unlisted, k.NotNotified)
			k.NotNotified -= n
			k.Unlisted += n
			if m.sent {
				k.Delivered += n
			} else {
				k.Failed += n
			}
			continue
		}
		k.Alerted += m.unlisted
		k.Unlisted += m.unlisted
		if m.sent {
			k.Delivered += m.unlisted
		} else {
			k.Failed += m.unlisted
		}
	}
	r.Alerts.Kinds = make([]AlertKindRow, 0, len(order))
	for _, k := range order {
		r.Alerts.Kinds = append(r.Alerts.Kinds, *rows[k])
	}
	slices.SortFunc(entries, func(a, b *AlertEntry) int { return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Index, b.Index)) })
	r.Alerts.List = make([]AlertEntry, 0, min(len(entries), AlertListMax))
	for _, a := range entries[:min(len(entries), AlertListMax)] {
		r.Alerts.List = append(r.Alerts.List, *a)
	}
	r.Alerts.More = len(entries) - len(r.Alerts.List)
	return nil
}

// scopeOf says whether an agent's events are in the report's scope.
func scopeOf(base eventlog.CountQuery) func(string) bool {
	if base.Agents == nil {
		return func(string) bool { return true }
	}
	in := map[string]bool{}
	for _, a := range base.Agents {
		in[a] = true
	}
	return func(a string) bool { return in[a] }
}
