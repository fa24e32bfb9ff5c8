package compliance

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// Routes served by the tracker's handlers; the API mounts them behind its
// admin authentication (any role).
const (
	PathCompliance = "/api/v1/compliance"
	PathAlerts     = "/api/v1/alerts"
)

// ParamError names the query parameter a request got wrong.
type ParamError struct {
	Param string
	Msg   string
}

// Error implements error.
func (e *ParamError) Error() string {
	return fmt.Sprintf("compliance: parameter %s: %s", e.Param, e.Msg)
}

// ParseFilter reads ?agent=&department=&control=&status=. Unknown or
// repeated parameters and values outside the vocabulary are errors
// (*ParamError) naming the parameter.
func ParseFilter(q url.Values) (Filter, error) {
	var f Filter
	for k, vs := range q {
		if len(vs) != 1 {
			return Filter{}, &ParamError{k, "given more than once"}
		}
		v := vs[0]
		if len(v) > event.MaxFieldLen {
			return Filter{}, &ParamError{k, "too long"}
		}
		switch k {
		case "agent":
			f.Agent = v
		case "department":
			f.Department = v
		case "control":
			if !slices.Contains(Controls, v) {
				return Filter{}, &ParamError{k, fmt.Sprintf("%q is not one of screenlock, media, fileaccess, backup, posture", v)}
			}
			f.Control = v
		case "status":
			switch s := Status(v); s {
			case Pass, Fail, Unknown, Off:
				f.Status = s
			default:
				return Filter{}, &ParamError{k, fmt.Sprintf("%q is not one of pass, fail, unknown, off", v)}
			}
		default:
			return Filter{}, &ParamError{k, "unknown parameter (use agent, department, control, status)"}
		}
	}
	return f, nil
}

// ServeCompliance answers GET /api/v1/compliance.
func (t *Tracker) ServeCompliance(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFilter(r.URL.Query())
	if err != nil {
		pe := err.(*ParamError)
		t.writeJSON(w, r, http.StatusBadRequest, wire.Error{Error: pe.Param + ": " + pe.Msg})
		return
	}
	rep, err := t.Report(r.Context(), f)
	if err != nil {
		t.internal(w, r, err)
		return
	}
	t.writeJSON(w, r, http.StatusOK, rep)
}

// ServeAlerts answers GET /api/v1/alerts with {"alerts": [...]}, oldest
// first. It takes no parameters.
func (t *Tracker) ServeAlerts(w http.ResponseWriter, r *http.Request) {
	for k := range r.URL.Query() {
		t.writeJSON(w, r, http.StatusBadRequest, wire.Error{Error: k + ": unknown parameter"})
		return
	}
	as, err := t.Alerts(r.Context())
	if err != nil {
		t.internal(w, r, err)
		return
	}
	t.writeJSON(w, r, http.StatusOK, map[string][]Alert{"alerts": as})
}

func (t *Tracker) internal(w http.ResponseWriter, r *http.Request, err error) {
	t.log.Error().Err(err).Str("path", r.URL.Path).Msg("compliance: request failed")
	t.writeJSON(w, r, http.StatusInternalServerError, wire.Error{Error: "internal error: compliance"})
}

func (t *Tracker) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	err := wire.WriteJSON(w, status, v)
	var ev *zerolog.Event
	switch {
	case err != nil:
		ev = t.log.Warn().Err(err)
	case status >= 500:
		ev = t.log.Error()
	case status >= 400:
		ev = t.log.Info()
	default:
		ev = t.log.Debug()
	}
	ev.Str("method", r.Method).Str("path", r.URL.Path).Int("status", status).Msg("compliance: answered")
}
