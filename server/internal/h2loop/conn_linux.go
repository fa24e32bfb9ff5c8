package h2loop

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
)

// maxStreams is the streams a client may have open at once: an agent
// needs two (a batch and its long-poll). Each may buffer a whole batch
// (16 MiB at most), so this also bounds what one connection holds.
const maxStreams = 8

// recvWindow is each stream's and the connection's receive window: the
// body is buffered whole anyway, so the window only paces the sender.
const recvWindow = 1 << 20

// conn is one agent connection. Everything in it is guarded by mu: the
// worker reading it, the handlers answering on it and the sweeper take mu.
type conn struct {
	s      *Server
	tc     *tls.Conn
	nc     *Conn
	fd     int32
	remote string

	// handlers running for this connection, a reset stream's included: a
	// client resetting streams as fast as it opens them gets no more.
	handlers atomic.Int32

	mu         sync.Mutex
	dead       bool
	wantRearm  bool
	preface    bool
	settings   bool // the client's first SETTINGS arrived
	tableOff   bool // the client acknowledged HEADER_TABLE_SIZE 0
	in         []byte
	wbuf       []byte
	dec        *hpack.Decoder
	streams    map[uint32]*stream
	maxID      uint32
	hdrID      uint32 // the stream whose header block continues, if any
	hdrEnd     bool   // that block's HEADERS had END_STREAM
	hblock     []byte
	sendWin    int64
	recvOwed   int64 // received on the connection, not yet given back
	started    time.Time
	lastActive time.Time
	goingAway  bool
	drainBy    time.Time

	peerInitWin  int64
	peerMaxFrame int
}

type stream struct {
	c        *conn
	id       uint32
	arrived  time.Time
	fields   []hpack.HeaderField // decoded; a parked stream keeps them as block
	block    []byte              // a parked stream's fields, HPACK-encoded with no table
	body     []byte
	reqDone  bool // END_STREAM received
	req      *http.Request
	cancel   context.CancelFunc
	recvOwed int64
	sendWin  int64
	out      []byte // answer body not yet sent (flow control)
	endOwed  bool   // END_STREAM still to send
	answered bool   // HEADERS of the answer queued
	running  bool
	rerun    bool
	parked   bool
	wake     <-chan struct{}
	until    time.Time   // a parked stream runs again then, by its timer or the sweeper
	timer    *time.Timer // only when until is near
	refused  bool        // answered by the loop (413); the rest of its body is dropped
}

// settingsFrames is the server's connection preface and window.
func (c *conn) settingsFrames(b []byte) []byte {
	var p [24]byte
	binary.BigEndian.PutUint16(p[0:], settingMaxConcurrentStreams)
	binary.BigEndian.PutUint32(p[2:], maxStreams)
	binary.BigEndian.PutUint16(p[6:], settingInitialWindowSize)
	binary.BigEndian.PutUint32(p[8:], recvWindow)
	binary.BigEndian.PutUint16(p[12:], settingMaxHeaderListSize)
	binary.BigEndian.PutUint32(p[14:], maxHeaderBlockBytes)
	// No HPACK table: the client's headers are a few short fields, and a
	// table would be kept per connection for as long as it lives.
	binary.BigEndian.PutUint16(p[18:], settingHeaderTableSize)
	binary.BigEndian.PutUint32(p[20:], 0)
	b = appendFrame(b, frameSettings, 0, 0, p[:])
	return appendUint32Frame(b, frameWindowUpdate, 0, recvWindow-defaultWindow)
}

// passLocked reads everything the connection has, acts on its frames,
// writes the answers and waits for more.
func (c *conn) passLocked(buf []byte) {
	if _, err := c.nc.flush(); err != nil {
		c.killLocked()
		return
	}
	read := 0
	for !c.dead {
		if read > maxPassBytes && c.requeueLocked() {
			return // another worker goes on; this one serves the others
		}
		n, err := c.tc.Read(buf)
		if n > 0 {
			read += n
			c.lastActive = time.Now()
			c.consumeLocked(buf[:n])
		}
		if err != nil {
			var wb wouldBlock
			if !errors.As(err, &wb) {
				c.killLocked()
				return
			}
			break
		}
	}
	c.flushLocked()
	c.rearmLocked()
}

