package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// smallBatchBody is the largest raw body that takes a small-batch slot.
const smallBatchBody = 256 << 10

// testHookDecoded, if set, runs when a small batch has been decoded.
var testHookDecoded func()

// handleIngest stores one batch of the agent's events and acks it only
// after the store says it is durable. The body is read first, under its own
// deadline and outside the ingest slots, so slow senders hold neither a
// slot nor more than a bounded number of connections per certificate and
// per source address; only a fully received body waits for a slot.
func (s *Server) handleIngest(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Accept-Encoding", wire.AcceptEncoding)
	if s.cfg.Writer != nil {
		if self, url := s.cfg.Writer(); !self {
			s.toWriter(w, r, url)
			return
		}
	}
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
	// Admission after the body is in: a slow sender holds no ticket.
	tk, retry := s.admission.admit()
	if tk == nil {
		s.busy(w, r, retry)
		return
	}
	defer tk.release(0)
	slot := time.NewTimer(s.admission.maxWait)
	defer slot.Stop()
	// take waits for a place in ch, answering 503 if none comes in time.
	take := func(ch chan struct{}) bool {
		select {
		case ch <- struct{}{}:
			return true
		case <-slot.C:
			s.busy(w, r, time.Second)
		case <-r.Context().Done():
			s.fail(w, r, http.StatusServiceUnavailable, "server busy")
		}
		return false
	}
	// Small bodies (an agent's usual gzip batch) have their own slots, so
	// they never queue behind maximum-size batches being decoded.
	slots, small := s.ingestSlots, buf.Len() <= smallBatchBody
	if small {
		slots = s.smallSlots
		// A small batch takes its store slot before it is decoded: the
		// store slots then bound the decoded events in memory (some 3 KiB
		// an event against 0.1 KiB gzip'd). Taken after decoding, every
		// admitted batch was decoded at once and waited decoded: 300 MB of
		// events with 2,000 agents at saturation.
		if !take(s.storeSlots) {
			return
		}
		defer func() { <-s.storeSlots }()
	}
	if !take(slots) {
		return
	}
	// A small batch gives its decoding slot back once decoded and waits
	// for its commit holding only its store slot, so the next batches
	// decode while the writer commits this one: holding the decoding slot
	// through the commit let only MaxConcurrentBatches batches be decoded
	// or committing at once, and the handlers idled during every fsync.
	// A large batch keeps its slot (its decoded events are the memory the
	// slots bound).
	held := true
	release := func() {
		if held {
			held = false
			<-slots
		}
	}
	defer release()
	var decoded func()
	if small {
		decoded = func() {
			release()
			if testHookDecoded != nil {
				testHookDecoded()
			}
		}
	}
	ack, status, msg := s.ingest(r, id, buf, tk, decoded)
	if status != http.StatusOK {
		s.metrics.rejected.WithLabelValues(strconv.Itoa(status)).Inc()
		s.fail(w, r, status, msg)
		return
	}
	s.writeJSON(w, r, http.StatusOK, ack)
	s.metrics.ackLatency.Observe(time.Since(start).Seconds())
}

