package api

import (
	"encoding/json"
	"strconv"
	"strings"
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
func parseEvent(src string, e *event.Event) bool {
	p := eventParser{s: src}
	if !p.object(e) {
		return false
	}
	p.ws()
	return p.i == len(p.s)
}

type eventParser struct {
	s string
	i int
}

func (p *eventParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
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
		return true
	}
	seen := 0
	for {
		p.ws()
		key, ok := p.plainKey()
		if !ok || !p.next(':') {
			return false
		}
		p.ws()
		var bit int
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
		case "prev":
			bit, ok = fPrev, p.str(&e.Prev)
		case "hash":
			bit, ok = fHash, p.str(&e.Hash)
		default:
			return false // unknown, or a case-folded match: encoding/json decides
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if p.next(',') {
			continue
		}
		return p.next('}')
	}
}

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
	j := start + quoteOrEscapeString(p.s[start:])
	for _, c := range []byte(p.s[start:j]) {
		if c < 0x20 {
			return "", false
		}
	}
	switch {
	case j >= len(p.s):
		return "", false
	case p.s[j] == '"':
		p.i = j + 1
		return p.s[start:j], true
	default:
		return p.escaped(start, j)
	}
}

// escaped finishes a string that has an escape at j.
func (p *eventParser) escaped(start, j int) (string, bool) {
	b := make([]byte, 0, j-start+32)
	b = append(b, p.s[start:j]...)
	for j < len(p.s) {
		c := p.s[j]
		switch {
		case c == '"':
			p.i = j + 1
			// b is not touched again: the string shares its bytes
			// rather than copying them (as strings.Builder does).
			return unsafe.String(unsafe.SliceData(b), len(b)), true
		case c < 0x20:
			return "", false
		case c != '\\':
			// Copy the run up to the next quote or escape at once,
			// refusing control characters in it as the loop would.
			k := j + 1 + quoteOrEscapeString(p.s[j+1:])
			for _, r := range []byte(p.s[j:k]) {
				if r < 0x20 {
					return "", false
				}
			}
			b = append(b, p.s[j:k]...)
			j = k
			continue
		}
		if j+1 >= len(p.s) {
			return "", false
		}
		switch c := p.s[j+1]; c {
		case '"', '\\', '/':
			b = append(b, c)
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
			b = utf8.AppendRune(b, rune(r))
			j += 6
			continue
		default:
			return "", false
		}
		j += 2
	}
	return "", false
}

// quoteOrEscapeString is quoteOrEscape for a string.
func quoteOrEscapeString(s string) int {
	q := strings.IndexByte(s, '"')
	if q < 0 {
		q = len(s)
	}
	if k := strings.IndexByte(s[:q], '\\'); k >= 0 {
		return k
	}
	return q
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
	for {
		p.ws()
		k, ok := p.stringValue()
		if !ok || !p.next(':') {
			return nil, false
		}
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