// maxPassBytes is what one pass reads before the connection goes to the
// back of the queue: a client that never stops sending (a flood of PINGs,
// a large batch) does not keep a worker from the others.
const maxPassBytes = 1 << 20

// requeueLocked answers what this pass read and puts the connection back
// in the workers' queue (not epoll's: crypto/tls may hold records it read
// ahead, which epoll knows nothing of); false when the queue is full.
func (c *conn) requeueLocked() bool {
	c.flushLocked()
	if c.dead {
		return true
	}
	select {
	case c.s.work <- c:
		return true
	default:
		return false
	}
}

// flushLocked writes the frames queued in wbuf.
func (c *conn) flushLocked() {
	if c.dead || len(c.wbuf) == 0 {
		return
	}
	_, err := c.tc.Write(c.wbuf)
	c.wbuf = nil // an idle connection keeps no buffer

	if err != nil {
		c.killLocked()
		return
	}
	if c.wantRearm {
		c.wantRearm = false
		c.rearmLocked()
	}
}

// consumeLocked splits input into frames; a partial frame waits in c.in.
func (c *conn) consumeLocked(data []byte) {
	p := data
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		p = c.in
	}
	if !c.preface {
		if len(p) < len(clientPreface) {
			c.keepLocked(p)
			return
		}
		if string(p[:len(clientPreface)]) != clientPreface {
			c.killLocked()
			return
		}
		c.preface = true
		p = p[len(clientPreface):]
	}
	for len(p) >= frameHeaderLen && !c.dead {
		n := int(p[0])<<16 | int(p[1])<<8 | int(p[2])
		if n > maxFrameSize {
			c.goAwayLocked(errFrameSize, time.Now())
			return
		}
		if len(p) < frameHeaderLen+n {
			break
		}
		typ, flags := p[3], p[4]
		sid := binary.BigEndian.Uint32(p[5:9]) & maxWindow
		c.frameLocked(typ, flags, sid, p[frameHeaderLen:frameHeaderLen+n])
		p = p[frameHeaderLen+n:]
	}
	c.keepLocked(p)
}

// keepLocked keeps the unparsed rest (a copy: it may be the worker's buffer).
func (c *conn) keepLocked(rest []byte) {
	if len(rest) == 0 {
		c.in = nil
		return
	}
	c.in = append([]byte(nil), rest...)
}

func (c *conn) protocolErrorLocked() { c.goAwayLocked(errProtocol, time.Now()) }

func (c *conn) frameLocked(typ, flags byte, sid uint32, p []byte) {
	if !c.settings && typ != frameSettings {
		c.protocolErrorLocked() // the client preface ends with SETTINGS
		return
	}
	if c.hdrID != 0 && (typ != frameContinuation || sid != c.hdrID) {
		c.protocolErrorLocked()
		return
	}
	switch typ {
	case frameData:
		c.dataLocked(flags, sid, p)
	case frameHeaders:
		c.headersLocked(flags, sid, p)
	case frameContinuation:
		if c.hdrID == 0 {
			c.protocolErrorLocked()
			return
		}
		if len(c.hblock)+len(p) > maxHeaderBlockBytes {
			c.goAwayLocked(errEnhanceYourCalm, time.Now())
			return
		}
		c.hblock = append(c.hblock, p...)
		if flags&flagEndHeaders != 0 {
			c.endHeadersLocked()
		}
	case framePriority:
		if sid == 0 || len(p) != 5 {
			c.protocolErrorLocked()
		}
	case frameRSTStream:
		if sid == 0 || len(p) != 4 {
			c.protocolErrorLocked()
			return
		}
		if st := c.streams[sid]; st != nil {
			c.closeStreamLocked(st)
		}
	case frameSettings:
		c.settingsLocked(flags, sid, p)
	case framePing:
		if sid != 0 || len(p) != 8 {
			c.protocolErrorLocked()
			return
		}
		if flags&flagAck == 0 {
			c.wbuf = appendFrame(c.wbuf, framePing, flagAck, 0, p)
		}
	case frameGoAway:
		// The client leaves: answer what it asked, take nothing new.
		c.goAwayLocked(errNo, time.Now().Add(c.s.cfg.ReadTimeout))
	case frameWindowUpdate:
		c.windowUpdateLocked(sid, p)
	case framePushPromise:
		c.protocolErrorLocked()
	default:
		// Unknown frame types are ignored (RFC 9113 section 4.1).
	}
}