// ingest decodes and stores the batch in buf. decoded (optional) is called
// once the events are decoded and checked, before they are stored.
func (s *Server) ingest(r *http.Request, id string, buf *bytes.Buffer, tk *ticket, decoded func()) (wire.Ack, int, string) {
	// Each event's identity is checked against the certificate as it is
	// decoded. Its fields and own hash are checked once, by the store
	// (event.Validate, which stops at the first bad event): checking them
	// here too cost a second canonical encoding and SHA-256 per event, 6%
	// of the server's CPU at saturation, while a batch of garbage now
	// costs its decoding (a few µs an event) and one event's validation.
	check := func(e *event.Event) error {
		if e.Agent != id {
			return fmt.Errorf("%w: seq %d names agent %q, certificate is for %q", event.ErrWrongAgent, e.Seq, e.Agent, id)
		}
		return checkNotServerOnly(e)
	}
	evs, err := decodeBody(r.Header.Get("Content-Encoding"), bytes.NewReader(buf.Bytes()), check)
	if errors.Is(err, errServerOnly) {
		s.noteTamper(r, id, ReasonServerType, err)
	}
	if errors.Is(err, errEventRefused) {
		return wire.Ack{}, appendErrStatus(err), err.Error()
	}
	if err != nil {
		return wire.Ack{}, batchErrStatus(err), err.Error()
	}
	if decoded != nil {
		decoded()
	}
	tk.stored(len(evs))
	res, err := s.cfg.Store.Append(r.Context(), id, evs)
	if err == nil {
		tk.release(res.Stored + res.Duplicates)
	}
	if err != nil {
		status := appendErrStatus(err)
		if status >= 500 && r.Context().Err() == nil {
			s.log.Error().Err(err).Str("agent", id).Msg("api: append failed")
			return wire.Ack{}, status, "internal error: events not stored"
		}
		s.log.Info().Err(err).Str("agent", id).Msg("api: batch refused")
		if errors.Is(err, event.ErrChain) {
			s.noteTamper(r, id, ReasonChainConflict, err)
		}
		return wire.Ack{}, status, err.Error()
	}
	s.recordOutages(r.Context(), id, evs, res)
	s.followInventory(r.Context(), id, evs, res)
	s.metrics.ingested.Add(float64(res.Stored))
	s.metrics.duplicates.Add(float64(res.Duplicates))
	s.metrics.acked.WithLabelValues(encodingName(r.Header.Get("Content-Encoding"))).Inc()
	if res.Gap {
		s.log.Warn().Str("agent", id).Uint64("acked_seq", res.AckedSeq).Msg("api: agent stream has a gap")
	}
	return wire.Ack{AckedSeq: res.AckedSeq}, http.StatusOK, ""
}

// busy answers 503 with Retry-After: the batch would not be acked within
// the agent's timeout, so it is better sent again later than queued.
// It is the designed answer to overload, so it is logged once in a while
// (with the count) rather than as an error per batch.
func (s *Server) busy(w http.ResponseWriter, r *http.Request, retry time.Duration) {
	w.Header().Set("Retry-After", retryAfterHeader(retry))
	s.metrics.rejected.WithLabelValues(strconv.Itoa(http.StatusServiceUnavailable)).Inc()
	err := wire.WriteJSON(w, http.StatusServiceUnavailable,
		wire.Error{Error: "server busy: the events queued ahead would not be acked in time; send again after Retry-After"})
	if n, ok := s.admission.shouldWarn(); ok {
		s.log.Warn().Err(err).Int64("refused_since_last", n).Str("retry_after", retryAfterHeader(retry)).
			Msg("api: overloaded: batches answered 503 with Retry-After")
	}
}

// toWriter answers a batch sent to a standby: 307 to the same path on the
// writer, which the agent's HTTP client follows with the same body and
// client certificate, so the writer checks the agent's identity itself; or
// 503 with Retry-After while no writer is known (an election is under way).
// The body is not read: a standby never decides anything about a batch.
func (s *Server) toWriter(w http.ResponseWriter, r *http.Request, url string) {
	if url == "" {
		// Every agent hits this during an election: counted, not logged.
		w.Header().Set("Retry-After", "2")
		s.metrics.rejected.WithLabelValues(strconv.Itoa(http.StatusServiceUnavailable)).Inc()
		wire.WriteJSON(w, http.StatusServiceUnavailable, wire.Error{Error: "no writer elected yet: send again after Retry-After"})
		return
	}
	w.Header().Set("Location", strings.TrimSuffix(url, "/")+r.URL.RequestURI())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTemporaryRedirect)
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
	case errors.Is(err, event.ErrWrongAgent), errors.Is(err, errServerOnly):
		return http.StatusForbidden
	case errors.Is(err, event.ErrChain), errors.Is(err, event.ErrSeq):
		return http.StatusConflict
	case errors.Is(err, event.ErrInvalid), errors.Is(err, event.ErrHash):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotWriter), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
