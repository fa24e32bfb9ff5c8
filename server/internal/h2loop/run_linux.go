package h2loop

import (
	"bytes"
	"net/http"
	"runtime/debug"
	"time"

	"golang.org/x/net/http2/hpack"
)

// run calls the handler for a stream and queues its answer.
// spawnLocked runs a stream's handler; c.mu is held.
func (c *conn) spawnLocked(st *stream) {
	st.running = true
	c.handlers.Add(1) // here, not in run: a burst of streams must see it at once
	go c.s.run(st)
}

func (s *Server) run(st *stream) {
	defer st.c.handlers.Add(-1)
	rw := &responseWriter{h: http.Header{}}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				s.cfg.Log.Error().Interface("panic", p).Bytes("stack", debug.Stack()).
					Str("path", st.req.URL.Path).Msg("h2loop: handler panicked")
			}
			c := st.c
			c.mu.Lock()
			st.running = false
			if !c.dead {
				c.resetLocked(st, errInternal)
				c.flushLocked()
			}
			c.mu.Unlock()
		}
	}()
	s.cfg.Handler.ServeHTTP(rw, st.req)
	s.finish(st, rw)
}

// finish sends the handler's answer, unless it parked the request.
func (s *Server) finish(st *stream, rw *responseWriter) {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st.running = false
	if c.dead || st.answered {
		c.maybeDoneLocked(st)
		c.flushLocked()
		return
	}
	switch {
	case rw.code != 0 || rw.body.Len() > 0:
		s.unparkLocked(st) // parked and answered anyway: the answer wins
		st.rerun = false
	case st.parked:
		// The wake runs it again on a new request: a parked one keeps only
		// its header fields (encoded).
		st.req = nil
		st.cancel()
		return
	case st.rerun:
		st.rerun = false
		c.spawnLocked(st)
		return
	}
	code := rw.code
	if code == 0 {
		code = http.StatusOK
	}
	c.answerLocked(st, code, rw.h, rw.body.Bytes())
	c.flushLocked()
}

// park registers a running handler's request to run again at wake or until.
func (s *Server) park(st *stream, wake <-chan struct{}, until time.Time) bool {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead || c.goingAway || st.answered || st.parked || c.streams[st.id] != st || st.req.Body != http.NoBody {
		return false // a request with a body is not run twice
	}
	st.parked, st.wake = true, wake
	if st.fields != nil {
		// Some 150 bytes instead of 600 for the fields and their strings:
		// 10,000 agents hold a parked long-poll each.
		st.block, st.fields = encodeFields(st.fields), nil
	}
	if wake != nil {
		s.pmu.Lock()
		set := s.parked[wake]
		if set == nil {
			set = map[*stream]struct{}{}
			s.parked[wake] = set
			go s.waitFor(wake) // one goroutine per channel, not per request
		}
		set[st] = struct{}{}
		s.pmu.Unlock()
	}
	// A timer is some 300 bytes and 10,000 agents each park a long-poll
	// for minutes: the sweeper runs those again, at most sweepEvery late.
	st.until = until
	if time.Until(until) < 2*sweepEvery {
		st.timer = time.AfterFunc(time.Until(until), func() { s.wake(st) })
	}
	return true
}

// waitFor wakes every request parked on ch once it is closed.
func (s *Server) waitFor(ch <-chan struct{}) {
	select {
	case <-ch:
	case <-s.done:
		return
	}
	s.pmu.Lock()
	set := s.parked[ch]
	delete(s.parked, ch)
	s.pmu.Unlock()
	for st := range set {
		s.wake(st)
	}
}

// wake runs a parked request's handler again.
func (s *Server) wake(st *stream) {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.parked {
		return
	}
	s.unparkLocked(st)
	if c.dead || st.answered {
		return
	}
	if st.running {
		st.rerun = true // Park was called and its handler has not returned yet
		return
	}
	req, err := c.requestLocked(st)
	if err != nil {
		c.resetLocked(st, errInternal)
		c.flushLocked()
		return
	}
	st.req = req
	c.spawnLocked(st)
}

// encodeFields packs header fields into an HPACK block a decoder with no
// table reads.
func encodeFields(fields []hpack.HeaderField) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	enc.SetMaxDynamicTableSizeLimit(0)
	for _, f := range fields {
		_ = enc.WriteField(f) // writes to a bytes.Buffer do not fail
	}
	return bytes.Clone(b.Bytes())
}

// unparkLocked takes a stream off the parked lists; c.mu is held.
func (s *Server) unparkLocked(st *stream) {
	if !st.parked {
		return
	}
	st.parked = false
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
	if st.wake != nil {
		s.pmu.Lock()
		if set := s.parked[st.wake]; set != nil {
			delete(set, st)
		}
		s.pmu.Unlock()
		st.wake = nil
	}
}

// responseWriter buffers an answer: the loop sends it when the handler
// returns, as flow control allows.
type responseWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (w *responseWriter) Header() http.Header { return w.h }

func (w *responseWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.body.Write(p)
}

// Flush is a no-op: the answer is sent whole when the handler returns.
func (w *responseWriter) Flush() {}