func (c *conn) settingsLocked(flags byte, sid uint32, p []byte) {
	if sid != 0 {
		c.protocolErrorLocked()
		return
	}
	if flags&flagAck != 0 {
		if len(p) != 0 {
			c.goAwayLocked(errFrameSize, time.Now())
			return
		}
		// From here the client's encoder may use no table: its next block
		// starts by emptying it.
		c.tableOff = true
		if c.dec != nil {
			c.dec.SetAllowedMaxDynamicTableSize(0)
		}
		return
	}
	if len(p)%6 != 0 {
		c.goAwayLocked(errFrameSize, time.Now())
		return
	}
	for ; len(p) > 0; p = p[6:] {
		id, v := binary.BigEndian.Uint16(p), binary.BigEndian.Uint32(p[2:])
		switch id {
		case settingInitialWindowSize:
			if v > maxWindow {
				c.goAwayLocked(errFlowControl, time.Now())
				return
			}
			delta := int64(v) - c.peerInitWin
			c.peerInitWin = int64(v)
			for _, st := range c.streams {
				st.sendWin += delta
			}
		case settingMaxFrameSize:
			if v < 16384 || v > 1<<24-1 {
				c.protocolErrorLocked()
				return
			}
			c.peerMaxFrame = int(min(v, 1<<20))
		case settingEnablePush:
			if v > 1 {
				c.protocolErrorLocked()
				return
			}
		}
	}
	c.settings = true
	c.wbuf = appendFrame(c.wbuf, frameSettings, flagAck, 0, nil)
	c.sendPendingLocked()
}

func (c *conn) windowUpdateLocked(sid uint32, p []byte) {
	if len(p) != 4 {
		c.goAwayLocked(errFrameSize, time.Now())
		return
	}
	inc := int64(binary.BigEndian.Uint32(p) & maxWindow)
	if sid == 0 {
		if inc == 0 || c.sendWin+inc > maxWindow {
			c.goAwayLocked(errFlowControl, time.Now())
			return
		}
		c.sendWin += inc
		c.sendPendingLocked()
		return
	}
	st := c.streams[sid]
	if st == nil {
		return // a stream already closed
	}
	if inc == 0 || st.sendWin+inc > maxWindow {
		c.resetLocked(st, errFlowControl)
		return
	}
	st.sendWin += inc
	c.sendBodyLocked(st)
}

func (c *conn) headersLocked(flags byte, sid uint32, p []byte) {
	p, ok := stripPadding(flags, p)
	if !ok || sid == 0 || sid%2 == 0 {
		c.protocolErrorLocked()
		return
	}
	if flags&flagPriority != 0 {
		if len(p) < 5 {
			c.protocolErrorLocked()
			return
		}
		p = p[5:]
	}
	if sid <= c.maxID {
		// Trailers on an open stream, or a closed one: neither is sent by
		// the clients served here.
		c.protocolErrorLocked()
		return
	}
	c.maxID = sid
	c.hdrID, c.hdrEnd = sid, flags&flagEndStream != 0
	c.hblock = append(c.hblock[:0], p...)
	if flags&flagEndHeaders != 0 {
		c.endHeadersLocked()
	}
}

