package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
)

// Query limits of GET /api/v1/events.
const (
	DefaultQueryLimit = 100
	MaxQueryLimit     = 1000
)

// storedView is one event as the admin API shows it: the event's own
// fields plus where it sits in the server's log.
type storedView struct {
	event.Event
	Index    int64     `json:"index"`
	Received time.Time `json:"received"`
	Pruned   bool      `json:"pruned,omitempty"`
}

// ParseFilter reads the query parameters of GET /api/v1/events; the error
// names the offending parameter.
func ParseFilter(q url.Values) (Filter, error) {
	f := Filter{Limit: DefaultQueryLimit}
	for k, vs := range q {
		if len(vs) != 1 {
			return Filter{}, fmt.Errorf("%s: give it once", k)
		}
		v := vs[0]
		if !utf8.ValidString(v) || len(v) > event.MaxFieldLen {
			return Filter{}, fmt.Errorf("%s: invalid value", k)
		}
		var err error
		switch k {
		case "agent":
			f.Agent = v
		case "control":
			f.Control = v
		case "type":
			f.Type = v
		case "user":
			f.User = v
		case "object_prefix":
			f.ObjectPrefix = v
		case "register_id":
			f.RegisterID = v
		case "cursor":
			// A cursor is the decimal log index of the last event of a
			// page; the largest index cannot have a next page (and +1
			// would overflow and restart at 0).
			c, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil || c < 0 || c == math.MaxInt64 || strconv.FormatInt(c, 10) != v {
				return Filter{}, errors.New("cursor: not a cursor this server issued")
			}
			f.Cursor = v
		case "from":
			f.From, err = time.Parse(time.RFC3339Nano, v)
		case "to":
			f.To, err = time.Parse(time.RFC3339Nano, v)
		case "limit":
			f.Limit, err = strconv.Atoi(v)
			if err == nil && (f.Limit < 1 || f.Limit > MaxQueryLimit) {
				err = fmt.Errorf("want 1 to %d", MaxQueryLimit)
			}
		default:
			return Filter{}, fmt.Errorf("%s: unknown parameter", k)
		}
		if err != nil {
			if k == "from" || k == "to" {
				return Filter{}, fmt.Errorf("%s: want RFC 3339 time such as 2026-11-01T00:00:00Z", k)
			}
			return Filter{}, fmt.Errorf("%s: %v", k, err)
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		return Filter{}, errors.New("to: before from")
	}
	return f, nil
}

func (s *Server) handleListEvents(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFilter(r.URL.Query())
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	page, err := s.cfg.Store.Query(r.Context(), f)
	if errors.Is(err, ErrBadCursor) {
		s.fail(w, r, http.StatusBadRequest, "cursor: not a cursor this server issued")
		return
	}
	if errors.Is(err, ErrBadFilter) {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.internal(w, r, "querying events", err)
		return
	}
	out := struct {
		Events []storedView `json:"events"`
		Next   string       `json:"next"`
	}{Events: make([]storedView, len(page.Events)), Next: page.Next}
	for i, e := range page.Events {
		out.Events[i] = storedView{Event: e.Event, Index: e.Index, Received: e.Received.UTC(), Pruned: e.Pruned}
	}
	s.writeJSON(w, r, http.StatusOK, out)
}
