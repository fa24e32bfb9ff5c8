package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// MaxEventJSON bounds the JSON text of one event in a batch (and any run of
// space before it). A valid event is at most event.MaxEventSize canonical
// bytes; JSON escapes can make its text several times longer, never this long.
const MaxEventJSON = 8 * event.MaxEventSize

// Errors of the batch decoder; errTooLarge answers 413, the rest 400.
var (
	errTooLarge   = fmt.Errorf("api: batch body over %d bytes", wire.MaxBatchBody)
	errBadBatch   = errors.New("api: bad batch")
	errBadEncoder = errors.New("api: unsupported Content-Encoding")
	// errEventRefused wraps what the caller's check said of one event; the
	// rest of the batch is not decoded.
	errEventRefused = errors.New("api: batch refused")
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readRawBody reads the request body as sent (still compressed), at most
// wire.MaxBatchBody bytes, into buf. MaxBytesReader with w makes the server
// close the connection after an oversize body instead of reading the rest.
func readRawBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) error {
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, wire.MaxBatchBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return errTooLarge
	case err != nil:
		return fmt.Errorf("%w: reading body: %w", errBadBatch, err)
	}
	return nil
}

// encodingName is the Content-Encoding decodeBody reads enc as.
func encodingName(enc string) string {
	if enc = strings.ToLower(strings.TrimSpace(enc)); enc == "" {
		return "identity"
	}
	return enc
}

// decodeBody decodes a raw batch body sent with Content-Encoding enc;
// check (optional) refuses an event as soon as it is decoded.
func decodeBody(enc string, raw io.Reader, check func(*event.Event) error) ([]event.Event, error) {
	switch enc = encodingName(enc); enc {
	case "identity":
		return decodeBatchFrom(raw, check)
	case "gzip":
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", errBadBatch, err)
		}
		defer zr.Close()
		return decodeBatchFrom(zr, check)
	case "zstd":
		zr := zstdReaders.Get().(*zstd.Decoder)
		defer func() {
			_ = zr.Reset(nil) // drop raw; the decoder's buffers stay for the next batch
			zstdReaders.Put(zr)
		}()
		if err := zr.Reset(raw); err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", errBadBatch, err)
		}
		return decodeBatchFrom(zstdErrs{zr}, check)
	default:
		return nil, fmt.Errorf("%w %q", errBadEncoder, enc)
	}
}

// zstdWindow bounds the window a zstd batch may ask the decoder for, so a
// small body cannot make the server allocate more: agents use 1 MiB.
const zstdWindow = 8 << 20

// zstdReaders are streaming decoders (one goroutine each: concurrency 1
// decodes in the caller), kept between batches with their buffers: a new
// one allocates its tables. Input of any size is streamed through the batch
// scanner, which stops after wire.MaxBatchBody decoded bytes.
var zstdReaders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdWindow), zstd.WithDecodeBuffersBelow(0))
	if err != nil {
		panic(fmt.Sprintf("api: zstd decoder options: %v", err)) // constant options: a programming error
	}
	return d
}}

// zstdErrs marks the decoder's errors as the batch's: a corrupt or
// oversized frame answers 400 like bad gzip.
type zstdErrs struct{ r io.Reader }

func (z zstdErrs) Read(p []byte) (int, error) {
	n, err := z.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: zstd: %v", errBadBatch, err)
	}
	return n, err
}

// DecodeBatch parses a decoded /v1/events body; see DecodeBatchFrom.
func DecodeBatch(body []byte) ([]event.Event, error) {
	return DecodeBatchFrom(bytes.NewReader(body))
}

// DecodeBatchFrom parses a decoded /v1/events body strictly while reading
// it: one JSON object with the single field "events" and nothing after it,
// 1 to wire.MaxBatchEvents events, each valid UTF-8 with no unknown fields.
// Every bound is checked before the bytes past it are read or anything is
// allocated for them: it stops at event wire.MaxBatchEvents+1, after
// wire.MaxBatchBody decoded bytes, and within an event after MaxEventJSON
// bytes, so a small gzip bomb costs neither memory nor time. It does not
// check the events themselves; the store does (event.VerifyChain).
func DecodeBatchFrom(body io.Reader) ([]event.Event, error) { return decodeBatchFrom(body, nil) }

func decodeBatchFrom(body io.Reader, check func(*event.Event) error) ([]event.Event, error) {
	sc := batchScanner{r: body, buf: scanBufs.Get().(*[]byte)}
	defer func() {
		if cap(*sc.buf) <= 2*scanChunk+MaxEventJSON {
			*sc.buf = (*sc.buf)[:0]
			scanBufs.Put(sc.buf)
		}
	}()
	*sc.buf = (*sc.buf)[:0]
	evs, err := sc.batch(check)
	if err != nil {
		switch {
		case errors.Is(err, errEventRefused), errors.Is(err, errTooLarge), errors.Is(err, errBadBatch):
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errBadBatch, err)
	}
	return evs, nil
}

