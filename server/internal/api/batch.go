package api

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

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

// decodeBody decodes a raw batch body sent with Content-Encoding enc;
// check (optional) refuses an event as soon as it is decoded.
func decodeBody(enc string, raw io.Reader, check func(*event.Event) error) ([]event.Event, error) {
	switch enc = strings.ToLower(strings.TrimSpace(enc)); enc {
	case "", "identity":
		return decodeBatchFrom(raw, check)
	case "gzip":
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", errBadBatch, err)
		}
		defer zr.Close()
		return decodeBatchFrom(zr, check)
	default:
		return nil, fmt.Errorf("%w %q", errBadEncoder, enc)
	}
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
	lr := &limitedReader{r: body, total: wire.MaxBatchBody, window: MaxEventJSON, limit: MaxEventJSON}
	d := json.NewDecoder(lr)
	evs, err := decodeBatch(d, lr, check)
	if err != nil {
		switch {
		case errors.Is(err, errEventRefused):
			return nil, err
		case errors.Is(err, errTooLarge):
			return nil, errTooLarge
		case errors.Is(err, errBadBatch):
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errBadBatch, err)
	}
	return evs, nil
}

func decodeBatch(d *json.Decoder, lr *limitedReader, check func(*event.Event) error) ([]event.Event, error) {
	if err := wantDelim(d, '{'); err != nil {
		return nil, err
	}
	var evs []event.Event
	seen := false
	for d.More() {
		lr.mark(d.InputOffset())
		t, err := d.Token()
		if err != nil {
			return nil, err
		}
		if k, _ := t.(string); k != "events" {
			return nil, fmt.Errorf("%w: json: unknown field %q", errBadBatch, truncate(fmt.Sprint(t), 64))
		}
		if seen {
			return nil, fmt.Errorf("%w: events given twice", errBadBatch)
		}
		seen = true
		if evs, err = decodeEvents(d, lr, check); err != nil {
			return nil, err
		}
	}
	if err := wantDelim(d, '}'); err != nil {
		return nil, err
	}
	lr.mark(d.InputOffset())
	if _, err := d.Token(); err != io.EOF {
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

// decodeEvents reads the events array (or null) one event at a time.
func decodeEvents(d *json.Decoder, lr *limitedReader, check func(*event.Event) error) ([]event.Event, error) {
	lr.mark(d.InputOffset())
	t, err := d.Token()
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, nil
	}
	if t != json.Delim('[') {
		return nil, fmt.Errorf("%w: events is not an array", errBadBatch)
	}
	evs := make([]event.Event, 0, 16)
	var raw json.RawMessage
	for {
		lr.mark(d.InputOffset())
		if !d.More() {
			break
		}
		if len(evs) == wire.MaxBatchEvents {
			return nil, fmt.Errorf("%w: more than %d events, limit %d", errBadBatch, wire.MaxBatchEvents, wire.MaxBatchEvents)
		}
		raw = raw[:0]
		if err := d.Decode(&raw); err != nil {
			return nil, err
		}
		// encoding/json would replace invalid UTF-8 with U+FFFD and so
		// change what the agent hashed; refuse it instead.
		if !utf8.Valid(raw) {
			return nil, fmt.Errorf("%w: event %d is not valid UTF-8", errBadBatch, len(evs)+1)
		}
		ed := json.NewDecoder(bytes.NewReader(raw))
		ed.DisallowUnknownFields()
		var e event.Event
		if err := ed.Decode(&e); err != nil {
			return nil, fmt.Errorf("%w: event %d: %v", errBadBatch, len(evs)+1, err)
		}
		if check != nil {
			if err := check(&e); err != nil {
				return nil, fmt.Errorf("%w: event %d: %w", errEventRefused, len(evs)+1, err)
			}
		}
		evs = append(evs, e)
	}
	return evs, wantDelim(d, ']')
}

func wantDelim(d *json.Decoder, want json.Delim) error {
	t, err := d.Token()
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("%w: want %q, got %v", errBadBatch, want, truncate(fmt.Sprint(t), 64))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// limitedReader refuses to read past total bytes in all (errTooLarge) and
// past window bytes after the last mark (an event or a run of space that
// is too long), so the JSON decoder's buffer never grows beyond them.
type limitedReader struct {
	r             io.Reader
	n, total      int64
	window, limit int64
}

var errEventTooLarge = fmt.Errorf("%w: an event (or the space before it) is over %d bytes", errBadBatch, MaxEventJSON)

// mark starts a new window at input offset off.
func (l *limitedReader) mark(off int64) { l.limit = off + l.window }

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n > l.total {
		return 0, errTooLarge
	}
	if l.n >= l.limit {
		return 0, errEventTooLarge
	}
	room := l.total + 1 - l.n // one byte past total tells "too large" from "exactly total"
	room = min(room, l.limit-l.n)
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.total {
		return n, errTooLarge
	}
	return n, err
}