// endHeadersLocked decodes a complete header block and opens its stream.
func (c *conn) endHeadersLocked() {
	sid, end := c.hdrID, c.hdrEnd
	block := c.hblock
	c.hdrID, c.hblock = 0, nil
	if c.dec == nil {
		size := uint32(4096) // what the client may use before our SETTINGS
		if c.tableOff {
			size = 0
		}
		c.dec = hpack.NewDecoder(size, nil)
		c.dec.SetMaxStringLength(maxHeaderBlockBytes)
	}
	fields, err := c.dec.DecodeFull(block)
	if c.tableOff {
		// The client's table is empty from the block after its ACK on:
		// a connection need not keep a decoder between blocks.
		c.dec = nil
	}
	if err != nil {
		c.goAwayLocked(errCompression, time.Now())
		return
	}
	if c.goingAway || len(c.streams) >= maxStreams || c.handlers.Load() >= 2*maxStreams {
		c.wbuf = appendUint32Frame(c.wbuf, frameRSTStream, sid, errRefusedStream)
		return
	}
	st := &stream{c: c, id: sid, arrived: time.Now(), fields: fields, reqDone: end, sendWin: c.peerInitWin}
	if c.streams == nil {
		c.streams = map[uint32]*stream{}
	}
	c.streams[sid] = st
	if len(c.streams) == 1 && c.s.cfg.ConnState != nil {
		c.s.cfg.ConnState(c.tc, http.StateActive)
	}
	if end {
		c.startLocked(st)
	}
}

func (c *conn) dataLocked(flags byte, sid uint32, p []byte) {
	n := int64(len(p)) // flow control counts the padding
	p, ok := stripPadding(flags, p)
	if !ok || sid == 0 {
		c.protocolErrorLocked()
		return
	}
	c.recvOwed += n
	if c.recvOwed >= recvWindow/4 {
		c.wbuf = appendUint32Frame(c.wbuf, frameWindowUpdate, 0, uint32(c.recvOwed))
		c.recvOwed = 0
	}
	st := c.streams[sid]
	if st == nil || st.reqDone {
		if sid > c.maxID {
			c.protocolErrorLocked() // DATA on a stream never opened
			return
		}
		if st == nil {
			c.wbuf = appendUint32Frame(c.wbuf, frameRSTStream, sid, errStreamClosed)
		}
		return
	}
	if !st.refused {
		if int64(len(st.body))+int64(len(p)) > c.s.cfg.MaxBodyBytes {
			st.refused = true
			st.body = nil
			c.answerLocked(st, http.StatusRequestEntityTooLarge, http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
				[]byte("request body too large\n"))
		} else {
			st.body = append(st.body, p...)
		}
	}
	if flags&flagEndStream != 0 {
		st.reqDone = true
		if st.refused {
			c.maybeDoneLocked(st)
		} else {
			c.startLocked(st)
		}
		return
	}
	st.recvOwed += n
	if st.recvOwed >= recvWindow/4 {
		c.wbuf = appendUint32Frame(c.wbuf, frameWindowUpdate, st.id, uint32(st.recvOwed))
		st.recvOwed = 0
	}
}

// startLocked turns a complete request into an *http.Request and runs its
// handler.
func (c *conn) startLocked(st *stream) {
	req, err := c.requestLocked(st)
	if err != nil {
		c.resetLocked(st, errProtocol)
		return
	}
	st.req, st.body = req, nil
	c.spawnLocked(st)
}

