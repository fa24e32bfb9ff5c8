// Package csvcell writes the cells of every CSV file Mamori produces so that
// no spreadsheet runs one as a formula (CSV injection, OWASP "CSV
// Injection"), and reads them back to the same text.
//
// The rule: a cell whose text starts with = + - @ tab or carriage return
// gets a leading apostrophe, which spreadsheets show as text; every cell
// is quoted (RFC 4180). Unescape undoes exactly that, so an import reads
// its own exports back unchanged, apostrophes of the original included.
package csvcell

import (
	"bufio"
	"io"
	"strings"
)

// triggers are the first characters that make a spreadsheet evaluate a cell.
func trigger(c byte) bool {
	return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r'
}

// needsPrefix reports whether s starts with a trigger, after any run of
// apostrophes (so that a text that itself starts with ' and a trigger keeps
// its apostrophe through Escape and Unescape).
func needsPrefix(s string) bool {
	t := strings.TrimLeft(s, "'")
	return t != "" && trigger(t[0])
}

// Escape returns s as a cell spreadsheets show as text.
func Escape(s string) string {
	if needsPrefix(s) {
		return "'" + s
	}
	return s
}

// Unescape is the inverse of Escape: Unescape(Escape(s)) == s for every s.
func Unescape(s string) string {
	if strings.HasPrefix(s, "'") && needsPrefix(s[1:]) {
		return s[1:]
	}
	return s
}

// cellText quotes a cell's text for inside double quotes, with CRLF for
// every line break as Excel writes them (encoding/csv's reader turns them
// back into "\n").
var cellText = strings.NewReplacer(`"`, `""`, "\r\n", "\r\n", "\n", "\r\n")

// Writer writes records of escaped, quoted cells with CRLF line ends
// (Excel's). Check Flush's error.
type Writer struct {
	w *bufio.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriter(w)} }

// Write writes one record.
func (w *Writer) Write(record []string) error {
	for i, c := range record {
		if i > 0 {
			w.w.WriteByte(',')
		}
		w.w.WriteByte('"')
		w.w.WriteString(cellText.Replace(Escape(c)))
		w.w.WriteByte('"')
	}
	_, err := w.w.WriteString("\r\n")
	return err
}

// Flush writes any buffered data and returns the first write error.
func (w *Writer) Flush() error { return w.w.Flush() }
