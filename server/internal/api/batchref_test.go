package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// The batch decoder as it was before the hand-written one (encoding/json
// throughout), kept as the reference the new one is held to:
// TestDecoderMatchesReference, FuzzDecoderMatchesReference.

func refDecodeBatchFrom(body io.Reader, check func(*event.Event) error) ([]event.Event, error) {
	lr := &limitedReader{r: body, total: wire.MaxBatchBody, window: MaxEventJSON, limit: MaxEventJSON}
	d := json.NewDecoder(lr)
	evs, err := refDecodeBatch(d, lr, check)
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

func refDecodeBatch(d *json.Decoder, lr *limitedReader, check func(*event.Event) error) ([]event.Event, error) {
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
		if evs, err = refDecodeEvents(d, lr, check); err != nil {
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
func refDecodeEvents(d *json.Decoder, lr *limitedReader, check func(*event.Event) error) ([]event.Event, error) {
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

// limitedReader refuses to read past total bytes in all (errTooLarge) and
// past window bytes after the last mark (an event or a run of space that
// is too long), so the JSON decoder's buffer never grows beyond them.
type limitedReader struct {
	r             io.Reader
	n, total      int64
	window, limit int64
}

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

// decoderCorpus is the fuzz seeds of the batch decoders plus realistic
// batches and the shapes the hand-written parser leaves to encoding/json.
func decoderCorpus(t testing.TB) [][]byte {
	var out [][]byte
	for _, s := range []string{`{"events":[]}`, `{"events":null}`, `{}`, `[]`, `{"events":[{}]}`, `{"events":[null]}`,
		`{"events":[{"attrs":{"a":[1,{"b":"\ud800"}]}}]}`, "{\"events\":[{\"user\":\"\xff\"}]}", `{"events":[]}{}`, ``,
		`{"events":[{}` + strings.Repeat(",{}", 2000) + `]}`, "x", `{"events":[{},]}`, `{"events":[{}] , "x":1}`,
		`{"\u0065vents":[{}]}`, `{"events":[{}],"events":[{}]}`, ` { "events" : [ { } , { } ] } `, `{"events":[5]}`,
		`{"events":[null"x"]}`, `{"events":[{"a":1]}]}`, `{"events":[{"seq":1}}]}`, `{"events":["x"]}`, `{"events":[tru]}`,
		`{"events":[{"AGENT":"a","Seq":2}]}`, `{"events":[{"agent":"a","agent":null}]}`, `{"events":[{"agent":"a","agent":"b"}]}`,
		`{"events":[{"seq":1.0}]}`, `{"events":[{"seq":-1}]}`, `{"events":[{"seq":18446744073709551616}]}`, `{"events":[{"seq":01}]}`,
		`{"events":[{"seq":1e2}]}`, `{"events":[{"seq":null,"time":null,"attrs":null}]}`, `{"events":[{"attrs":5}]}`,
		`{"events":[{"attrs":{"k":1,"k":2,"n":-0.5e+3,"t":true,"f":false,"z":null,"e":[],"o":{}}}]}`,
		`{"events":[{"attrs":{"k":01}}]}`, `{"events":[{"attrs":{"k":1.}}]}`, `{"events":[{"attrs":{"k":-}}]}`,
		`{"events":[{"user":"a\"b\\c\/d\b\f\n\r\t\u00e9\u0000\u2028\uD83D\uDE00\ud800x"}]}`, `{"events":[{"user":"\x"}]}`,
		`{"events":[{"time":"2026-11-01T09:00:00Z"}]}`, `{"events":[{"time":"2026-11-01T09:00:00.123456789Z"}]}`,
		`{"events":[{"time":"2026-11-01T09:00:00.1234567891Z"}]}`, `{"events":[{"time":"2026-11-01T09:00:00+09:00"}]}`,
		`{"events":[{"time":"2026-02-29T09:00:00Z"}]}`, `{"events":[{"time":"2024-02-29T24:00:00Z"}]}`,
		`{"events":[{"time":"0000-01-01T00:00:00Z"}]}`, `{"events":[{"time":"2026-11-01T09:00:60Z"}]}`,
		`{"events":[{"time":"2026-11-01t09:00:00z"}]}`, `{"events":[{"time":"2026-11-01T09:00:00,5Z"}]}`,
		`{"events":[{"time":"2026-11-01T09:00:00.Z"}]}`, `{"events":[{"time":"\u0032026-11-01T09:00:00Z"}]}`,
		`{"events":[{"time":5}]}`, `{"events":[{"type":"x","x":1}]}`, `{"events":[{"ſeq":1}]}`,
		// A hash field inside attrs, and events whose hash is not last or
		// not 64 characters: the quick path's guess of the end is wrong.
		`{"events":[{"attrs":{"a":1,"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]}`,
		`{"events":[{"attrs":{"a":{"b":2,"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}},"seq":1,"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},{"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]}`,
		`{"events":[{"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","seq":1},{"seq":2,"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]}`,
		`{"events":[{"seq":1,"hash":"abc"},{"seq":2,"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]}`,
		`{"events":[{"seq":1,"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"} , {"seq":2,"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]}`,
		`{"events":[{"seq":1,"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}{"seq":2,"hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]}`,
	} {
		out = append(out, []byte(s))
	}
	for _, n := range []int{1, 2, 500, 1000, 1001} {
		out = append(out, realisticBatch(t, n))
	}
	return out
}

// realisticBatch is n sealed file events of one agent with the shapes an
// office sends: Windows paths (escaped backslashes), Japanese names,
// attrs of numbers and strings.
func realisticBatch(t testing.TB, n int) []byte {
	evs := make([]event.Event, n)
	prev := ""
	for i := range evs {
		evs[i] = event.Event{Agent: "agent-1", Seq: uint64(i + 1), Time: time.Date(2026, 11, 23, 9, 0, 0, i*1000+i%3, time.UTC),
			Control: "fileaccess", Type: "file.modified", Severity: event.Info, User: `OFFICE\tanaka`,
			Process: `C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE`,
			Object:  fmt.Sprintf(`D:\顧客\2026\名簿 "%d" <&>.xlsx`, i), RegisterID: "PI-0001",
			Attrs: event.Attrs{"size": json.Number(fmt.Sprint(48213 + i)), "ratio": json.Number("0.25"), "access_mask": "0x6",
				"nested": map[string]any{"a": []any{json.Number("1"), "b\n", nil, true}}}}
		if i%7 == 0 {
			evs[i].Attrs = nil
			evs[i].Time = time.Date(2026, 11, 23, 9, 0, i%60, 0, time.UTC)
		}
		if err := evs[i].Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = evs[i].Hash
	}
	body, err := json.Marshal(wire.Batch{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errEventRefused):
		return "refused"
	case errors.Is(err, errTooLarge):
		return "too large"
	case errors.Is(err, errBadBatch):
		return "bad batch"
	}
	return "other: " + err.Error()
}

// sameAsReference decodes body with both decoders, with and without the
// ingest check, and fails unless they give equal events or errors of the
// same class.
func sameAsReference(t *testing.T, body []byte) {
	t.Helper()
	check := func(e *event.Event) error { return e.Validate() }
	for _, c := range []func(*event.Event) error{nil, check} {
		got, gerr := decodeBatchFrom(bytes.NewReader(body), c)
		want, werr := refDecodeBatchFrom(bytes.NewReader(body), c)
		forgetClaims(got)
		if errClass(gerr) != errClass(werr) {
			t.Fatalf("%q (check %v):\nnew: %v\nold: %v", truncate(string(body), 300), c != nil, gerr, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q (check %v): events differ:\nnew: %#v\nold: %#v", truncate(string(body), 300), c != nil, got, want)
		}
	}
}

// TestDecoderMatchesReference: the hand-written decoder gives exactly what
// the encoding/json one gave, or an error of the same class.
func TestDecoderMatchesReference(t *testing.T) {
	for _, body := range decoderCorpus(t) {
		sameAsReference(t, body)
		// Every prefix of the small ones: truncated input anywhere.
		if len(body) < 600 {
			for i := range body {
				sameAsReference(t, body[:i])
			}
		}
	}
	// The fast path takes the realistic events (not encoding/json).
	body := realisticBatch(t, 3)
	var raws struct{ Events []json.RawMessage }
	if err := json.Unmarshal(body, &raws); err != nil {
		t.Fatal(err)
	}
	for i, raw := range raws.Events {
		var e event.Event
		if !parseEvent(string(raw), &e) {
			t.Fatalf("event %d left to encoding/json: %s", i+1, raw)
		}
	}
}

func FuzzDecoderMatchesReference(f *testing.F) {
	for _, body := range decoderCorpus(f) {
		if len(body) < 4096 {
			f.Add(body)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) { sameAsReference(t, body) })
}

// FuzzParseEventMatchesJSON: whatever the fast path accepts, encoding/json
// decodes to the same event.
func FuzzParseEventMatchesJSON(f *testing.F) {
	for _, body := range decoderCorpus(f) {
		var raws struct{ Events []json.RawMessage }
		if json.Unmarshal(body, &raws) == nil {
			for _, r := range raws.Events {
				if len(r) < 4096 {
					f.Add(string(r))
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, src string) {
		if !utf8.ValidString(src) {
			return
		}
		var got event.Event
		if !parseEvent(src, &got) {
			return
		}
		checkClaim(t, src)
		got.SetCanonical("", "")
		var want event.Event
		d := json.NewDecoder(strings.NewReader(src))
		d.DisallowUnknownFields()
		if err := d.Decode(&want); err != nil || d.InputOffset() != int64(len(src)) && strings.TrimSpace(src[d.InputOffset():]) != "" {
			t.Fatalf("%q: fast path accepted, encoding/json: %v", src, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nfast: %#v\njson: %#v", src, got, want)
		}
	})
}
