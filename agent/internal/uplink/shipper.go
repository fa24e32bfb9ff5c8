package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// Queue is what the shipper drains; *spool.Spool implements it.
type Queue interface {
	Peek(max int) ([]event.Event, error)
	// PeekAfter is Peek from the first event after seq.
	PeekAfter(seq uint64, max int) ([]event.Event, error)
	Ack(seq uint64) error
	Wait() <-chan struct{}
}

// Backoff is exponential with full jitter: attempt n sleeps a uniform
// random time in [0, min(Max, Base*2^n)), so a fleet of agents coming back
// after a server outage does not arrive in lockstep.
type Backoff struct {
	Base, Max time.Duration
}

// Delay returns the sleep before retry n (0-based).
func (b Backoff) Delay(n int) time.Duration {
	ceil := b.Max
	if n < 32 {
		if d := b.Base << n; d > 0 && d < ceil {
			ceil = d
		}
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceil))) + time.Millisecond
}

// Shipper sends spooled events to the server in compressed JSON batches and
// drops them from the spool only after the server acked them. A batch is
// zstd once the server has said it takes zstd (wire.AcceptEncoding), else
// gzip: zstd costs the PC about 40% of gzip's CPU, the server a quarter of
// its decompression, and the link some 18% fewer bytes.
type Shipper struct {
	Client   *http.Client
	Server   string      // base URL, when Servers is nil
	Servers  *ServerList // ordered servers with failover; wins over Server
	Queue    Queue
	Log      zerolog.Logger
	MaxBatch int           // events per batch; default 500, at most wire.MaxBatchEvents
	MaxWait  time.Duration // how long a partial batch waits for more; default 1s
	Backoff  Backoff       // default 500ms .. 90s

	health   health
	acked    atomic.Uint64
	lastSent atomic.Int64 // unix nanos of the last ack

	// Used by send, which only Run calls.
	zstdAt string            // the server that last said it takes zstd
	enc    wire.BatchEncoder // keeps its zstd encoder from batch to batch
}

// AckedSeq is the highest seq the server acked in this run.
func (s *Shipper) AckedSeq() uint64 { return s.acked.Load() }

// base is the server to talk to now.
func (s *Shipper) base() string {
	if s.Servers != nil {
		return s.Servers.Current()
	}
	return s.Server
}

// Failing is the current failure kind ("" when the last attempt worked).
func (s *Shipper) Failing() string { return s.health.current() }

// errGarbage marks answers the shipper cannot use.
var errGarbage = errors.New("uplink: garbage answer")

type statusError struct {
	code int
	msg  string
	// retryAfter is the server's Retry-After on 503 and 429 (it is busy
	// and says when to come back); 0 when it gave none.
	retryAfter time.Duration
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP
// date; 0 when absent, unreadable or past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// retryAfterDelay is the wait the server asked for, capped at max, plus a
// random part of up to half of it, so agents told the same do not all
// come back in the same second.
func retryAfterDelay(ra, max time.Duration) time.Duration {
	d := min(ra, max)
	if half := int64(d / 2); half > 0 {
		d += time.Duration(rand.Int64N(half))
	}
	return d
}

// retryDelay is the wait before sending again after the failures-th
// failure in a row (0-based) ended with err.
func (s *Shipper) retryDelay(err error, failures int) time.Duration {
	var se *statusError
	var re *redirectError
	d := s.Backoff.Delay(failures)
	switch {
	case errors.As(err, &se) && se.retryAfter > 0:
		d = retryAfterDelay(se.retryAfter, s.Backoff.Max)
	case errors.As(err, &re) && failures < redirectRetries:
		// Our server answered and sent us to a writer that is gone: it
		// learns the new one within seconds of the election, so ask it
		// again soon rather than backing off as from a dead server.
		d = min(d, redirectRetry)
	}
	return d
}

// redirectError is a batch our server redirected (a standby, to the
// writer) that failed at the redirect's target: our server is up.
type redirectError struct {
	target string
	err    error
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("uplink: post batch: redirected to %s: %v", e.target, e.err)
}

func (e *redirectError) Unwrap() error { return e.err }

// A failed redirect is retried after at most redirectRetry, for the first
// redirectRetries failures in a row (an election takes about 5 s); after
// that, with the usual backoff (a standby cut off from etcd may keep
// naming a dead writer).
const (
	redirectRetry   = time.Second
	redirectRetries = 15
)

func (e *statusError) Error() string {
	return fmt.Sprintf("uplink: server answered %d: %s", e.code, e.msg)
}

// Run ships until ctx is done. It resumes from whatever the spool holds:
// events acked before a restart are gone, the rest are sent again and the
// server deduplicates on (agent, seq).
func (s *Shipper) Run(ctx context.Context) error {
	if s.MaxBatch <= 0 || s.MaxBatch > wire.MaxBatchEvents {
		s.MaxBatch = 500
	}
	if s.MaxWait <= 0 {
		s.MaxWait = time.Second
	}
	if s.Backoff.Base <= 0 {
		s.Backoff = Backoff{Base: 500 * time.Millisecond, Max: 90 * time.Second}
	}
	s.health.log, s.health.what = s.Log, "shipping"
	limit := s.MaxBatch
	failures := 0
	for {
		evs, err := s.Queue.Peek(limit)
		if err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
		if len(evs) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-s.Queue.Wait():
			}
			continue
		}
		if len(evs) < limit && failures == 0 {
			// Let a burst fill the batch, bounded by MaxWait.
			if evs, err = s.fill(ctx, evs, limit); err != nil {
				return err
			}
		}
		ack, err := s.send(ctx, evs)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = s.ack(ack, evs)
		}
		if err != nil {
			var se *statusError
			if errors.As(err, &se) && se.code == http.StatusRequestEntityTooLarge && limit > 1 {
				limit = max(1, limit/2) // a batch of large events: send fewer at a time
			}
			kind := kindOf(err)
			s.health.fail(kind, err)
			var re *redirectError
			redirected := errors.As(err, &re)
			if s.Servers != nil && failover(kind) && !redirected {
				s.Servers.Failed(s.base())
			}
			d := s.retryDelay(err, failures)
			failures++
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
			continue
		}
		failures = 0
		limit = s.MaxBatch
		s.health.ok()
	}
}

