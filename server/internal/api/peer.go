package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// PathPeerRecords is where a standby sends the record of an admin action
// done on it (an export, a login, an incident opened): only the writer may
// append to the log, and an action must not go unrecorded because the admin
// happened to use another server. Callers present a peer certificate of the
// site (pki.PeerCert) and an Idempotency-Key, so a retry after a lost
// answer appends once.
const PathPeerRecords = "/v1/peer/records"

// maxPeerRecord bounds one forwarded record (admin records are small; the
// largest attrs are a CSV import's summary).
const maxPeerRecord = 1 << 20

// RecordedOnAttr names the server an action was done on when its record
// was forwarded to the writer; it comes from the peer certificate.
const RecordedOnAttr = "recorded_on"

// peerRecords remembers the answers to recent forwarded records by key.
type peerRecords struct {
	mu sync.Mutex
	m  map[string]*peerRecord
}

type peerRecord struct {
	done chan struct{}
	ev   event.Event
	err  error
	at   time.Time
}

// peerRecordMemory is how long an answer is kept for a retry: longer than a
// standby keeps retrying one record (30 s).
const peerRecordMemory = 5 * time.Minute

// do runs append once per key at a time; a finished success is answered
// again to a retry, a failure is forgotten so the retry appends.
func (p *peerRecords) do(key string, append func() (event.Event, error)) (event.Event, error) {
	now := time.Now()
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]*peerRecord{}
	}
	if len(p.m) > 1000 {
		for k, r := range p.m {
			select {
			case <-r.done:
				if now.Sub(r.at) > peerRecordMemory {
					delete(p.m, k)
				}
			default:
			}
		}
	}
	if r, ok := p.m[key]; ok {
		p.mu.Unlock()
		<-r.done
		if r.err == nil {
			return r.ev, nil
		}
		return p.do(key, append) // the first try failed and is forgotten
	}
	r := &peerRecord{done: make(chan struct{})}
	p.m[key] = r
	p.mu.Unlock()

	r.ev, r.err = append()
	r.at = time.Now()
	if r.err != nil {
		p.mu.Lock()
		delete(p.m, key)
		p.mu.Unlock()
	}
	close(r.done)
	return r.ev, r.err
}

func (s *Server) handlePeerRecord(w http.ResponseWriter, r *http.Request) {
	node, ok := s.cfg.PeerServer(r.TLS)
	if !ok {
		s.fail(w, r, http.StatusForbidden, "a peer certificate of this site's servers is required")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 128 {
		s.fail(w, r, http.StatusBadRequest, "Idempotency-Key header of 1..128 characters is required")
		return
	}
	if self, url := s.writerInfo(); !self {
		w.Header().Set("Retry-After", "1")
		s.writeJSON(w, r, http.StatusServiceUnavailable, map[string]string{"error": "this server is not the writer", "writer": url})
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPeerRecord))
	dec.DisallowUnknownFields()
	var e event.Event
	if err := dec.Decode(&e); err != nil {
		s.fail(w, r, http.StatusBadRequest, "record: "+err.Error())
		return
	}
	if e.Type == "" || e.Control == "" || e.Time.IsZero() {
		s.fail(w, r, http.StatusBadRequest, "record: control, type and time are required")
		return
	}
	// The writer numbers and chains the record; the node that did the
	// action is named from its certificate, not from what it sent.
	e.Agent, e.Seq, e.Prev, e.Hash = event.ServerStream, 0, "", ""
	if e.Attrs == nil {
		e.Attrs = event.Attrs{}
	}
	e.Attrs[RecordedOnAttr] = node
	// Not r.Context(): the standby's retry waits for this append rather
	// than racing a second one.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	stored, err := s.peerRecords.do(node+"\x00"+key, func() (event.Event, error) { return s.cfg.Store.AppendServer(ctx, e) })
	switch {
	case errors.Is(err, ErrNotWriter):
		w.Header().Set("Retry-After", "1")
		s.fail(w, r, http.StatusServiceUnavailable, "this server is no longer the writer")
	case errors.Is(err, event.ErrInvalid):
		s.fail(w, r, http.StatusBadRequest, "record: "+err.Error())
	case err != nil:
		s.log.Error().Err(err).Str("type", e.Type).Str("from", node).Msg("api: forwarded record not appended")
		s.fail(w, r, http.StatusInternalServerError, "record not appended")
	default:
		s.writeJSON(w, r, http.StatusOK, stored)
	}
}

// writerInfo is cfg.Writer, or "the writer" when unset (one server).
func (s *Server) writerInfo() (bool, string) {
	if s.cfg.Writer == nil {
		return true, ""
	}
	return s.cfg.Writer()
}
