package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// Routes of the notification resources (DESIGN "Round 2 names"), and the
// alert actions: POST /api/v1/alerts/{index}/acknowledge and /resolve.
const (
	PathSettings = "/api/v1/notifications"
	PathLog      = "/api/v1/notifications/log"
)

// maxSettingsBody bounds a PUT of the settings.
const maxSettingsBody = 256 << 10

// Alert action vocabulary (server stream, control "compliance").
const (
	TypeAcknowledged = "alert.acknowledged"
	TypeResolved     = "alert.resolved"
)

func (n *Notifier) reply(w http.ResponseWriter, r *http.Request, status int, v any) {
	if err := wire.WriteJSON(w, status, v); err != nil {
		n.log.Warn().Err(err).Str("path", r.URL.Path).Msg("notify: answer not written")
	}
}

func (n *Notifier) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	n.reply(w, r, status, wire.Error{Error: msg})
}

// caller names who made the request, for the record.
func (n *Notifier) caller(r *http.Request) string {
	if n.cfg.Caller != nil {
		return n.cfg.Caller(r)
	}
	return ""
}

// recordAdmin appends an admin action to the server stream.
func (n *Notifier) recordAdmin(r *http.Request, e event.Event) error {
	e.Agent = event.ServerStream
	if e.Control == "" {
		e.Control = Control
	}
	if e.Severity == "" {
		e.Severity = event.Info
	}
	e.User = n.caller(r)
	e.Time = n.cfg.Now().UTC()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	if _, err := n.cfg.Events.AppendServer(ctx, e); err != nil {
		return fmt.Errorf("notify: recording %s: %w", e.Type, err)
	}
	return nil
}

// ServeGetSettings answers GET /api/v1/notifications: the settings without
// the SMTP password; ETag is the revision a PUT may send as If-Match.
func (n *Notifier) ServeGetSettings(w http.ResponseWriter, r *http.Request) {
	s, rev, err := n.Settings(r.Context())
	if err != nil {
		n.log.Error().Err(err).Msg("notify: settings")
		n.fail(w, r, http.StatusInternalServerError, "internal error: notification settings")
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(rev, 10)))
	n.reply(w, r, http.StatusOK, s.Redacted())
}

