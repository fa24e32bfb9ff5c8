package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// smallBatchBody is the largest raw body that takes a small-batch slot.
const smallBatchBody = 256 << 10

// handleIngest stores one batch of the agent's events and acks it only
// after the store says it is durable. The body is read first, under its own
// deadline and outside the ingest slots, so slow senders hold neither a
// slot nor more than a bounded number of connections per certificate and
// per source address; only a fully received body waits for a slot.
func (s *Server) handleIngest(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := agentFrom(r.Context())
	src, full := s.readers.acquire(id, r)
	if full != "" {
		s.metrics.rejected.WithLabelValues("429").Inc()
		w.Header().Set("Retry-After", "5")
		s.fail(w, r, http.StatusTooManyRequests, "too many batches being sent at once for this "+full)
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 4<<20 { // do not pin huge buffers
			bufPool.Put(buf)
		}
	}()
	// The deadline holds for this request only: net/http sets the
	// connection's deadline again before reading the next one.
	if err := http.NewResponseController(w).SetReadDeadline(start.Add(s.cfg.BatchReadTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.log.Warn().Err(err).Msg("api: setting the batch read deadline")
	}
	err := readRawBody(w, r, buf)
	s.readers.release(id, src)
	if err != nil {
		status := batchErrStatus(err)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			status = http.StatusRequestTimeout
		}
		s.metrics.rejected.WithLabelValues(strconv.Itoa(status)).Inc()
		s.fail(w, r, status, err.Error())
		return
	}
	// Small bodies (an agent's usual gzip batch) have their own slots, so
	// they never queue behind maximum-size batches being decoded.
	slots := s.ingestSlots
	if buf.Len() <= smallBatchBody {
		slots = s.smallSlots
	}
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	case <-r.Context().Done():
		s.fail(w, r, http.StatusServiceUnavailable, "server busy")
		return
	}
	ack, status, msg := s.ingest(r, id, buf)
	if status != http.StatusOK {
		s.metrics.rejected.WithLabelValues(strconv.Itoa(status)).Inc()
		s.fail(w, r, status, msg)
		return
	}
	s.writeJSON(w, r, http.StatusOK, ack)
	s.metrics.ackLatency.Observe(time.Since(start).Seconds())
}

func (s *Server) ingest(r *http.Request, id string, buf *bytes.Buffer) (wire.Ack, int, string) {
	// Each event is checked as it is decoded (identity from the
	// certificate, fields and own hash), so a batch of garbage costs one
	// event's work, not a thousand.
	check := func(e *event.Event) error {
		if e.Agent != id {
			return fmt.Errorf("%w: seq %d names agent %q, certificate is for %q", event.ErrWrongAgent, e.Seq, e.Agent, id)
		}
		return e.Validate()
	}
	evs, err := decodeBody(r.Header.Get("Content-Encoding"), bytes.NewReader(buf.Bytes()), check)
	if errors.Is(err, errEventRefused) {
		return wire.Ack{}, appendErrStatus(err), err.Error()
	}
	if err != nil {
		return wire.Ack{}, batchErrStatus(err), err.Error()
	}
	// Identity comes from the certificate only; a batch naming another
	// agent is refused before it reaches the store.
	for i := range evs {
		if evs[i].Agent != id {
			return wire.Ack{}, http.StatusForbidden, fmt.Sprintf("event seq %d names agent %q, certificate is for %q",
				evs[i].Seq, evs[i].Agent, id)
		}
	}
	res, err := s.cfg.Store.Append(r.Context(), id, evs)
	if err != nil {
		status := appendErrStatus(err)
		if status >= 500 {
			s.log.Error().Err(err).Str("agent", id).Msg("api: append failed")
			return wire.Ack{}, status, "internal error: events not stored"
		}
		s.log.Info().Err(err).Str("agent", id).Msg("api: batch refused")
		return wire.Ack{}, status, err.Error()
	}
	s.metrics.ingested.Add(float64(res.Stored))
	s.metrics.duplicates.Add(float64(res.Duplicates))
	if res.Gap {
		s.log.Warn().Str("agent", id).Uint64("acked_seq", res.AckedSeq).Msg("api: agent stream has a gap")
	}
	return wire.Ack{AckedSeq: res.AckedSeq}, http.StatusOK, ""
}

func batchErrStatus(err error) int {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBadEncoder):
		return http.StatusUnsupportedMediaType
	default:
		return http.StatusBadRequest
	}
}

// appendErrStatus maps the store's errors: bad events 400, a chain that does
// not continue the stored one 409, another agent's events 403.
func appendErrStatus(err error) int {
	switch {
	case errors.Is(err, event.ErrWrongAgent):
		return http.StatusForbidden
	case errors.Is(err, event.ErrChain), errors.Is(err, event.ErrSeq):
		return http.StatusConflict
	case errors.Is(err, event.ErrInvalid), errors.Is(err, event.ErrHash):
		return http.StatusBadRequest
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