// scanChunk is how much the batch scanner reads at a time.
const scanChunk = 32 << 10

var scanBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*scanChunk); return &b }}

// batchScanner reads the batch object from r through a buffer that holds
// the current event and at most scanChunk bytes more: an event is found
// whole (its extent scanned, strings and nesting followed), then decoded
// by parseEvent, or by encoding/json where parseEvent is not sure.
type batchScanner struct {
	r    io.Reader
	buf  *[]byte
	pos  int   // next unread byte in *buf
	mark int   // start of the current event's window in *buf
	read int64 // bytes read from r
	eof  bool
}

var errUnexpectedEnd = fmt.Errorf("%w: unexpected end of JSON input", errBadBatch)

// fill reads more input; false at its end. Bytes before mark are dropped
// first, and reading stops MaxEventJSON bytes past mark (errEventTooLarge)
// and past wire.MaxBatchBody bytes in all (errTooLarge).
func (s *batchScanner) fill() (bool, error) {
	if s.eof {
		return false, nil
	}
	b := *s.buf
	if len(b)-s.mark >= MaxEventJSON {
		return false, errEventTooLarge
	}
	if s.mark > 0 && s.mark >= len(b)/2 {
		n := copy(b, b[s.mark:])
		b = b[:n]
		s.pos -= s.mark
		s.mark = 0
	}
	if cap(b)-len(b) < scanChunk {
		b = slices.Grow(b, scanChunk)
	}
	room := min(int64(cap(b)-len(b)), wire.MaxBatchBody+1-s.read, int64(MaxEventJSON-(len(b)-s.mark)))
	for {
		n, err := s.r.Read(b[len(b) : len(b)+int(room)])
		b = b[:len(b)+n]
		s.read += int64(n)
		*s.buf = b
		if s.read > wire.MaxBatchBody {
			return false, errTooLarge
		}
		if err == io.EOF {
			s.eof = true
			return n > 0, nil
		}
		if err != nil {
			return false, err
		}
		if n > 0 {
			return true, nil
		}
	}
}

// peek skips JSON space and returns the next byte; ok false at the end.
func (s *batchScanner) peek() (byte, bool, error) {
	for {
		b := *s.buf
		for s.pos < len(b) {
			switch c := b[s.pos]; c {
			case ' ', '\t', '\n', '\r':
				s.pos++
			default:
				return c, true, nil
			}
		}
		more, err := s.fill()
		if err != nil || !more {
			return 0, false, err
		}
	}
}

// want consumes the next byte, which must be c.
func (s *batchScanner) want(c byte, what string) error {
	got, ok, err := s.peek()
	if err != nil {
		return err
	}
	if !ok {
		return errUnexpectedEnd
	}
	if got != c {
		return fmt.Errorf("%w: want %q, got %q at %s", errBadBatch, c, got, what)
	}
	s.pos++
	return nil
}

// value returns the extent of the next JSON value (without checking its
// syntax inside: the decoders do), reading until it is whole.
func (s *batchScanner) value() ([]byte, error) {
	c, ok, err := s.peek()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errUnexpectedEnd
	}
	start, i := s.pos, s.pos
	if c != '{' && c != '[' && c != '"' {
		return s.scalar()
	}
	depth, inStr, esc := 0, false, false
	for {
		b := *s.buf
		for ; i < len(b); i++ {
			c = b[i]
			if inStr {
				if esc {
					esc = false
					continue
				}
				if c != '"' && c != '\\' {
					// Skip the run of plain bytes at once: strings are
					// most of a batch (paths, hashes).
					i += 1 + quoteOrEscape(b[i+1:])
					if i >= len(b) {
						break // read more; still in the string
					}
					c = b[i]
				}
				if c == '\\' {
					esc = true
					continue
				}
				inStr = false
				if depth == 0 {
					s.pos = i + 1
					return b[start:s.pos], nil
				}
				continue
			}
			switch {
			case c == '"':
				inStr = true
			case c == '{' || c == '[':
				depth++
			case c == '}' || c == ']':
				if depth--; depth == 0 {
					s.pos = i + 1
					return b[start:s.pos], nil
				}
			}
		}
		// fill may move the bytes: keep offsets, not slices.
		off := start - s.mark
		i -= start
		more, err := s.fill()
		if err != nil {
			return nil, err
		}
		start = s.mark + off
		i += start
		if !more {
			return nil, errUnexpectedEnd
		}
	}
}

