package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

// CheckpointView is the latest signed checkpoint as the API shows it.
type CheckpointView struct {
	Size      int64     `json:"size"`
	Root      string    `json:"root"`       // base64, as in the signed note
	Note      string    `json:"checkpoint"` // the signed note text
	Created   time.Time `json:"created"`
	PublicKey string    `json:"public_key"` // note verifier key (log-key.pub)
	// Since and Proof answer since=N: the tlog consistency proof (base64
	// hashes) from the tree of size N to this one, for witnesses.
	Since int64    `json:"since,omitempty"`
	Proof []string `json:"proof,omitempty"`
}

// ConsistencyProver is the optional part of an Evidence that answers
// GET /api/v1/checkpoint?since=N: the proof that the tree of size to
// extends the tree of size from.
type ConsistencyProver interface {
	ConsistencyProof(ctx context.Context, from, to int64) ([]string, error)
}

// ExportSummary says what an export held.
type ExportSummary struct {
	TreeSize int64
	Events   int
	Links    int
}

// Evidence is the tamper-evidence side of the event store (server/internal/
// audit): checkpoints and exports.
type Evidence interface {
	Checkpoint(ctx context.Context) (CheckpointView, error)
	Bundle(ctx context.Context, w io.Writer, f Filter, since int64, query map[string]string) (ExportSummary, error)
	CSV(ctx context.Context, w io.Writer, f Filter, lang string, loc *time.Location) (int, error)
}

// Errors an Evidence maps its failures to.
var (
	ErrExportTooLarge   = errors.New("api: export too large: narrow the filter")
	ErrNoSuchCheckpoint = errors.New("api: no signed checkpoint of that size")
)

// NoSuchCheckpointMeaning says what ErrNoSuchCheckpoint means to an
// auditor who holds a checkpoint of that size.
const NoSuchCheckpointMeaning = "a checkpoint of that size signed with this log's key (a witness's, an earlier bundle's) shows the log was rolled back or replaced since: keep it as evidence"

// JST is the default time zone of CSV exports: the readers are in Japan.
var JST = time.FixedZone("JST", 9*3600)

func (s *Server) handleCheckpoint(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Evidence == nil {
		s.fail(w, r, http.StatusNotImplemented, "checkpoints are not enabled on this server")
		return
	}
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.fail(w, r, http.StatusBadRequest, "since: want the size of a checkpoint you kept, e.g. since=1234")
			return
		}
		since = n
	}
	cp, err := s.cfg.Evidence.Checkpoint(r.Context())
	if err != nil {
		s.internal(w, r, "reading the checkpoint", err)
		return
	}
	// A since beyond the checkpoint gets no proof: the caller's copy is
	// newer than the log, which is its to report (a rollback).
	if p, ok := s.cfg.Evidence.(ConsistencyProver); ok && since > 0 && since <= cp.Size {
		if cp.Proof, err = p.ConsistencyProof(r.Context(), since, cp.Size); err != nil {
			s.internal(w, r, "consistency proof", err)
			return
		}
		cp.Since = since
		if cp.Proof == nil {
			cp.Proof = []string{}
		}
	}
	s.writeJSON(w, r, http.StatusOK, cp)
}

// handleExport streams an evidence bundle (format=bundle, the default) or a
// CSV file (format=csv, lang=ja|en, tz=IANA name or "UTC"; JST by default)
// of the events the filters select. since=N adds a consistency proof from
// the checkpoint of size N.
// exportWriteTimeout bounds writing one export (the server's own write
// timeout is ten minutes).
const exportWriteTimeout = 2 * time.Hour