func (c *conn) requestLocked(st *stream) (*http.Request, error) {
	fields := st.fields
	if fields == nil && st.block != nil {
		dec := hpack.NewDecoder(0, nil)
		dec.SetMaxStringLength(maxHeaderBlockBytes)
		var err error
		if fields, err = dec.DecodeFull(st.block); err != nil {
			return nil, fmt.Errorf("h2loop: a parked request's headers: %w", err)
		}
	}
	var method, path, scheme, authority string
	h := make(http.Header, len(fields))
	for _, f := range fields {
		if f.IsPseudo() {
			switch f.Name {
			case ":method":
				method = f.Value
			case ":path":
				path = f.Value
			case ":scheme":
				scheme = f.Value
			case ":authority":
				authority = f.Value
			default:
				return nil, errors.New("unknown pseudo-header")
			}
			continue
		}
		if strings.ToLower(f.Name) != f.Name {
			return nil, errors.New("upper-case header name")
		}
		k := http.CanonicalHeaderKey(f.Name)
		h[k] = append(h[k], f.Value)
	}
	if method == "" || path == "" || scheme == "" || method == "CONNECT" {
		return nil, errors.New("missing pseudo-header")
	}
	if authority == "" {
		authority = h.Get("Host")
	}
	ctx, cancel := context.WithCancel(c.s.cfg.BaseContext)
	ctx = context.WithValue(ctx, streamKey{}, st)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.tc.LocalAddr())
	var body *bytes.Reader
	if len(st.body) > 0 {
		body = bytes.NewReader(st.body)
	}
	var req *http.Request
	var err error
	if body != nil {
		req, err = http.NewRequestWithContext(ctx, method, "https://"+authority+path, body)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, "https://"+authority+path, nil)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	st.cancel = cancel
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	req.Header = h
	req.Host = authority
	req.RequestURI = path
	req.RemoteAddr = c.remote
	cs := c.tc.ConnectionState() // per request: a parked one keeps no copy
	req.TLS = &cs
	req.GetBody = nil
	if body == nil {
		req.Body = http.NoBody
	}
	return req, nil
}

// encoder encodes answers' headers. It never adds to its table, so it
// refers to nothing a connection's peer keeps and serves any connection.
type encoder struct {
	enc *hpack.Encoder
	buf bytes.Buffer
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = hpack.NewEncoder(&e.buf)
	e.enc.SetMaxDynamicTableSizeLimit(0)
	return e
}}

// answerLocked queues a response: HEADERS, then the body as flow control
// allows.
func (c *conn) answerLocked(st *stream, code int, h http.Header, body []byte) {
	if st.answered {
		return
	}
	st.answered = true
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.buf.Reset()
	e.enc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(code)})
	for k, vs := range h {
		lk := strings.ToLower(k)
		switch lk {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length":
			continue
		}
		for _, v := range vs {
			e.enc.WriteField(hpack.HeaderField{Name: lk, Value: v})
		}
	}
	bodyAllowed := code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
	if bodyAllowed && (st.req == nil || st.req.Method != http.MethodHead) {
		e.enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(body))})
	} else {
		body = nil
	}
	block := e.buf.Bytes()
	flags := byte(0)
	if len(body) == 0 {
		flags |= flagEndStream
	}
	typ := byte(frameHeaders)
	for {
		n := min(len(block), c.peerMaxFrame)
		f := flags
		if n == len(block) {
			f |= flagEndHeaders
		}
		c.wbuf = appendFrame(c.wbuf, typ, f, st.id, block[:n])
		block = block[n:]
		typ, flags = frameContinuation, 0
		if len(block) == 0 {
			break
		}
	}
	st.out = body
	st.endOwed = len(body) > 0
	if len(body) > 0 {
		c.sendBodyLocked(st)
	} else {
		c.maybeDoneLocked(st)
	}
}

// sendBodyLocked sends what the windows allow of an answer's body.
func (c *conn) sendBodyLocked(st *stream) {
	for st.endOwed {
		n := min(int64(len(st.out)), int64(c.peerMaxFrame), st.sendWin, c.sendWin)
		if n <= 0 {
			return
		}
		flags := byte(0)
		if n == int64(len(st.out)) {
			flags = flagEndStream
		}
		c.wbuf = appendFrame(c.wbuf, frameData, flags, st.id, st.out[:n])
		st.out = st.out[n:]
		st.sendWin -= n
		c.sendWin -= n
		if flags != 0 {
			st.endOwed, st.out = false, nil
			c.maybeDoneLocked(st)
		}
	}
}

