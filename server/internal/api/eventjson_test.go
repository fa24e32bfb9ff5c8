package api

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// forgetClaims drops what the parser told evs of their text, to compare
// them with events decoded by encoding/json.
func forgetClaims(evs []event.Event) {
	for i := range evs {
		evs[i].SetCanonical("", "")
	}
}

// checkClaim fails t unless what the parser claims of src (valid UTF-8) is
// true: the text before its hash field, closed, is event.Canonical of the
// event it decodes to, and its attrs are the attrs' part of it. It reports
// whether there was a claim.
func checkClaim(t testing.TB, src string) bool {
	t.Helper()
	var e event.Event
	p, ok := parse(src, &e)
	if !ok || p.odd {
		return false
	}
	head, attrs := src[:p.hashAt], src[p.attrsAt:p.attrsEnd]
	want, err := e.Canonical()
	if err != nil {
		t.Fatalf("%q: claimed canonical, encoding it: %v", src, err)
	}
	if head+"}" != string(want) {
		t.Fatalf("%q: claimed canonical as\n%s\nbut it is\n%s", src, head+"}", want)
	}
	// The attrs' part, cut from the encoding of an event with nothing else.
	only, err := (&event.Event{Attrs: e.Attrs}).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	wantAttrs := ""
	if k := bytes.Index(only, []byte(`,"attrs":`)); k >= 0 {
		wantAttrs = strings.TrimSuffix(string(only[k+len(`,"attrs":`):]), `,"prev":""}`)
	}
	if attrs != wantAttrs {
		t.Fatalf("%q: claimed attrs %q, canonical %q", src, attrs, wantAttrs)
	}
	return true
}

// agentEvents is evs as an agent sends them: wire.BatchEncoder's batch,
// one text per event.
func agentEvents(t testing.TB, evs []event.Event) []string {
	t.Helper()
	var enc wire.BatchEncoder
	body, err := enc.Encode(evs, "gzip")
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var raws struct{ Events []json.RawMessage }
	if err := json.Unmarshal(plain, &raws); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(raws.Events))
	for i, r := range raws.Events {
		out[i] = string(r)
	}
	return out
}

// officeEvents are sealed events with what agents send and canonical
// encoding treats specially: Windows paths, Japanese, HTML characters,
// control characters, U+2028, floats and nested attrs, times with and
// without a fraction.
func officeEvents(t testing.TB) []event.Event {
	t.Helper()
	evs := []event.Event{
		{Control: "fileaccess", Type: "file.modified", User: `OFFICE\tanaka`, Process: `C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE`,
			Object: `D:\顧客\2026\名簿 "1" <&>.xlsx`, RegisterID: "PI-0001",
			Attrs: event.Attrs{"size": 48213, "ratio": 0.25, "tiny": 1e-9, "access_mask": "0x6", "note": "a\u2028b\u001f\t/</script>",
				"nested": map[string]any{"z": []any{1, "b\n", nil, true}, "a": map[string]any{}}}},
		{Control: "screenlock", Type: "check", Time: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)},
		{Control: "media", Type: "media.inserted", Time: time.Date(2026, 12, 6, 9, 0, 0, 120_000_000, time.UTC),
			Object: "USB\\VID_0781&PID_5581\\4C530001", Attrs: event.Attrs{"label": "SanDisk 128GB", "持出し": true}},
	}
	prev := ""
	for i := range evs {
		e := &evs[i]
		e.Agent, e.Seq, e.Severity = "pc-0042", uint64(i+1), event.Info
		if e.Time.IsZero() {
			e.Time = time.Date(2026, 12, 6, 9, 0, 0, 123456789, time.UTC)
		}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	return evs
}

