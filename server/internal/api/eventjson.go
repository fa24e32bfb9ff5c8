package api

import (
	"encoding/json"
	"math/bits"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/mamori/mamori/shared/event"
)

// parseEvent is the fast path of the batch decoder: it decodes one event's
// JSON text src (complete, valid UTF-8) into e by hand, without reflection,
// and reports false for anything it is not sure to decode exactly as
// encoding/json would (keys in another case or escaped, a key given twice,
// null or mistyped fields, lone surrogates, times not in the canonical
// form it parses itself, syntax errors). The caller then decodes the same
// text with encoding/json, which gives the result or the error, so the
// fast path never changes what is accepted (TestParseEventMatchesJSON,
// FuzzParseEventMatchesJSON). Strings without escapes are slices of src:
// one allocation for the event's text instead of one per field.
//
// Where src is already the event's canonical encoding followed by its hash
// (what agents send), it tells e so (event.SetCanonical) and the store
// hashes src as it is instead of encoding the event again
// (FuzzCanonicalClaim holds every such claim to event.Canonical).
func parseEvent(src string, e *event.Event) bool {
	p, ok := parse(src, e)
	if ok && !p.odd {
		e.SetCanonical(src[:p.hashAt], src[p.attrsAt:p.attrsEnd])
	}
	return ok
}

// parse is parseEvent without telling e; p says what it found.
func parse(src string, e *event.Event) (p eventParser, ok bool) {
	p.s = src
	if !p.object(e) {
		return p, false
	}
	p.ws()
	return p, p.i == len(p.s)
}

type eventParser struct {
	s string
	i int

	// odd is set at the first byte the canonical encoding would not have
	// written as it is: space, another key order, an escape it writes
	// otherwise, a field it leaves out. Until then the text is canonical;
	// hashAt is where its hash field starts and attrsAt:attrsEnd its attrs.
	odd                       bool
	hashAt, attrsAt, attrsEnd int

	text []byte // the unescaped text of the event's escaped strings (escaped)
}

func (p *eventParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
			p.odd = true
		default:
			return
		}
	}
}

// next skips space and reports whether the next byte is c, consuming it.
func (p *eventParser) next(c byte) bool {
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// Bits of the fields seen, to leave a repeated key to encoding/json.
const (
	fAgent = 1 << iota
	fSeq
	fTime
	fControl
	fType
	fSeverity
	fUser
	fProcess
	fObject
	fRegisterID
	fAttrs
	fPrev
	fHash
)

func (p *eventParser) object(e *event.Event) bool {
	if !p.next('{') {
		return false
	}
	if p.next('}') {
		p.odd = true // canonical writes some fields always
		return true
	}
	seen := 0
	for {
		p.ws()
		keyAt := p.i
		key, ok := p.plainKey()
		if !ok || !p.next(':') {
			return false
		}
		p.ws()
		var bit int
		valAt := p.i
		switch key {
		case "agent":
			bit, ok = fAgent, p.str(&e.Agent)
		case "seq":
			bit, ok = fSeq, p.uint(&e.Seq)
		case "time":
			bit, ok = fTime, p.time(&e.Time)
		case "control":
			bit, ok = fControl, p.str(&e.Control)
		case "type":
			bit, ok = fType, p.str(&e.Type)
		case "severity":
			var s string
			bit, ok = fSeverity, p.str(&s)
			e.Severity = event.Severity(s)
		case "user":
			bit, ok = fUser, p.str(&e.User)
		case "process":
			bit, ok = fProcess, p.str(&e.Process)
		case "object":
			bit, ok = fObject, p.str(&e.Object)
		case "register_id":
			bit, ok = fRegisterID, p.str(&e.RegisterID)
		case "attrs":
			bit, ok = fAttrs, p.attrs(&e.Attrs)
			p.attrsAt, p.attrsEnd = valAt, p.i
			if len(e.Attrs) == 0 {
				p.odd = true // canonical leaves out null and empty attrs
			}
		case "prev":
			bit, ok = fPrev, p.str(&e.Prev)
		case "hash":
			bit, ok = fHash, p.str(&e.Hash)
			p.hashAt = keyAt - 1 // its comma
		default:
			return false // unknown, or a case-folded match: encoding/json decides
		}
		if !ok || seen&bit != 0 {
			return false
		}
		if bit&fOptional != 0 && p.i == valAt+2 {
			p.odd = true // "": canonical leaves it out
		}
		if seen >= bit {
			p.odd = true // canonical writes the fields in the order of their bits
		}
		seen |= bit
		if p.next(',') {
			continue
		}
		if seen&fCanonical != fCanonical {
			p.odd = true // canonical writes these, and the hash comes last
		}
		return p.next('}')
	}
}

const (
	// fOptional are the fields canonical leaves out when empty.
	fOptional = fUser | fProcess | fObject | fRegisterID
	// fCanonical are the fields canonical always writes, and the hash.
	fCanonical = fAgent | fSeq | fTime | fControl | fType | fSeverity | fPrev | fHash
)

// plainKey reads a key without escapes.
func (p *eventParser) plainKey() (string, bool) {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false
	}
	for j := p.i + 1; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == '"':
			k := p.s[p.i+1 : j]
			p.i = j + 1
			return k, true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// str reads a JSON string (not null) into *v, as encoding/json unquotes it.
func (p *eventParser) str(v *string) bool {
	s, ok := p.stringValue()
	if ok {
		*v = s
	}
	return ok
}

func (p *eventParser) stringValue() (string, bool) {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	for j := start; ; j++ {
		j += special(p.s[j:])
		if j >= len(p.s) {
			return "", false
		}
		switch c := p.s[j]; c {
		case '"':
			p.i = j + 1
			return p.s[start:j], true
		case '\\':
			return p.escaped(start, j)
		case 0xe2:
			p.lineSep(j)
		default:
			return "", false // a control character
		}
	}
}

// special returns the index of s's first byte that ends a run of plain
// string text: '"', '\\', a control character, or 0xe2 (which starts U+2028
// and U+2029); len(s) if none. It reads eight bytes at a time: a byte below
// n makes x - n*0x01.. borrow into its top bit (for n <= 128), and so does a
// zero byte of x^c*0x01.. with n = 1; a borrow reaches only the bytes after
// it, so the lowest flagged byte is the first match.
func special(s string) int {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		q, b, e := x^('"'*ones), x^('\\'*ones), x^(0xe2*ones)
		if m := ((x-0x20*ones)&^x | (q-ones)&^q | (b-ones)&^b | (e-ones)&^e) & tops; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == 0xe2 {
			return i
		}
	}
	return len(s)
}

