package event

import (
	"testing"
	"unicode/utf8"
)

func TestEscapeBytesRoundTrip(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/data/名簿.csv", "/data/名簿.csv"},
		{"/data/\x8c\xda\x8b\x71.csv", `/data/\x8c` + "\u068bq.csv"}, // \xda\x8b is valid UTF-8
		{"/data/\x82\xa0.csv", `/data/\x82\xa0.csv`},
		{`C:\a\x8c`, `C:\\a\\x8c`}, // a literal "\x8c" cannot pass for a byte
		{"\xff\\\xfe", `\xff\\\xfe`},
		{"", ""},
	} {
		got := EscapeBytes(c.in)
		if got != c.want || !utf8.ValidString(got) {
			t.Errorf("EscapeBytes(%q) = %q, want %q", c.in, got, c.want)
		}
		back, err := UnescapeBytes(got)
		if err != nil || back != c.in {
			t.Errorf("UnescapeBytes(%q) = %q, %v, want %q", got, back, err, c.in)
		}
	}
	for _, bad := range []string{`a\`, `\x8`, `\xzz`, `\n`} {
		if _, err := UnescapeBytes(bad); err == nil {
			t.Errorf("UnescapeBytes(%q) accepted", bad)
		}
	}
}
