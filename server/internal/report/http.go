package report

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/mamori/mamori/shared/wire"
)

// Path is the route of the audit report (DESIGN "Round 2 names").
const Path = "/api/v1/reports/audit"

// Handler serves GET /api/v1/reports/audit?from=YYYY-MM-DD&to=YYYY-MM-DD
// &format=html|csv|json|bundle[&department=D].
type Handler struct {
	S *Service
	// Bundle writes the evidence bundle of the period's events
	// (audit.Exporter.Bundle over [from, to)); nil answers 501.
	Bundle func(ctx context.Context, w io.Writer, from, to time.Time, query map[string]string) error
	// Record notes the export in the server stream (who, what).
	Record func(r *http.Request, format string, attrs map[string]string)
	// TooLarge says whether a Bundle error means the period holds more
	// events than one bundle may.
	TooLarge func(error) bool
}

func (h Handler) fail(w http.ResponseWriter, status int, msg string) {
	_ = wire.WriteJSON(w, status, wire.Error{Error: msg})
}

// ServeHTTP implements http.Handler.
func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k, vs := range q {
		if len(vs) != 1 {
			h.fail(w, http.StatusBadRequest, k+": given more than once")
			return
		}
		switch k {
		case "from", "to", "format", "department":
		default:
			h.fail(w, http.StatusBadRequest, k+": unknown parameter (use from, to, format, department)")
			return
		}
	}
	from, to, err := ParseDates(q.Get("from"), q.Get("to"))
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if d := q.Get("department"); d != "" {
		// The 監査報告 page's rule: a department of a PC or a 台帳 entry.
		depts, err := h.S.Departments(r.Context())
		if err != nil {
			h.S.log(err)
			h.fail(w, http.StatusInternalServerError, "internal error: departments")
			return
		}
		if !slices.Contains(depts, d) {
			h.fail(w, http.StatusBadRequest, "department: no PC and no register entry has the department \""+d+"\" (部署「"+d+"」の端末も台帳もありません)")
			return
		}
	}
	format := q.Get("format")
	if format == "" {
		format = "html"
	}
	name := "mamori-audit-" + q.Get("from") + "-" + q.Get("to")
	attrs := map[string]string{"from": q.Get("from"), "to": q.Get("to"), "department": q.Get("department")}
	var buf bytes.Buffer
	switch format {
	case "html", "csv", "json":
		rep, err := h.S.Build(r.Context(), Params{From: from, To: to, Department: q.Get("department")})
		if err != nil {
			if errors.Is(err, ErrInvalid) {
				h.fail(w, http.StatusBadRequest, err.Error())
				return
			}
			h.S.log(err)
			h.fail(w, http.StatusInternalServerError, "internal error: audit report")
			return
		}
		switch format {
		case "html":
			err = rep.HTML(&buf)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		case "csv":
			err = rep.CSV(&buf)
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		default:
			_ = wire.WriteJSON(w, http.StatusOK, rep)
			h.record(r, format, attrs)
			return
		}
		if err != nil {
			h.S.log(err)
			h.fail(w, http.StatusInternalServerError, "internal error: rendering the report")
			return
		}
	case "bundle":
		if h.Bundle == nil {
			h.fail(w, http.StatusNotImplemented, "evidence export not configured")
			return
		}
		if q.Get("department") != "" {
			h.fail(w, http.StatusBadRequest, "department: the bundle holds every event of the period (omit department); the report's figures for a department are a subset of it")
			return
		}
		err := h.Bundle(r.Context(), &buf, from, to.AddDate(0, 0, 1), map[string]string{"report": "audit", "from": q.Get("from"), "to": q.Get("to")})
		if err != nil {
			if h.TooLarge != nil && h.TooLarge(err) {
				h.fail(w, http.StatusRequestEntityTooLarge, "the period holds too many events for one bundle; export shorter periods: "+err.Error())
				return
			}
			h.S.log(err)
			h.fail(w, http.StatusInternalServerError, "internal error: evidence bundle")
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.jsonl"`)
	default:
		h.fail(w, http.StatusBadRequest, "format must be html, csv, json or bundle")
		return
	}
	h.record(r, format, attrs)
	_, _ = w.Write(buf.Bytes())
}

func (h Handler) record(r *http.Request, format string, attrs map[string]string) {
	if h.Record != nil {
		h.Record(r, format, attrs)
	}
}
