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

// Errors of the batch decoder; errTooLarge answers 413, the rest 400.
var (
	errTooLarge   = fmt.Errorf("api: batch body over %d bytes", wire.MaxBatchBody)
	errBadBatch   = errors.New("api: bad batch")
	errBadEncoder = errors.New("api: unsupported Content-Encoding")
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBatchBody reads the request body, gunzipping it when the request
// says Content-Encoding: gzip, and refuses more than wire.MaxBatchBody
// decoded bytes (so a small gzip bomb cannot blow up memory). The buffer
// goes back to bufPool after use.
func readBatchBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) error {
	// MaxBytesReader with w makes the server close the connection after an
	// oversize body instead of reading the rest of it.
	body := io.Reader(http.MaxBytesReader(w, r.Body, wire.MaxBatchBody))
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return fmt.Errorf("%w: gzip: %v", errBadBatch, err)
		}
		defer zr.Close()
		body = zr
	default:
		return fmt.Errorf("%w %q", errBadEncoder, enc)
	}
	n, err := buf.ReadFrom(io.LimitReader(body, wire.MaxBatchBody+1)) // decoded size
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || n > wire.MaxBatchBody:
		return errTooLarge
	case err != nil:
		return fmt.Errorf("%w: reading body: %v", errBadBatch, err)
	}
	return nil
}

// DecodeBatch parses a decoded /v1/events body strictly: valid UTF-8, one
// JSON object with no unknown fields and nothing after it, 1 to
// wire.MaxBatchEvents events. It does not check the events themselves; the
// store does (event.VerifyChain).
func DecodeBatch(body []byte) ([]event.Event, error) {
	if len(body) > wire.MaxBatchBody {
		return nil, errTooLarge
	}
	// encoding/json would replace invalid UTF-8 with U+FFFD and so change
	// what the agent hashed; refuse it instead.
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: body is not valid UTF-8", errBadBatch)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	var b wire.Batch
	if err := d.Decode(&b); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadBatch, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the batch object", errBadBatch)
	}
	switch {
	case len(b.Events) == 0:
		return nil, fmt.Errorf("%w: no events", errBadBatch)
	case len(b.Events) > wire.MaxBatchEvents:
		return nil, fmt.Errorf("%w: %d events, limit %d", errBadBatch, len(b.Events), wire.MaxBatchEvents)
	}
	return b.Events, nil
}
