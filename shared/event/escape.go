package event

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// PathEncodingEscaped is the value of the "path_encoding" attr of an event
// whose paths are written with EscapeBytes: a file name on disk is bytes
// (Linux) and need not be UTF-8, which an event string must be.
const PathEncodingEscaped = "escaped"

// EscapeBytes writes s as valid UTF-8, reversibly: each byte that is not
// part of valid UTF-8 becomes \xNN (lower-case hex) and a backslash becomes
// \\; everything else is kept. UnescapeBytes gives s back. The escape is
// only unambiguous where the reader knows it was applied (an attr says so),
// since a valid string passes through with its backslashes doubled.
func EscapeBytes(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteByte("0123456789abcdef"[s[i]>>4])
			b.WriteByte("0123456789abcdef"[s[i]&0xf])
		case r == '\\':
			b.WriteString(`\\`)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// UnescapeBytes undoes EscapeBytes.
func UnescapeBytes(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case i+3 < len(s) && s[i+1] == 'x':
			v, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				return "", fmt.Errorf("event: bad \\x escape at byte %d: %w", i, err)
			}
			b.WriteByte(byte(v))
			i += 3
		default:
			return "", fmt.Errorf("event: lone backslash at byte %d", i)
		}
	}
	return b.String(), nil
}
