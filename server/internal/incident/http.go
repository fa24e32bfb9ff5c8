package incident

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/mamori/mamori/shared/wire"
)

// Path is the collection route (DESIGN "Round 2 names").
const Path = "/api/v1/incidents"

// maxBody bounds a POST or PUT body.
const maxBody = 256 << 10

// Handlers serves the incident routes.
type Handlers struct {
	S *Service
	// Caller names who made a request (api.Caller).
	Caller func(*http.Request) string
	// Bundle writes the evidence bundle of the given log indexes
	// (audit.Exporter.BundleIndexes); nil answers 501 for format=bundle.
	Bundle func(ctx context.Context, w io.Writer, indexes []int64, query map[string]string) error
}

func (h Handlers) reply(w http.ResponseWriter, status int, v any) {
	if err := wire.WriteJSON(w, status, v); err != nil {
		h.S.log.Warn().Err(err).Msg("incident: answer not written")
	}
}

func (h Handlers) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrInvalid):
		h.reply(w, http.StatusBadRequest, wire.Error{Error: err.Error()})
	case errors.Is(err, ErrNotFound):
		h.reply(w, http.StatusNotFound, wire.Error{Error: err.Error()})
	case errors.Is(err, ErrConflict):
		h.reply(w, http.StatusConflict, wire.Error{Error: err.Error()})
	default:
		h.S.log.Error().Err(err).Msg("incident: request failed")
		h.reply(w, http.StatusInternalServerError, wire.Error{Error: "internal error: incidents"})
	}
}

// decode reads a strict JSON body: unknown fields are errors.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return invalid("body larger than %d bytes", maxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("body: %v", err)
	}
	if dec.More() {
		return invalid("trailing data after the JSON object")
	}
	return nil
}

func (h Handlers) who(r *http.Request) string {
	if h.Caller == nil {
		return ""
	}
	return h.Caller(r)
}

// List answers GET /api/v1/incidents with {"incidents": [...]}.
func (h Handlers) List(w http.ResponseWriter, r *http.Request) {
	all, err := h.S.List(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, http.StatusOK, map[string][]Incident{"incidents": all})
}

// Open answers POST /api/v1/incidents (body OpenRequest) with 201.
func (h Handlers) Open(w http.ResponseWriter, r *http.Request) {
	var req OpenRequest
	if err := decode(w, r, &req); err != nil {
		h.fail(w, err)
		return
	}
	in, err := h.S.Open(r.Context(), h.who(r), req)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Location", Path+"/"+in.ID)
	h.reply(w, http.StatusCreated, in)
}

// Get answers GET /api/v1/incidents/{id}.
func (h Handlers) Get(w http.ResponseWriter, r *http.Request) {
	in, err := h.S.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, http.StatusOK, in)
}

// Put answers PUT /api/v1/incidents/{id} (body Update).
func (h Handlers) Put(w http.ResponseWriter, r *http.Request) {
	var u Update
	if err := decode(w, r, &u); err != nil {
		h.fail(w, err)
		return
	}
	in, err := h.S.Update(r.Context(), h.who(r), r.PathValue("id"), u)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, http.StatusOK, in)
}

// Worksheet answers GET /api/v1/incidents/{id}/worksheet?format=html|csv|bundle.
func (h Handlers) Worksheet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "format" {
			h.fail(w, invalid("%s: unknown parameter (use format)", k))
			return
		}
	}
	format := q.Get("format")
	if format == "" {
		format = "html"
	}
	if format != "html" && format != "csv" && format != "bundle" {
		h.fail(w, invalid("format must be html, csv or bundle"))
		return
	}
	in, err := h.S.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	var buf bytes.Buffer
	switch format {
	case "html":
		err = h.S.WorksheetHTML(r.Context(), &buf, in)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	case "csv":
		err = h.S.WorksheetCSV(r.Context(), &buf, in)
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="mamori-`+in.ID+`-worksheet.csv"`)
	case "bundle":
		if h.Bundle == nil {
			h.reply(w, http.StatusNotImplemented, wire.Error{Error: "evidence export not configured"})
			return
		}
		err = h.Bundle(r.Context(), &buf, in.Events, map[string]string{"incident": in.ID})
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", `attachment; filename="`+BundleName(in.ID)+`"`)
	}
	if err != nil {
		w.Header().Del("Content-Disposition")
		h.fail(w, err)
		return
	}
	_, _ = w.Write(buf.Bytes())
}