// TestCanonicalClaim: the text an agent sends is claimed canonical, the
// claim is true and the store then keeps what it kept without one; text
// the canonical encoding would write otherwise is not claimed.
func TestCanonicalClaim(t *testing.T) {
	evs := officeEvents(t)
	texts := agentEvents(t, evs)
	for i, src := range texts {
		if !checkClaim(t, src) {
			t.Fatalf("event %d as the agent sends it is not claimed canonical: %s", i+1, src)
		}
		e, err := decodeEvent([]byte(src), i+1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.ValidateAttrs()
		if err != nil {
			t.Fatalf("event %d with the claim: %v", i+1, err)
		}
		e.SetCanonical("", "")
		want, err := e.ValidateAttrs()
		if err != nil {
			t.Fatalf("event %d without the claim: %v", i+1, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("event %d: attrs %s with the claim, %s without", i+1, got, want)
		}
	}

	// The claim is what is hashed: a changed hash is refused through it.
	e, err := decodeEvent([]byte(strings.Replace(texts[0], `"hash":"`, `"hash":"0`, 1)[:len(texts[0])-2]+`"}`), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ValidateAttrs(); !errors.Is(err, event.ErrHash) {
		t.Fatalf("changed hash: %v, want ErrHash", err)
	}

	// Each of these is the same event in a form canonical encoding does not
	// write; encoding/json decodes each the same, so only the claim differs.
	src := texts[0]
	for name, odd := range map[string]string{
		"space after a colon":   strings.Replace(src, `"seq":`, `"seq": `, 1),
		"space before the end":  strings.TrimSuffix(src, "}") + " }",
		"fields out of order":   strings.Replace(src, `"control":"fileaccess","type":"file.modified"`, `"type":"file.modified","control":"fileaccess"`, 1),
		"hash not last":         moveHashFirst(t, src),
		"attrs keys unsorted":   strings.Replace(src, `{"access_mask":"0x6",`, `{"zz":1,"access_mask":"0x6",`, 1),
		"an escaped slash":      strings.Replace(src, `\t/<`, `\t\/<`, 1),
		"HTML escapes":          strings.Replace(src, `<&>`, `\u003c\u0026\u003e`, 1),
		"uppercase hex":         strings.Replace(src, `\u001f`, `\u001F`, 1),
		"a short escape as \\u": strings.Replace(src, `b\n`, `b\u000a`, 1),
		"a raw U+2028":          strings.Replace(src, `a\u2028b`, "a\u2028b", 1),
		"a +00:00 zone":         strings.Replace(src, `.123456789Z`, `.123456789+00:00`, 1),
	} {
		if odd == src {
			t.Fatalf("%s: the edit did not apply to %s", name, src)
		}
		if !utf8.ValidString(odd) {
			t.Fatalf("%s: not UTF-8", name)
		}
		if checkClaim(t, odd) {
			t.Errorf("%s: claimed canonical: %s", name, odd)
		}
	}
	for name, odd := range map[string]string{
		"an empty user":          strings.Replace(texts[1], `"severity":"info",`, `"severity":"info","user":"",`, 1),
		"a fraction's last zero": strings.Replace(texts[2], `.12Z`, `.120Z`, 1),
		"empty attrs":            strings.Replace(texts[1], `"prev":`, `"attrs":{},"prev":`, 1),
		"null attrs":             strings.Replace(texts[1], `"prev":`, `"attrs":null,"prev":`, 1),
		"no prev":                strings.Replace(texts[0], `"prev":"",`, ``, 1),
	} {
		if slices.Contains(texts, odd) {
			t.Fatalf("%s: the edit did not apply", name)
		}
		if checkClaim(t, odd) {
			t.Errorf("%s: claimed canonical: %s", name, odd)
		}
	}
}

// moveHashFirst is src with its hash field first.
func moveHashFirst(t testing.TB, src string) string {
	t.Helper()
	k := strings.LastIndex(src, `,"hash":`)
	if k < 0 {
		t.Fatalf("no hash in %s", src)
	}
	return "{" + src[k+1:len(src)-1] + "," + src[1:k] + "}"
}

// FuzzCanonicalClaim: every claim the parser makes of its input is true.
func FuzzCanonicalClaim(f *testing.F) {
	for _, src := range agentEvents(f, officeEvents(f)) {
		f.Add(src)
	}
	for _, body := range decoderCorpus(f) {
		var raws struct{ Events []json.RawMessage }
		if json.Unmarshal(body, &raws) == nil && len(raws.Events) < 10 {
			for _, r := range raws.Events {
				f.Add(string(r))
			}
		}
	}
	f.Add(fmt.Sprintf(`{"agent":"a","seq":1,"time":"2026-12-06T09:00:00.5Z","control":"c","type":"t","severity":"info","attrs":{"\u0000":"\u001f","a":-0.0e+1,"b":[{}]},"prev":"","hash":"%064d"}`, 0))
	f.Fuzz(func(t *testing.T, src string) {
		if utf8.ValidString(src) {
			checkClaim(t, src)
		}
	})
}

// TestQuickEvent: an agent's events are decoded without the scanner's pass
// over their text; where the first hash field is not the event's end,
// nothing is consumed and the scanner's way decodes it.
func TestQuickEvent(t *testing.T) {
	texts := agentEvents(t, officeEvents(t))
	buf := make([]byte, 0, 2*scanChunk)
	s := batchScanner{r: strings.NewReader(texts[0] + " ,\n" + texts[1]), buf: &buf}
	e, ok, err := s.quickEvent()
	if err != nil || !ok || s.pos != len(texts[0]) || e.Object != officeEvents(t)[0].Object {
		t.Fatalf("first event: ok %v, %v, pos %d of %d", ok, err, s.pos, len(texts[0]))
	}
	if err := s.want(',', "test"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.quickEvent(); err != nil || !ok || s.pos != len(*s.buf) {
		t.Fatalf("second event after space: ok %v, %v, pos %d of %d", ok, err, s.pos, len(*s.buf))
	}

	h := strings.Repeat("0123456789abcdef", 4)
	trap := `{"attrs":{"a":1,"hash":"` + h + `"},"hash":"` + h + `"}`
	buf = buf[:0]
	s = batchScanner{r: strings.NewReader(trap), buf: &buf}
	if _, ok, err := s.quickEvent(); err != nil || ok || s.pos != 0 {
		t.Fatalf("hash inside attrs: ok %v, %v, pos %d", ok, err, s.pos)
	}
	evs, err := DecodeBatch([]byte(`{"events":[` + trap + `]}`))
	if err != nil || len(evs) != 1 || evs[0].Attrs["hash"] != h || evs[0].Hash != h {
		t.Fatalf("decoded the scanner's way: %+v, %v", evs, err)
	}
}

// TestSpecial: the eight-bytes-at-a-time scan finds what a byte loop
// finds, for every byte value at every position of a word and the tail,
// and in words that mix the bytes where a borrow could go wrong.
func TestSpecial(t *testing.T) {
	naive := func(s string) int {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == 0xe2 {
				return i
			}
		}
		return len(s)
	}
	base := []byte(strings.Repeat("a", 11))
	for _, fill := range []byte{'a', 0x20, 0x7f, 0x80, 0xe3, 0xff} {
		for i := range base {
			base[i] = fill
		}
		for pos := range base {
			for c := 0; c < 256; c++ {
				b := bytes.Clone(base)
				b[pos] = byte(c)
				if got, want := special(string(b)), naive(string(b)); got != want {
					t.Fatalf("special(%q) = %d, want %d", b, got, want)
				}
			}
		}
	}
	edge := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0x9f, 0xa0, 0xe1, 0xe2, 0xe3, 0xff}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		b := make([]byte, rng.IntN(20))
		for i := range b {
			b[i] = edge[rng.IntN(len(edge))]
		}
		if got, want := special(string(b)), naive(string(b)); got != want {
			t.Fatalf("special(%q) = %d, want %d", b, got, want)
		}
	}
}