// quoteOrEscape returns the index of the first '"' or '\\' in b, or
// len(b): IndexByte is vectorised where a byte loop is not.
func quoteOrEscape(b []byte) int {
	q := bytes.IndexByte(b, '"')
	if q < 0 {
		q = len(b)
	}
	if k := bytes.IndexByte(b[:q], '\\'); k >= 0 {
		return k
	}
	return q
}

// scalar returns the extent of a number or literal, ending where its
// grammar does, as encoding/json's scanner ends it.
func (s *batchScanner) scalar() ([]byte, error) {
	off := s.pos - s.mark // fill may move the bytes: keep an offset
	// at returns byte k of the scalar, reading more as needed.
	at := func(k int) (byte, bool, error) {
		for {
			if i := s.mark + off + k; i < len(*s.buf) {
				return (*s.buf)[i], true, nil
			}
			more, err := s.fill()
			if err != nil || !more {
				return 0, false, err
			}
		}
	}
	bad := func(c byte) error { return fmt.Errorf("%w: invalid character %q in a value", errBadBatch, c) }
	c, _, _ := at(0)
	k := 0
	if lit := map[byte]string{'t': "true", 'f': "false", 'n': "null"}[c]; lit != "" {
		for ; k < len(lit); k++ {
			c, ok, err := at(k)
			switch {
			case err != nil:
				return nil, err
			case !ok:
				return nil, errUnexpectedEnd
			case c != lit[k]:
				return nil, bad(c)
			}
		}
	} else {
		// digits reads a run of digits; want says at least one must be there.
		digits := func(want bool) error {
			for n := 0; ; n++ {
				c, ok, err := at(k)
				switch {
				case err != nil:
					return err
				case ok && '0' <= c && c <= '9':
					k++
				case n > 0 || !want:
					return nil
				case !ok:
					return errUnexpectedEnd
				default:
					return bad(c)
				}
			}
		}
		if c == '-' {
			k++
		}
		c, ok, err := at(k)
		switch {
		case err != nil:
			return nil, err
		case !ok:
			return nil, errUnexpectedEnd
		case c == '0':
			k++
		case '1' <= c && c <= '9':
			if err := digits(true); err != nil {
				return nil, err
			}
		default:
			return nil, bad(c)
		}
		if c, ok, err := at(k); err != nil {
			return nil, err
		} else if ok && c == '.' {
			k++
			if err := digits(true); err != nil {
				return nil, err
			}
		}
		if c, ok, err := at(k); err != nil {
			return nil, err
		} else if ok && (c == 'e' || c == 'E') {
			k++
			if c, ok, err := at(k); err != nil {
				return nil, err
			} else if ok && (c == '+' || c == '-') {
				k++
			}
			if err := digits(true); err != nil {
				return nil, err
			}
		}
	}
	start := s.mark + off
	s.pos = start + k
	return (*s.buf)[start:s.pos], nil
}

// key reads an object key of the batch object.
func (s *batchScanner) key() (string, error) {
	v, err := s.value()
	if err != nil {
		return "", err
	}
	var k string
	if len(v) == 0 || v[0] != '"' {
		return "", fmt.Errorf("%w: want a key, got %s", errBadBatch, truncate(string(v), 64))
	}
	if err := json.Unmarshal(v, &k); err != nil {
		return "", fmt.Errorf("%w: %v", errBadBatch, err)
	}
	return k, nil
}

func (s *batchScanner) batch(check func(*event.Event) error) ([]event.Event, error) {
	if err := s.want('{', "the start of the batch"); err != nil {
		return nil, err
	}
	var evs []event.Event
	seen := false
	for first := true; ; first = false {
		s.mark = s.pos
		c, ok, err := s.peek()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errUnexpectedEnd
		}
		if c == '}' {
			s.pos++
			break
		}
		if !first {
			if err := s.want(',', "the batch object"); err != nil {
				return nil, err
			}
		}
		k, err := s.key()
		if err != nil {
			return nil, err
		}
		if k != "events" {
			return nil, fmt.Errorf("%w: json: unknown field %q", errBadBatch, truncate(k, 64))
		}
		if seen {
			return nil, fmt.Errorf("%w: events given twice", errBadBatch)
		}
		seen = true
		if err := s.want(':', "the batch object"); err != nil {
			return nil, err
		}
		if evs, err = s.events(check); err != nil {
			return nil, err
		}
	}
	s.mark = s.pos
	if _, ok, err := s.peek(); err != nil || ok {
		if errors.Is(err, errTooLarge) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: data after the batch object", errBadBatch)
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("%w: no events", errBadBatch)
	}
	return evs, nil
}

