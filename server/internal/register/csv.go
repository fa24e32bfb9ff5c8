package register

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/transform"
)

// MaxCSVBytes bounds an imported file.
const MaxCSVBytes = 8 << 20

// Languages and encodings of exported CSV.
const (
	LangJA   = "ja"
	LangEN   = "en"
	EncUTF8  = "utf8" // with BOM, which Excel needs to read UTF-8
	EncSJIS  = "sjis" // CP932, what Japanese Excel writes by default
	utf8BOM  = "\ufeff"
	listSep  = "\n" // list cells hold one item per line (Alt+Enter in Excel)
	hostSep  = ":"  // a location cell line is HOST:FOLDER
	maxCells = 64
)

// piColumns are the CSV columns of the personal-information register, in
// export order, with their English and Japanese headers.
var piColumns = []struct{ en, ja string }{
	{"id", "管理番号"},
	{"status", "状態"},
	{"name", "個人情報の名称"},
	{"contents", "項目"},
	{"purpose", "利用目的"},
	{"record_count", "件数"},
	{"sensitive", "要配慮個人情報"},
	{"medium", "媒体"},
	{"locations", "保管場所"},
	{"owner", "管理責任者"},
	{"department", "部署"},
	{"access", "アクセス権者"},
	{"acquisition", "取得方法"},
	{"outsourcee", "委託先"},
	{"retention", "保管期間"},
	{"disposal_method", "廃棄方法"},
	{"risk_notes", "リスク"},
	{"last_reviewed", "最終見直し日"},
}

var mediumJA = map[string]string{"paper": "紙", "electronic": "電子", "both": "紙・電子"}
var statusJA = map[string]string{StatusActive: "有効", StatusRetired: "廃止"}

func fromJA(m map[string]string, v string) string {
	for en, ja := range m {
		if v == ja {
			return en
		}
	}
	return v
}

// ExportPICSV writes entries as CSV that Excel opens: CRLF line ends,
// headers in lang (ja or en), UTF-8 with a BOM or CP932.
func ExportPICSV(w io.Writer, entries []*PIEntry, lang, enc string) error {
	if lang != LangJA && lang != LangEN {
		return fmt.Errorf("register: %w: lang %q is not ja or en", ErrInvalid, lang)
	}
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	cw.UseCRLF = true
	head := make([]string, len(piColumns))
	for i, c := range piColumns {
		head[i] = c.en
		if lang == LangJA {
			head[i] = c.ja
		}
	}
	_ = cw.Write(head)
	for _, e := range entries {
		locs := make([]string, len(e.Locations))
		for i, l := range e.Locations {
			locs[i] = l.Host + hostSep + l.Folder
		}
		sens, medium, status := "no", e.Medium, e.Status
		if e.Sensitive {
			sens = "yes"
		}
		if lang == LangJA {
			sens = map[bool]string{true: "有", false: "無"}[e.Sensitive]
			medium = mapOr(mediumJA, e.Medium)
			status = mapOr(statusJA, e.Status)
		}
		_ = cw.Write([]string{e.ID, status, e.Name, e.Contents, e.Purpose, strconv.Itoa(e.RecordCount), sens, medium,
			strings.Join(locs, listSep), e.Owner, e.Department, strings.Join(e.Access, listSep), e.Acquisition,
			e.Outsourcee, e.Retention, e.DisposalMethod, e.RiskNotes, e.LastReviewed})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("register: csv: %w", err)
	}
	switch enc {
	case EncUTF8:
		if _, err := io.WriteString(w, utf8BOM); err != nil {
			return fmt.Errorf("register: csv: %w", err)
		}
		_, err := w.Write(buf.Bytes())
		if err != nil {
			return fmt.Errorf("register: csv: %w", err)
		}
		return nil
	case EncSJIS:
		b, _, err := transform.Bytes(japanese.ShiftJIS.NewEncoder(), buf.Bytes())
		if err != nil {
			return fmt.Errorf("register: csv: a character has no Shift_JIS (CP932) form, export as utf8: %w", err)
		}
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("register: csv: %w", err)
		}
		return nil
	}
	return fmt.Errorf("register: %w: encoding %q is not utf8 or sjis", ErrInvalid, enc)
}

func mapOr(m map[string]string, k string) string {
	if v, ok := m[k]; ok {
		return v
	}
	return k
}

// DecodeText turns an uploaded file into UTF-8: a UTF-8 BOM or valid UTF-8
// is taken as UTF-8, anything else is read as CP932 (Shift_JIS as Excel
// writes it).
func DecodeText(b []byte) ([]byte, error) {
	if rest, ok := bytes.CutPrefix(b, []byte(utf8BOM)); ok {
		if !utf8.Valid(rest) {
			return nil, fmt.Errorf("register: %w: file starts with a UTF-8 BOM but is not UTF-8", ErrInvalid)
		}
		return rest, nil
	}
	if utf8.Valid(b) {
		return b, nil
	}
	out, _, err := transform.Bytes(japanese.ShiftJIS.NewDecoder(), b)
	if err != nil {
		return nil, fmt.Errorf("register: %w: file is neither UTF-8 nor Shift_JIS (CP932): %w", ErrInvalid, err)
	}
	return out, nil
}