// lineSep notes U+2028 or U+2029 written unescaped at j, which the
// canonical encoding escapes.
func (p *eventParser) lineSep(j int) {
	if j+2 < len(p.s) && p.s[j+1] == 0x80 && (p.s[j+2] == 0xa8 || p.s[j+2] == 0xa9) {
		p.odd = true
	}
}

// escaped finishes a string that starts at start and has an escape at j.
// Its text goes into p.text, one buffer for the event's escaped strings (an
// office event has three or four: Windows paths, DOMAIN\user). A string
// is never written again once made, so a buffer that grows leaves the
// earlier strings in the old one.
func (p *eventParser) escaped(start, j int) (string, bool) {
	if p.text == nil {
		p.text = make([]byte, 0, 256)
	}
	at := len(p.text)
	b := append(p.text, p.s[start:j]...)
	for {
		k := j + special(p.s[j:])
		if k >= len(p.s) {
			return "", false
		}
		b = append(b, p.s[j:k]...)
		j = k
		switch c := p.s[j]; c {
		case '"':
			p.i, p.text = j+1, b
			return unsafe.String(unsafe.SliceData(b[at:]), len(b)-at), true
		case 0xe2:
			p.lineSep(j)
			b = append(b, c)
			j++
			continue
		case '\\':
		default:
			return "", false // a control character
		}
		if j+1 >= len(p.s) {
			return "", false
		}
		switch c := p.s[j+1]; c {
		case '"', '\\':
			b = append(b, c)
		case '/':
			b = append(b, c)
			p.odd = true
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			if j+6 > len(p.s) {
				return "", false
			}
			r, err := strconv.ParseUint(p.s[j+2:j+6], 16, 32)
			if err != nil || (r >= 0xd800 && r < 0xe000) || !isHex4(p.s[j+2:j+6]) {
				return "", false // surrogates: encoding/json's pairing rules decide
			}
			if !canonicalEscape(rune(r), p.s[j+2:j+6]) {
				p.odd = true
			}
			b = utf8.AppendRune(b, rune(r))
			j += 6
			continue
		default:
			return "", false
		}
		j += 2
	}
}

// canonicalEscape reports whether \u followed by hex4 is how the canonical
// encoding writes r: control characters without a short escape, as
// lowercase hex, and U+2028 and U+2029.
func canonicalEscape(r rune, hex4 string) bool {
	switch r {
	case '\b', '\f', '\n', '\r', '\t':
		return false
	case '\u2028', '\u2029':
		return true
	}
	const digits = "0123456789abcdef"
	return r < 0x20 && hex4 == string([]byte{'0', '0', digits[r>>4], digits[r&0xf]})
}