func (s *Shipper) fill(ctx context.Context, evs []event.Event, limit int) ([]event.Event, error) {
	t := time.NewTimer(s.MaxWait)
	defer t.Stop()
	for len(evs) < limit {
		select {
		case <-ctx.Done():
			return evs, nil
		case <-t.C:
			return evs, nil
		case <-s.Queue.Wait():
			// Only what is new: re-reading the whole batch on every wake
			// cost the agent most of its CPU under a steady event rate.
			more, err := s.Queue.PeekAfter(evs[len(evs)-1].Seq, limit-len(evs))
			if err != nil {
				return nil, fmt.Errorf("uplink: %w", err)
			}
			evs = append(evs, more...)
		}
	}
	return evs, nil
}

func kindOf(err error) string {
	var se *statusError
	switch {
	case errors.As(err, &se) && se.retryAfter > 0:
		return KindBusy
	case errors.As(err, &se) && se.code >= 500:
		return KindServerError
	case errors.As(err, &se):
		return KindRefusedReq
	case errors.Is(err, errGarbage):
		return KindGarbage
	default:
		return classify(err)
	}
}

// send posts one batch and returns the server's ack. A server that
// refuses zstd (415: from before zstd, or another server behind the same
// address) gets the batch again as gzip at once, and gzip from then on.
func (s *Shipper) send(ctx context.Context, evs []event.Event) (wire.Ack, error) {
	base := s.base()
	useZstd := base != "" && s.zstdAt == base
	ack, err := s.post(ctx, base, evs, useZstd)
	var se *statusError
	if useZstd && errors.As(err, &se) && se.code == http.StatusUnsupportedMediaType {
		s.zstdAt = ""
		return s.post(ctx, base, evs, false)
	}
	return ack, err
}

// post sends evs to base, zstd or gzip, and reads the answer.
func (s *Shipper) post(ctx context.Context, base string, evs []event.Event, useZstd bool) (wire.Ack, error) {
	enc := "gzip"
	if useZstd {
		enc = "zstd"
	}
	body, err := s.enc.Encode(evs, enc)
	if err != nil {
		return wire.Ack{}, fmt.Errorf("uplink: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+wire.PathEvents, bytes.NewReader(body))
	if err != nil {
		return wire.Ack{}, fmt.Errorf("uplink: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", enc)
	resp, err := s.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) && !strings.HasPrefix(ue.URL, base) {
			return wire.Ack{}, &redirectError{target: ue.URL, err: err}
		}
		return wire.Ack{}, fmt.Errorf("uplink: post batch: %w", err)
	}
	defer resp.Body.Close()
	if acceptsZstd(resp.Header.Values("Accept-Encoding")) {
		s.zstdAt = base
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, wire.MaxErrorBody))
	if err != nil {
		return wire.Ack{}, fmt.Errorf("uplink: read ack: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		se := &statusError{code: resp.StatusCode, msg: errorText(body)}
		if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
			se.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		return wire.Ack{}, se
	}
	var ack wire.Ack
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&ack); err != nil {
		return wire.Ack{}, fmt.Errorf("%w: %v", errGarbage, err)
	}
	return ack, nil
}

// acceptsZstd reports whether Accept-Encoding values list zstd (with a
// q-value above 0).
func acceptsZstd(vals []string) bool {
	for _, v := range vals {
		for _, part := range strings.Split(v, ",") {
			name, params, _ := strings.Cut(part, ";")
			if !strings.EqualFold(strings.TrimSpace(name), "zstd") {
				continue
			}
			q := strings.TrimSpace(params)
			if k, val, ok := strings.Cut(q, "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil && f <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// ack drops what the server acked. An ack beyond what was sent cannot be
// true and is treated as garbage: nothing is dropped.
func (s *Shipper) ack(a wire.Ack, evs []event.Event) error {
	last := evs[len(evs)-1].Seq
	if a.AckedSeq > last {
		return fmt.Errorf("%w: acked_seq %d beyond the batch's last seq %d", errGarbage, a.AckedSeq, last)
	}
	if a.AckedSeq < evs[0].Seq {
		// Nothing of this batch stored: the server wants an earlier seq we
		// no longer have, or refused silently. Retry with backoff.
		return &statusError{code: http.StatusConflict, msg: fmt.Sprintf("acked_seq %d before the batch's first seq %d", a.AckedSeq, evs[0].Seq)}
	}
	if err := s.Queue.Ack(a.AckedSeq); err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	s.acked.Store(a.AckedSeq)
	s.lastSent.Store(time.Now().UnixNano())
	return nil
}
