package csvcell

import (
	"bytes"
	"encoding/csv"
	"testing"
)

var cells = []string{"", "plain", "=HYPERLINK(\"http://evil.example\",\"x\")", "+1", "-2", "@SUM(A1)", "\t=1", "\r=1",
	"'=x", "''=x", "'plain", "'", "a\"b", "a,b\nc", "顧客=台帳", " =x", "=", "'\t"}

func TestEscapeNeutralisesAndRoundTrips(t *testing.T) {
	for _, s := range cells {
		e := Escape(s)
		if e != "" && trigger(e[0]) {
			t.Errorf("Escape(%q) = %q starts with a formula character", s, e)
		}
		if got := Unescape(e); got != s {
			t.Errorf("Unescape(Escape(%q)) = %q", s, got)
		}
	}
}

func TestWriterReadsBackWithEncodingCSV(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	if err := w.Write(cells); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	rec, err := csv.NewReader(&b).Read()
	if err != nil {
		t.Fatal(err)
	}
	for i := range cells {
		if rec[i] != Escape(cells[i]) {
			t.Errorf("cell %d: %q, want %q", i, rec[i], Escape(cells[i]))
		}
		if Unescape(rec[i]) != cells[i] {
			t.Errorf("cell %d does not read back: %q", i, rec[i])
		}
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range cells {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if e != "" && trigger(e[0]) {
			t.Fatalf("Escape(%q) = %q", s, e)
		}
		if Unescape(e) != s {
			t.Fatalf("round trip of %q", s)
		}
	})
}