// ServePutSettings answers PUT /api/v1/notifications. The body is the
// whole settings object; bad input gets 400 and changes nothing.
func (n *Notifier) ServePutSettings(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSettingsBody))
	if err != nil {
		n.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxSettingsBody))
		return
	}
	s, err := ParseSettings(b)
	if err != nil {
		n.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	ifRev := int64(-1)
	if m := r.Header.Get("If-Match"); m != "" {
		v, err := strconv.ParseInt(strings.Trim(m, `"`), 10, 64)
		if err != nil || v < 0 {
			n.fail(w, r, http.StatusBadRequest, "If-Match must be a revision from ETag")
			return
		}
		ifRev = v
	}
	saved, err := n.PutSettings(r.Context(), s, ifRev)
	if err != nil {
		if n.cfg.IsConflict != nil && n.cfg.IsConflict(err) {
			n.fail(w, r, http.StatusPreconditionFailed, "settings changed since that revision; read them again")
			return
		}
		if errors.Is(err, ErrInvalid) {
			n.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
		n.log.Error().Err(err).Msg("notify: storing settings")
		n.fail(w, r, http.StatusInternalServerError, "internal error: storing notification settings")
		return
	}
	hooks := make([]any, 0, len(saved.Webhooks))
	for _, h := range saved.Webhooks {
		hooks = append(hooks, h.Name+" ("+h.Format+")")
	}
	rules := make([]any, 0, len(saved.Rules))
	for _, ru := range saved.Rules {
		rules = append(rules, ru.Name+" ("+ru.Kind+")")
	}
	attrs := event.Attrs{"rules": rules, "webhooks": hooks, "smtp": saved.SMTP != nil}
	if err := n.recordAdmin(r, event.Event{Type: TypeSettings, Object: "notifications", Attrs: attrs}); err != nil {
		n.log.Error().Err(err).Msg("notify: settings change NOT recorded")
	}
	n.reply(w, r, http.StatusOK, saved.Redacted())
}

// Delivery is one row of the delivery log.
type Delivery struct {
	Index       int64     `json:"index"`
	Time        time.Time `json:"time"`
	Outcome     string    `json:"outcome"` // sent | attempt_failed | failed | test_sent | test_failed
	Rule        string    `json:"rule"`
	Kind        string    `json:"kind"`
	Destination string    `json:"destination"`
	Attempt     int       `json:"attempt"`
	Count       int       `json:"count"`
	Subject     string    `json:"subject"`
	Error       string    `json:"error,omitempty"`
	ErrorJA     string    `json:"error_ja,omitempty"` // Error in Japanese (ErrorJA)
	// ResendOf is the failed delivery a re-send was of, and By who asked.
	ResendOf int64  `json:"resend_of,omitempty"`
	By       string `json:"by,omitempty"`
}

// Log returns delivery outcomes since from, newest first, at most limit.
func (n *Notifier) Log(ctx context.Context, from time.Time, limit int) ([]Delivery, error) {
	var out []Delivery
	f := eventlog.Filter{Agent: event.ServerStream, Control: Control, From: from, Limit: eventlog.MaxLimit}
	for {
		p, err := n.cfg.Events.Query(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("notify: reading the delivery log: %w", err)
		}
		for _, e := range p.Events {
			if !strings.HasPrefix(e.Type, "notify.") || e.Type == TypeSettings {
				continue
			}
			str := func(k string) string { s, _ := e.Attrs[k].(string); return s }
			num := func(k string) int { v, _ := strconv.Atoi(fmt.Sprint(e.Attrs[k])); return v }
			out = append(out, Delivery{Index: e.Index, Time: e.Time, Outcome: strings.TrimPrefix(e.Type, "notify."),
				Rule: str("rule"), Kind: str("kind"), Destination: str("destination"), Attempt: num("attempt"),
				Count: num("count"), Subject: str("subject"), Error: str("error"), ErrorJA: ErrorJA(str("error")),
				ResendOf: int64(num("resend_of")), By: e.User})
		}
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ServeLog answers GET /api/v1/notifications/log?days=N&limit=N with
// {"deliveries": [...]}, newest first; default the last 30 days, 500 rows.
func (n *Notifier) ServeLog(w http.ResponseWriter, r *http.Request) {
	days, limit := 30, 500
	for k, vs := range r.URL.Query() {
		v, err := strconv.Atoi(vs[0])
		switch {
		case len(vs) != 1:
			n.fail(w, r, http.StatusBadRequest, k+": given more than once")
			return
		case k == "days" && err == nil && v >= 1 && v <= 3660:
			days = v
		case k == "limit" && err == nil && v >= 1 && v <= 10000:
			limit = v
		case k == "days" || k == "limit":
			n.fail(w, r, http.StatusBadRequest, k+": must be a positive number (days <= 3660, limit <= 10000)")
			return
		default:
			n.fail(w, r, http.StatusBadRequest, k+": unknown parameter (use days, limit)")
			return
		}
	}
	ds, err := n.Log(r.Context(), n.cfg.Now().AddDate(0, 0, -days), limit)
	if err != nil {
		n.log.Error().Err(err).Msg("notify: log")
		n.fail(w, r, http.StatusInternalServerError, "internal error: delivery log")
		return
	}
	if ds == nil {
		ds = []Delivery{}
	}
	n.reply(w, r, http.StatusOK, map[string][]Delivery{"deliveries": ds})
}

// ServeAlertAction answers POST /api/v1/alerts/{index}/{action} with
// {"comment": "..."}: action acknowledge or resolve; index is the log
// index of the compliance.alert (or notify.failed) event. The change is an
// event (AlertAction). Action resend (no body, or {}) re-sends a
// notify.failed delivery (Resend).
func (n *Notifier) ServeAlertAction(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if action != ActionAcknowledge && action != ActionResolve && action != ActionResend {
		n.fail(w, r, http.StatusNotFound, "action must be acknowledge, resolve or resend")
		return
	}
	idx, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	if err != nil || idx < 0 {
		n.fail(w, r, http.StatusBadRequest, "index must be the log index of the alert")
		return
	}
	if action == ActionResend {
		n.serveResend(w, r, idx)
		return
	}
	var body struct {
		Comment string `json:"comment"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		n.fail(w, r, http.StatusBadRequest, "body must be {\"comment\": \"...\"}: "+err.Error())
		return
	}
	err = n.AlertAction(r.Context(), n.caller(r), "", idx, action, body.Comment)
	switch {
	case errors.Is(err, ErrInvalid):
		n.fail(w, r, http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
		return
	case errors.Is(err, ErrNoAlert):
		n.fail(w, r, http.StatusNotFound, fmt.Sprintf("no alert at index %d", idx))
		return
	case errors.Is(err, ErrResolved):
		n.fail(w, r, http.StatusConflict, err.Error())
		return
	case err != nil:
		n.log.Error().Err(err).Msg("notify: alert action")
		n.fail(w, r, http.StatusInternalServerError, "internal error: recording the action")
		return
	}
	n.reply(w, r, http.StatusOK, map[string]any{"index": idx, "state": action + "d", "comment": strings.TrimSpace(body.Comment)})
}

// serveResend answers POST /api/v1/alerts/{index}/resend: 200 when
// delivered, 409 when a re-send already was, 502 when it failed again (the
// attempt is recorded).
func (n *Notifier) serveResend(w http.ResponseWriter, r *http.Request, idx int64) {
	var body struct{}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		n.fail(w, r, http.StatusBadRequest, "body must be empty or {}: "+err.Error())
		return
	}
	err := n.Resend(r.Context(), n.caller(r), "", idx)
	switch {
	case errors.Is(err, ErrInvalid):
		n.fail(w, r, http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
		return
	case errors.Is(err, ErrNoAlert):
		n.fail(w, r, http.StatusNotFound, fmt.Sprintf("no failed delivery at index %d", idx))
		return
	case errors.Is(err, ErrResent):
		n.fail(w, r, http.StatusConflict, err.Error())
		return
	case errors.Is(err, ErrSendFailed):
		n.fail(w, r, http.StatusBadGateway, err.Error())
		return
	case err != nil:
		n.log.Error().Err(err).Msg("notify: re-send")
		n.fail(w, r, http.StatusInternalServerError, "internal error: re-sending")
		return
	}
	n.reply(w, r, http.StatusOK, map[string]any{"index": idx, "state": "resent"})
}