func (c *conn) sendPendingLocked() {
	for _, st := range c.streams {
		if st.endOwed {
			c.sendBodyLocked(st)
		}
	}
}

// maybeDoneLocked forgets a stream once its answer is sent; a request
// body still coming is refused politely.
func (c *conn) maybeDoneLocked(st *stream) {
	if !st.answered || st.endOwed || st.running {
		return
	}
	if !st.reqDone {
		c.wbuf = appendUint32Frame(c.wbuf, frameRSTStream, st.id, errNo)
	}
	c.closeStreamLocked(st)
}

// resetLocked ends a stream with RST_STREAM.
func (c *conn) resetLocked(st *stream, code uint32) {
	c.wbuf = appendUint32Frame(c.wbuf, frameRSTStream, st.id, code)
	c.closeStreamLocked(st)
}

// closeStreamLocked forgets a stream: its handler's context is cancelled,
// a parked request is let go.
func (c *conn) closeStreamLocked(st *stream) {
	if c.streams[st.id] != st {
		return
	}
	delete(c.streams, st.id)
	st.answered = true // a handler still running writes to no one
	c.s.unparkLocked(st)
	if st.cancel != nil {
		st.cancel()
	}
	if len(c.streams) == 0 {
		c.streams = nil
		c.lastActive = time.Now()
		if !c.dead && c.s.cfg.ConnState != nil {
			c.s.cfg.ConnState(c.tc, http.StateIdle)
		}
		if c.goingAway {
			c.killLocked()
		}
	}
}

// goAwayLocked sends GOAWAY once and closes the connection when its
// streams are done or at until.
func (c *conn) goAwayLocked(code uint32, until time.Time) {
	if c.dead {
		return
	}
	if !c.goingAway {
		c.goingAway = true
		c.wbuf = appendGoAway(c.wbuf, c.maxID, code)
	}
	if c.drainBy.IsZero() || until.Before(c.drainBy) {
		c.drainBy = until
	}
	if code != errNo || len(c.streams) == 0 {
		c.flushLocked()
		c.killLocked()
		return
	}
	c.flushLocked()
}

// sweepLocked appends to due the parked streams whose time has come
// without a timer of their own.
func (c *conn) sweepLocked(now time.Time, due []*stream) []*stream {
	if c.dead {
		return due
	}
	switch {
	case !c.alive():
		c.killLocked()
	case c.goingAway && now.After(c.drainBy):
		c.killLocked()
	case !c.preface && now.Sub(c.started) > 10*time.Second:
		c.killLocked()
	case len(c.streams) == 0 && now.Sub(c.lastActive) > c.s.cfg.IdleTimeout:
		c.goAwayLocked(errNo, now)
	default:
		for _, st := range c.streams {
			if !st.reqDone && now.Sub(st.arrived) > c.s.cfg.ReadTimeout {
				c.resetLocked(st, errCancel)
			}
			if st.parked && st.timer == nil && !now.Before(st.until) {
				due = append(due, st)
			}
		}
		c.flushLocked()
	}
	return due
}

// killLocked closes the connection now.
func (c *conn) killLocked() {
	if c.dead {
		return
	}
	c.dead = true
	if len(c.wbuf) > 0 { // the last answers and the GOAWAY, as far as the socket takes them
		_, _ = c.tc.Write(c.wbuf)
		c.wbuf = nil
	}
	_, _ = c.nc.flush()
	for _, st := range c.streams {
		c.s.unparkLocked(st)
		if st.cancel != nil {
			st.cancel()
		}
	}
	c.streams = nil
	c.unregisterLocked()
	c.tc.Close()
	if c.s.cfg.ConnState != nil {
		c.s.cfg.ConnState(c.tc, http.StateClosed)
	}
}