func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Evidence == nil {
		s.fail(w, r, http.StatusNotImplemented, "export is not enabled on this server")
		return
	}
	q := r.URL.Query()
	take := func(k, def string) string {
		v := q.Get(k)
		q.Del(k)
		if v == "" {
			return def
		}
		return v
	}
	format, lang, tz, sinceS := take("format", "bundle"), take("lang", "ja"), take("tz", ""), take("since", "0")
	// A query that matches nothing still gives a bundle that verifies: an
	// agent given by host name (as the web UI takes it) is resolved, and
	// one that is no agent, or a control that does not exist, is refused.
	if bad, err := s.resolveExportQuery(r.Context(), q); err != nil {
		s.internal(w, r, "listing agents", err)
		return
	} else if bad != "" {
		s.fail(w, r, http.StatusBadRequest, bad)
		return
	}
	query := map[string]string{}
	for k := range q {
		query[k] = q.Get(k)
	}
	f, err := ParseFilter(q)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if f.Cursor != "" {
		s.fail(w, r, http.StatusBadRequest, "cursor: an export takes every matching event; leave cursor out")
		return
	}
	since, err := strconv.ParseInt(sinceS, 10, 64)
	if err != nil || since < 0 {
		s.fail(w, r, http.StatusBadRequest, "since: want the size of a checkpoint you kept, e.g. since=1234")
		return
	}
	if since > 0 {
		size, err := s.cfg.Store.TreeSize(r.Context())
		if err != nil {
			s.internal(w, r, "reading the log size", err)
			return
		}
		if since > size {
			s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("since: the log holds %d entries; want the size of a checkpoint you kept", size))
			return
		}
	}
	loc := JST
	if tz != "" {
		if loc, err = time.LoadLocation(tz); err != nil {
			s.fail(w, r, http.StatusBadRequest, "tz: unknown time zone")
			return
		}
	}
	stamp := time.Now().In(loc).Format("20060102-150405")
	// An export of a million events takes minutes, past the server's write
	// timeout, which cut such bundles short (no manifest: they fail verify).
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(exportWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.log.Warn().Err(err).Msg("export: write deadline not extended")
	}
	cw := &countingWriter{w: w}
	switch format {
	case "bundle":
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", contentDisposition("mamori-evidence-"+stamp+".jsonl"))
		sum, err := s.cfg.Evidence.Bundle(r.Context(), cw, f, since, query)
		if err != nil {
			s.exportFailed(w, r, err, cw.n > 0)
			return
		}
		s.record(r, event.Event{Type: "export.made", Object: "bundle", Attrs: event.Attrs{
			"format": "bundle", "query": url.Values(r.URL.Query()).Encode(), "events": sum.Events, "links": sum.Links, "tree_size": sum.TreeSize}})
	case "csv":
		if lang != "ja" && lang != "en" {
			s.fail(w, r, http.StatusBadRequest, "lang: want ja or en")
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", contentDisposition("mamori-events-"+stamp+".csv"))
		n, err := s.cfg.Evidence.CSV(r.Context(), cw, f, lang, loc)
		if err != nil {
			s.exportFailed(w, r, err, cw.n > 0)
			return
		}
		s.record(r, event.Event{Type: "export.made", Object: "csv", Attrs: event.Attrs{
			"format": "csv", "query": url.Values(r.URL.Query()).Encode(), "events": n}})
	default:
		s.fail(w, r, http.StatusBadRequest, "format: want bundle or csv")
	}
}

// resolveExportQuery checks an export's agent= and control= in q, once
// each (ParseFilter refuses them repeated). An agent is an agent id (one
// enrolled, or one whose events the log holds, or the server's stream),
// else the host name of exactly one enrolled agent, case-insensitive as
// the web UI's filter takes it, which q's agent becomes. bad says why a
// value names nothing (answered 400); err is a failure to look.
func (s *Server) resolveExportQuery(ctx context.Context, q url.Values) (bad string, err error) {
	if vs := q["control"]; len(vs) == 1 && vs[0] != "" && !labels.Known(labels.Control, vs[0]) {
		return fmt.Sprintf("control: unknown control %q; want one of %s", vs[0], strings.Join(labels.Codes(labels.Control), ", ")), nil
	}
	vs := q["agent"]
	if len(vs) != 1 || vs[0] == "" || vs[0] == event.ServerStream {
		return "", nil
	}
	a := vs[0]
	agents, err := s.cfg.State.ListAgents(ctx)
	if err != nil {
		return "", err
	}
	var byName []string
	for _, ag := range agents {
		if ag.ID == a {
			return "", nil
		}
		if strings.EqualFold(ag.Hostname, a) {
			byName = append(byName, ag.ID)
		}
	}
	// An agent no longer enrolled still has its events in the log.
	heads, err := s.cfg.Store.Agents(ctx)
	if err != nil {
		return "", err
	}
	for _, h := range heads {
		if h.Agent == a {
			return "", nil
		}
	}
	switch len(byName) {
	case 1:
		q.Set("agent", byName[0])
		return "", nil
	case 0:
		return fmt.Sprintf("agent: %q is neither an agent id nor the host name of an agent (GET /api/v1/agents lists them)", a), nil
	default:
		slices.Sort(byName)
		return fmt.Sprintf("agent: several agents have the host name %q (%s): give the agent id", a, strings.Join(byName, ", ")), nil
	}
}

// exportFailed answers an export error; once rows are on the wire only the
// log can say so (the client sees a truncated file, which never verifies).
func (s *Server) exportFailed(w http.ResponseWriter, r *http.Request, err error, started bool) {
	switch {
	case started:
		s.log.Error().Err(err).Msg("api: export broke off after it started")
	case errors.Is(err, ErrExportTooLarge):
		s.fail(w, r, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, ErrNoSuchCheckpoint):
		s.fail(w, r, http.StatusBadRequest, "since: "+err.Error()+"; "+NoSuchCheckpointMeaning)
	default:
		s.internal(w, r, "exporting", err)
	}
}

func contentDisposition(name string) string { return fmt.Sprintf(`attachment; filename="%s"`, name) }

// countingWriter tells whether an export already sent bytes (and so a
// status line) before it failed.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