// ParsePICSV reads a personal-information register CSV (UTF-8 with or
// without BOM, or CP932; Japanese or English headers in any order). It
// returns the rows and every cell it could not read, each with its
// spreadsheet row; it does not validate the entries (ImportPI does).
func ParsePICSV(b []byte) ([]ImportRow, ValidationError, error) {
	if len(b) > MaxCSVBytes {
		return nil, nil, fmt.Errorf("register: %w: file is %d bytes, limit %d", ErrInvalid, len(b), MaxCSVBytes)
	}
	text, err := DecodeText(b)
	if err != nil {
		return nil, nil, err
	}
	cr := csv.NewReader(bytes.NewReader(text))
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("register: %w: empty file", ErrInvalid)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("register: %w: header row: %w", ErrInvalid, err)
	}
	if len(head) > maxCells {
		return nil, nil, fmt.Errorf("register: %w: header has %d columns, at most %d", ErrInvalid, len(head), maxCells)
	}
	col := map[string]int{}
	var errs ValidationError
	for i, h := range head {
		h = strings.TrimSpace(h)
		found := ""
		for _, c := range piColumns {
			if strings.EqualFold(h, c.en) || h == c.ja {
				found = c.en
			}
		}
		switch {
		case found == "" && h == "":
			continue // trailing empty columns Excel sometimes adds
		case found == "":
			errs = append(errs, FieldError{Row: 1, Field: "header", Msg: fmt.Sprintf("column %d: unknown column %q", i+1, h)})
		case col[found] != 0:
			errs = append(errs, FieldError{Row: 1, Field: "header", Msg: fmt.Sprintf("column %q appears twice", h)})
		default:
			col[found] = i + 1 // 1-based so that 0 means absent
		}
	}
	for _, need := range []string{"id", "name"} {
		if col[need] == 0 {
			errs = append(errs, FieldError{Row: 1, Field: "header", Msg: "missing column " + need})
		}
	}
	if len(errs) > 0 {
		return nil, errs, nil
	}
	var rows []ImportRow
	for rowNum := 2; ; rowNum++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("register: %w: row %d: %w", ErrInvalid, rowNum, err)
		}
		if blank(rec) {
			continue
		}
		cell := func(name string) string {
			if i := col[name]; i > 0 && i <= len(rec) {
				return strings.TrimSpace(rec[i-1])
			}
			return ""
		}
		bad := func(field, format string, a ...any) {
			errs = append(errs, FieldError{Row: rowNum, Field: field, Msg: fmt.Sprintf(format, a...)})
		}
		e := &PIEntry{Meta: Meta{ID: cell("id"), Status: fromJA(statusJA, cell("status"))},
			Name: cell("name"), Contents: cell("contents"), Purpose: cell("purpose"),
			Medium: fromJA(mediumJA, cell("medium")), Owner: cell("owner"), Department: cell("department"),
			Acquisition: cell("acquisition"), Outsourcee: cell("outsourcee"), Retention: cell("retention"),
			DisposalMethod: cell("disposal_method"), RiskNotes: cell("risk_notes"), LastReviewed: cell("last_reviewed")}
		if s := cell("record_count"); s != "" {
			n, err := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
			if err != nil {
				bad("record_count", "%q is not a whole number", s)
			}
			e.RecordCount = n
		}
		switch s := strings.ToLower(cell("sensitive")); s {
		case "", "no", "false", "0", "無", "なし", "いいえ", "×":
		case "yes", "true", "1", "有", "あり", "はい", "○":
			e.Sensitive = true
		default:
			bad("sensitive", "%q is not yes/no (有/無)", s)
		}
		for l := range strings.Lines(cell("locations")) {
			l = strings.TrimSpace(l)
			if l == "" {
				continue
			}
			h, f, ok := strings.Cut(l, hostSep)
			if !ok {
				bad("locations", "%q is not HOST:FOLDER", l)
				continue
			}
			e.Locations = append(e.Locations, Location{Host: strings.TrimSpace(h), Folder: strings.TrimSpace(f)})
		}
		for a := range strings.Lines(cell("access")) {
			if a = strings.TrimSpace(a); a != "" {
				e.Access = append(e.Access, a)
			}
		}
		rows = append(rows, ImportRow{Row: rowNum, Entry: e})
	}
	return rows, errs, nil
}

func blank(rec []string) bool {
	for _, c := range rec {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}