// events reads the events array (or null) one event at a time: each is
// counted before it is read, and checked as soon as it is decoded.
func (s *batchScanner) events(check func(*event.Event) error) ([]event.Event, error) {
	s.mark = s.pos
	c, ok, err := s.peek()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errUnexpectedEnd
	}
	if c == 'n' {
		v, err := s.value()
		if err != nil {
			return nil, err
		}
		if string(v) != "null" {
			return nil, fmt.Errorf("%w: events is not an array", errBadBatch)
		}
		return nil, nil
	}
	if c != '[' {
		return nil, fmt.Errorf("%w: events is not an array", errBadBatch)
	}
	s.pos++
	evs := make([]event.Event, 0, 16)
	for {
		s.mark = s.pos
		c, ok, err := s.peek()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errUnexpectedEnd
		}
		if c == ']' {
			s.pos++
			return evs, nil
		}
		if len(evs) > 0 {
			if c != ',' {
				return nil, fmt.Errorf("%w: want ',' or ']' after event %d, got %q", errBadBatch, len(evs), c)
			}
			s.pos++
		}
		if len(evs) == wire.MaxBatchEvents {
			return nil, fmt.Errorf("%w: more than %d events, limit %d", errBadBatch, wire.MaxBatchEvents, wire.MaxBatchEvents)
		}
		e, ok, err := s.quickEvent()
		if err != nil {
			return nil, err
		}
		if !ok {
			raw, err := s.value()
			if err != nil {
				return nil, err
			}
			if e, err = decodeEvent(raw, len(evs)+1); err != nil {
				return nil, err
			}
		}
		if check != nil {
			if err := check(&e); err != nil {
				return nil, fmt.Errorf("%w: event %d: %w", errEventRefused, len(evs)+1, err)
			}
		}
		evs = append(evs, e)
	}
}

// hashField is how the text of every event an agent sends ends: its hash,
// the last field, then the object's end.
const hashField = `,"hash":"`

// quickWindow is how far quickEvent looks for an event's end: most events
// are well under 2 KiB; a larger one takes the scanner's way. It bounds
// the search of a batch of events without a hash to 4 MiB.
const quickWindow = 4 << 10

// quickEvent decodes the next event, if it is buffered whole and ends as
// an agent's do, without the scanner finding its extent first (a second
// pass over its text, 6% of the server's CPU): it takes the text up to the
// first hash field and its value, and only if parseEvent finds exactly one
// object there (its end is then where the scanner would find it) does it
// consume the text. Otherwise it reports false and consumes nothing, and
// the caller goes the scanner's way, which gives the event or the error.
func (s *batchScanner) quickEvent() (event.Event, bool, error) {
	if c, ok, err := s.peek(); err != nil || !ok || c != '{' {
		return event.Event{}, false, err
	}
	b := (*s.buf)[s.pos:]
	k := bytes.Index(b[:min(len(b), quickWindow)], []byte(hashField))
	if k < 0 {
		return event.Event{}, false, nil
	}
	end := k + len(hashField) + event.HashLen + len(`"}`)
	if end > len(b) || b[end-2] != '"' || b[end-1] != '}' {
		return event.Event{}, false, nil
	}
	raw := b[:end]
	var e event.Event
	if !utf8.Valid(raw) || !parseEvent(string(raw), &e) {
		return event.Event{}, false, nil
	}
	s.pos += end
	return e, true, nil
}

// decodeEvent decodes the n-th event of a batch from its JSON text.
func decodeEvent(raw []byte, n int) (event.Event, error) {
	// encoding/json would replace invalid UTF-8 with U+FFFD and so change
	// what the agent hashed; refuse it instead.
	if !utf8.Valid(raw) {
		return event.Event{}, fmt.Errorf("%w: event %d is not valid UTF-8", errBadBatch, n)
	}
	var e event.Event
	if parseEvent(string(raw), &e) {
		return e, nil
	}
	e = event.Event{}
	ed := json.NewDecoder(bytes.NewReader(raw))
	ed.DisallowUnknownFields()
	if err := ed.Decode(&e); err != nil {
		return event.Event{}, fmt.Errorf("%w: event %d: %v", errBadBatch, n, err)
	}
	if ed.More() || ed.InputOffset() != int64(len(raw)) {
		return event.Event{}, fmt.Errorf("%w: event %d: invalid JSON after the value", errBadBatch, n)
	}
	return e, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

var errEventTooLarge = fmt.Errorf("%w: an event (or the space before it) is over %d bytes", errBadBatch, MaxEventJSON)