func isHex4(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// uint reads a non-negative integer literal, as encoding/json fills a uint64.
func (p *eventParser) uint(v *uint64) bool {
	j := p.i
	for j < len(p.s) && '0' <= p.s[j] && p.s[j] <= '9' {
		j++
	}
	lit := p.s[p.i:j]
	if lit == "" || len(lit) > 1 && lit[0] == '0' {
		return false
	}
	if j < len(p.s) {
		switch p.s[j] {
		case '.', 'e', 'E':
			return false
		}
	}
	n, err := strconv.ParseUint(lit, 10, 64)
	if err != nil {
		return false
	}
	*v, p.i = n, j
	return true
}

// time reads the canonical form (RFC 3339, UTC "Z", 0-9 fraction digits)
// by hand; any other form is left to time.Time's own UnmarshalJSON, which
// is what encoding/json calls.
func (p *eventParser) time(v *time.Time) bool {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return false
	}
	end := p.i + 1
	for end < len(p.s) && p.s[end] != '"' {
		if p.s[end] == '\\' {
			return false
		}
		end++
	}
	if end >= len(p.s) {
		return false
	}
	t, ok := parseCanonicalTime(p.s[p.i+1 : end])
	if !ok {
		if err := t.UnmarshalJSON([]byte(p.s[p.i : end+1])); err != nil {
			return false
		}
		p.odd = true
	} else if ts := p.s[p.i+1 : end]; len(ts) > len("2006-01-02T15:04:05Z") && ts[len(ts)-2] == '0' {
		p.odd = true // a fraction's trailing zero: canonical trims it
	}
	*v, p.i = t, end+1
	return true
}

// parseCanonicalTime parses YYYY-MM-DDTHH:MM:SS[.fffffffff]Z.
func parseCanonicalTime(s string) (time.Time, bool) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[len(s)-1] != 'Z' {
		return time.Time{}, false
	}
	num := func(a, b int) int {
		n := 0
		for i := a; i < b; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(0, 4), num(5, 7), num(8, 10)
	hour, minute, sec := num(11, 13), num(14, 16), num(17, 19)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	if day > daysIn(time.Month(month), year) {
		return time.Time{}, false
	}
	nsec := 0
	if frac := s[19 : len(s)-1]; frac != "" {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		if nsec = num(20, len(s)-1); nsec < 0 {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			nsec *= 10
		}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int(m-1)%7%2
}

// maxAttrsDepth bounds the fast path's recursion; deeper attrs go to
// encoding/json (and are refused by the size limits anyway).
const maxAttrsDepth = 32

// attrs reads the attrs object as event.Attrs.UnmarshalJSON does: numbers
// as json.Number, objects as map[string]any, arrays as []any, null as a nil
// map.
func (p *eventParser) attrs(v *event.Attrs) bool {
	if p.i < len(p.s) && p.s[p.i] == 'n' {
		if !p.literal("null") {
			return false
		}
		*v = nil
		return true
	}
	m, ok := p.mapValue(0)
	if ok {
		*v = m
	}
	return ok
}

func (p *eventParser) mapValue(depth int) (map[string]any, bool) {
	if depth > maxAttrsDepth || !p.next('{') {
		return nil, false
	}
	m := make(map[string]any, 4)
	if p.next('}') {
		return m, true
	}
	prev := ""
	for first := true; ; first = false {
		p.ws()
		k, ok := p.stringValue()
		if !ok || !p.next(':') {
			return nil, false
		}
		if !first && k <= prev {
			p.odd = true // canonical sorts the keys (and has each once)
		}
		prev = k
		p.ws()
		x, ok := p.value(depth + 1)
		if !ok {
			return nil, false
		}
		m[k] = x
		if p.next(',') {
			continue
		}
		return m, p.next('}')
	}
}

func (p *eventParser) value(depth int) (any, bool) {
	if p.i >= len(p.s) {
		return nil, false
	}
	switch c := p.s[p.i]; {
	case c == '"':
		return p.stringValue()
	case c == '{':
		return p.mapValue(depth)
	case c == '[':
		if depth > maxAttrsDepth {
			return nil, false
		}
		p.i++
		a := []any{}
		if p.next(']') {
			return a, true
		}
		for {
			p.ws()
			x, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			a = append(a, x)
			if p.next(',') {
				continue
			}
			return a, p.next(']')
		}
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	}
	return nil, false
}

func (p *eventParser) literal(lit string) bool {
	if len(p.s)-p.i < len(lit) || p.s[p.i:p.i+len(lit)] != lit {
		return false
	}
	p.i += len(lit)
	return true
}

// number reads a JSON number literal as a json.Number.
func (p *eventParser) number() (any, bool) {
	j := p.i
	digits := func() int {
		k := j
		for j < len(p.s) && '0' <= p.s[j] && p.s[j] <= '9' {
			j++
		}
		return j - k
	}
	if j < len(p.s) && p.s[j] == '-' {
		j++
	}
	switch n := digits(); {
	case n == 0, n > 1 && p.s[j-n] == '0':
		return nil, false
	}
	if j < len(p.s) && p.s[j] == '.' {
		j++
		if digits() == 0 {
			return nil, false
		}
	}
	if j < len(p.s) && (p.s[j] == 'e' || p.s[j] == 'E') {
		j++
		if j < len(p.s) && (p.s[j] == '+' || p.s[j] == '-') {
			j++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	n := json.Number(p.s[p.i:j])
	p.i = j
	return n, true
}
