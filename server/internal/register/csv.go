package register

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/transform"
	"golang.org/x/text/width"

	"github.com/mamori/mamori/server/internal/csvcell"
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

// column is one CSV column of a register: its headers and how a cell is
// written from an entry and read into one. set returns "" or what is wrong
// with the cell; get's ja asks for Japanese enum and yes/no values.
type column struct {
	en, ja string
	get    func(e Entry, ja bool) string
	set    func(e Entry, cell string) string
}

// csvSchema is one register's CSV: its columns in export order and the
// columns a file must have.
type csvSchema struct {
	cols     []column
	required []string
}

// statusJA names every status in Japanese; the values do not collide
// across registers, so one table serves all four.
var statusJA = map[string]string{StatusActive: "有効", StatusRetired: "廃止", StatusLost: "紛失",
	StatusDisposed: "廃棄済", StatusRequested: "申請中", StatusApproved: "承認", StatusDenied: "却下",
	StatusReturned: "返却済"}

var mediumJA = map[string]string{"paper": "紙", "electronic": "電子", "both": "紙・電子"}

// Column constructors. Each takes an accessor for the field of entry type
// T the column holds, so a register's CSV is a table, not code.

func textCol[T Entry](en, ja string, f func(T) *string) column {
	return column{en: en, ja: ja,
		get: func(e Entry, _ bool) string { return *f(e.(T)) },
		set: func(e Entry, s string) string { *f(e.(T)) = s; return "" }}
}

// dateCol holds a YYYY-MM-DD date. It also reads what Japanese Excel
// writes back for a date cell (2026/4/1) and the usual typed form
// (2026年4月1日), in full-width digits too; anything else is kept as given
// for validation to name.
func dateCol[T Entry](en, ja string, f func(T) *string) column {
	return column{en: en, ja: ja,
		get: func(e Entry, _ bool) string { return *f(e.(T)) },
		set: func(e Entry, s string) string {
			n := width.Fold.String(s)
			for _, l := range csvDateLayouts {
				if d, err := time.Parse(l, n); err == nil {
					s = d.Format(time.DateOnly)
					break
				}
			}
			*f(e.(T)) = s
			return ""
		}}
}

var csvDateLayouts = []string{time.DateOnly, "2006/1/2", "2006-1-2", "2006年1月2日"}

// periodCol holds a retention period (5y, 18m, indefinite). It also reads
// the Japanese an office writes: 5年, 18か月 (ヶ月, カ月, ケ月, ヵ月, 箇月),
// 無期限, 永年, 永久.
func periodCol[T Entry](en, ja string, f func(T) *string) column {
	return column{en: en, ja: ja,
		get: func(e Entry, _ bool) string { return *f(e.(T)) },
		set: func(e Entry, s string) string {
			n := strings.ReplaceAll(width.Fold.String(s), " ", "")
			switch {
			case n == "無期限" || n == "永年" || n == "永久":
				s = "indefinite"
			case strings.HasSuffix(n, "年") && allDigits(strings.TrimSuffix(n, "年")):
				s = strings.TrimSuffix(n, "年") + "y"
			default:
				for _, m := range []string{"か月", "ヶ月", "カ月", "ケ月", "ヵ月", "箇月"} {
					if num, ok := strings.CutSuffix(n, m); ok && allDigits(num) {
						s = num + "m"
					}
				}
			}
			*f(e.(T)) = s
			return ""
		}}
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// enumCol holds a code (status, medium) written in Japanese as jaNames say;
// an unknown value is kept as given for validation to name.
func enumCol[T Entry](en, ja string, f func(T) *string, jaNames map[string]string) column {
	return column{en: en, ja: ja,
		get: func(e Entry, inJA bool) string {
			v := *f(e.(T))
			if j, ok := jaNames[v]; ok && inJA {
				return j
			}
			return v
		},
		set: func(e Entry, s string) string {
			for code, j := range jaNames {
				if s == j {
					s = code
				}
			}
			*f(e.(T)) = s
			return ""
		}}
}

func statusCol() column {
	return enumCol("status", "状態", func(e Entry) *string { return &e.meta().Status }, statusJA)
}

func idCol() column {
	return textCol("id", "管理番号", func(e Entry) *string { return &e.meta().ID })
}

func yesNoCol[T Entry](en, ja string, f func(T) *bool) column {
	return column{en: en, ja: ja,
		get: func(e Entry, inJA bool) string {
			v := *f(e.(T))
			if inJA {
				return map[bool]string{true: "有", false: "無"}[v]
			}
			return map[bool]string{true: "yes", false: "no"}[v]
		},
		set: func(e Entry, s string) string {
			switch strings.ToLower(s) {
			case "", "no", "false", "0", "無", "なし", "いいえ", "×":
				*f(e.(T)) = false
			case "yes", "true", "1", "有", "あり", "はい", "○":
				*f(e.(T)) = true
			default:
				return fmt.Sprintf("%q is not yes/no (有/無)", s)
			}
			return ""
		}}
}

// listCol holds one item per line of the cell.
func listCol[T Entry](en, ja string, f func(T) *[]string) column {
	return column{en: en, ja: ja,
		get: func(e Entry, _ bool) string { return strings.Join(*f(e.(T)), listSep) },
		set: func(e Entry, s string) string {
			var out []string
			for l := range strings.Lines(s) {
				if l = strings.TrimSpace(l); l != "" {
					out = append(out, l)
				}
			}
			*f(e.(T)) = out
			return ""
		}}
}

// CSV time cells: RFC 3339 on export (Excel leaves it as text, so the
// offset survives); on import also the forms Excel turns a recognised
// date-time into, read in the server's time zone.
var csvTimeLayouts = []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006/1/2 15:04:05", "2006/1/2 15:04"}

func timeCol[T Entry](en, ja string, f func(T) *time.Time) column {
	return column{en: en, ja: ja,
		get: func(e Entry, _ bool) string {
			if t := *f(e.(T)); !t.IsZero() {
				return t.Format(time.RFC3339)
			}
			return ""
		},
		set: func(e Entry, s string) string {
			if s == "" {
				*f(e.(T)) = time.Time{}
				return ""
			}
			if t, err := time.Parse(time.RFC3339, s); err == nil {
				*f(e.(T)) = t
				return ""
			}
			for _, l := range csvTimeLayouts {
				if t, err := time.ParseInLocation(l, s, time.Local); err == nil {
					*f(e.(T)) = t
					return ""
				}
			}
			return fmt.Sprintf("%q is not a time (2026-11-02T09:00:00+09:00 or 2026/11/2 9:00)", s)
		}}
}

var schemas = map[Kind]*csvSchema{
	KindPI: {required: []string{"id", "name"}, cols: []column{
		idCol(),
		statusCol(),
		textCol("name", "個人情報の名称", func(e *PIEntry) *string { return &e.Name }),
		textCol("contents", "項目", func(e *PIEntry) *string { return &e.Contents }),
		textCol("purpose", "利用目的", func(e *PIEntry) *string { return &e.Purpose }),
		{en: "record_count", ja: "件数",
			get: func(e Entry, _ bool) string { return strconv.Itoa(e.(*PIEntry).RecordCount) },
			set: func(e Entry, s string) string {
				if s == "" {
					return ""
				}
				n, err := strconv.Atoi(strings.TrimSuffix(strings.ReplaceAll(width.Fold.String(s), ",", ""), "件"))
				if err != nil {
					return fmt.Sprintf("%q is not a whole number", s)
				}
				e.(*PIEntry).RecordCount = n
				return ""
			}},
		yesNoCol("sensitive", "要配慮個人情報", func(e *PIEntry) *bool { return &e.Sensitive }),
		enumCol("medium", "媒体", func(e *PIEntry) *string { return &e.Medium }, mediumJA),
		{en: "locations", ja: "保管場所",
			get: func(e Entry, _ bool) string {
				ls := e.(*PIEntry).Locations
				out := make([]string, len(ls))
				for i, l := range ls {
					out[i] = l.Host + hostSep + l.Folder
				}
				return strings.Join(out, listSep)
			},
			set: func(e Entry, s string) string {
				p := e.(*PIEntry)
				var bad []string
				for l := range strings.Lines(s) {
					if l = strings.TrimSpace(l); l == "" {
						continue
					}
					if strings.HasPrefix(l, `\\`) || strings.HasPrefix(l, "//") {
						// The agent on the server that holds the share
						// watches it, by its own local path.
						bad = append(bad, fmt.Sprintf(`"%s" is a network share: name the server that holds it and its folder there (FS01:D:\共有\顧客データ)`, l))
						continue
					}
					h, f, ok := strings.Cut(l, hostSep)
					if !ok {
						bad = append(bad, fmt.Sprintf("\"%s\" is not HOST:FOLDER (a paper record's place goes in paper_locations)", l))
						continue
					}
					p.Locations = append(p.Locations, Location{Host: strings.TrimSpace(h), Folder: strings.TrimSpace(f)})
				}
				return strings.Join(bad, "; ")
			}},
		listCol("paper_locations", "紙の保管場所", func(e *PIEntry) *[]string { return &e.PaperLocations }),
		textCol("owner", "管理責任者", func(e *PIEntry) *string { return &e.Owner }),
		textCol("department", "部署", func(e *PIEntry) *string { return &e.Department }),
		listCol("access", "アクセス権者", func(e *PIEntry) *[]string { return &e.Access }),
		textCol("acquisition", "取得方法", func(e *PIEntry) *string { return &e.Acquisition }),
		textCol("outsourcee", "委託先", func(e *PIEntry) *string { return &e.Outsourcee }),
		periodCol("retention", "保管期間", func(e *PIEntry) *string { return &e.Retention }),
		textCol("disposal_method", "廃棄方法", func(e *PIEntry) *string { return &e.DisposalMethod }),
		textCol("risk_notes", "リスク", func(e *PIEntry) *string { return &e.RiskNotes }),
		dateCol("last_reviewed", "最終見直し日", func(e *PIEntry) *string { return &e.LastReviewed }),
	}},
	KindMedia: {required: []string{"id", "serial"}, cols: []column{
		idCol(),
		statusCol(),
		dateCol("registered", "登録日", func(e *MediaEntry) *string { return &e.Registered }),
		textCol("product", "製品名", func(e *MediaEntry) *string { return &e.Product }),
		textCol("serial", "シリアル番号", func(e *MediaEntry) *string { return &e.Serial }),
		textCol("vendor_id", "ベンダーID", func(e *MediaEntry) *string { return &e.VendorID }),
		textCol("product_id", "製品ID", func(e *MediaEntry) *string { return &e.ProductID }),
		textCol("owner", "管理責任者", func(e *MediaEntry) *string { return &e.Owner }),
		yesNoCol("encrypted", "暗号化", func(e *MediaEntry) *bool { return &e.Encrypted }),
	}},
	KindApprovals: {required: []string{"id", "serial", "host", "from", "to"}, cols: []column{
		idCol(),
		statusCol(),
		textCol("requester", "申請者", func(e *Approval) *string { return &e.Requester }),
		textCol("serial", "媒体シリアル番号", func(e *Approval) *string { return &e.Serial }),
		textCol("host", "端末", func(e *Approval) *string { return &e.Host }),
		textCol("purpose", "持出し目的", func(e *Approval) *string { return &e.Purpose }),
		listCol("register_ids", "対象台帳番号", func(e *Approval) *[]string { return &e.RegisterIDs }),
		timeCol("from", "持出し開始", func(e *Approval) *time.Time { return &e.From }),
		timeCol("to", "持出し終了", func(e *Approval) *time.Time { return &e.To }),
		textCol("approver", "承認者", func(e *Approval) *string { return &e.Approver }),
		timeCol("decided", "承認日時", func(e *Approval) *time.Time { return &e.Decided }),
		textCol("result", "結果", func(e *Approval) *string { return &e.Result }),
	}},
	KindDisposals: {required: []string{"id", "item"}, cols: []column{
		idCol(),
		statusCol(),
		dateCol("date", "廃棄日", func(e *Disposal) *string { return &e.Date }),
		textCol("item", "廃棄対象", func(e *Disposal) *string { return &e.Item }),
		textCol("register_id", "台帳番号", func(e *Disposal) *string { return &e.RegisterID }),
		textCol("method", "廃棄方法", func(e *Disposal) *string { return &e.Method }),
		textCol("responsible", "廃棄責任者", func(e *Disposal) *string { return &e.Responsible }),
		textCol("certificate", "廃棄証明書", func(e *Disposal) *string { return &e.Certificate }),
	}},
}

func schemaOf(k Kind) (*csvSchema, error) {
	sc, ok := schemas[k]
	if !ok {
		return nil, fmt.Errorf("register: unknown register %q: %w", k, ErrInvalid)
	}
	return sc, nil
}

// CSVHeaders returns register k's CSV headers in export order, in lang.
func CSVHeaders(k Kind, lang string) ([]string, error) {
	sc, err := schemaOf(k)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(sc.cols))
	for i, c := range sc.cols {
		out[i] = c.en
		if lang == LangJA {
			out[i] = c.ja
		}
	}
	return out, nil
}

// ExportCSV writes entries of register k as CSV that Excel opens: CRLF
// line ends, headers in lang (ja or en), UTF-8 with a BOM or CP932.
func ExportCSV(w io.Writer, k Kind, entries []Entry, lang, enc string) error {
	if lang != LangJA && lang != LangEN {
		return fmt.Errorf("register: %w: lang %q is not ja or en", ErrInvalid, lang)
	}
	if enc != EncUTF8 && enc != EncSJIS {
		return fmt.Errorf("register: %w: encoding %q is not utf8 or sjis", ErrInvalid, enc)
	}
	sc, err := schemaOf(k)
	if err != nil {
		return err
	}
	head, _ := CSVHeaders(k, lang)
	var buf bytes.Buffer
	cw := csvcell.NewWriter(&buf) // every cell defused and quoted
	_ = cw.Write(head)
	rec := make([]string, len(sc.cols))
	var unwritable ValidationError
	for row, e := range entries {
		if e.kind() != k {
			return fmt.Errorf("register: export %s: entry %s is a %s entry: %w", k, e.meta().ID, e.kind(), ErrInvalid)
		}
		for i, c := range sc.cols {
			rec[i] = c.get(e, lang == LangJA)
			if enc == EncSJIS {
				for _, r := range notInCP932(rec[i]) {
					unwritable = append(unwritable, FieldError{Row: row + 2, Field: c.en,
						Msg: fmt.Sprintf("%q (%s) has no Shift_JIS (CP932) form: export as utf8, which Excel opens too", r, e.meta().ID)})
				}
			}
		}
		_ = cw.Write(rec)
	}
	if len(unwritable) > 0 { // a register is evidence: nothing is dropped or replaced
		return unwritable
	}
	if err := cw.Flush(); err != nil {
		return fmt.Errorf("register: csv: %w", err)
	}
	out := append([]byte(utf8BOM), buf.Bytes()...)
	if enc == EncSJIS {
		if out, _, err = transform.Bytes(japanese.ShiftJIS.NewEncoder(), buf.Bytes()); err != nil {
			return fmt.Errorf("register: csv: a character has no Shift_JIS (CP932) form, export as utf8: %w", err)
		}
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("register: csv: %w", err)
	}
	return nil
}

// notInCP932 lists the characters of s that CP932 cannot hold, once each.
func notInCP932(s string) []string {
	if _, _, err := transform.String(japanese.ShiftJIS.NewEncoder(), s); err == nil {
		return nil
	}
	var out []string
	for _, r := range s {
		if r < 0x80 {
			continue
		}
		if _, _, err := transform.String(japanese.ShiftJIS.NewEncoder(), string(r)); err != nil && !slices.Contains(out, string(r)) {
			out = append(out, string(r))
		}
	}
	return out
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

// ParseCSV reads a CSV of register k (UTF-8 with or without BOM, or CP932;
// Japanese or English headers in any order). It returns the rows and every
// cell it could not read, each with its spreadsheet row; it does not
// validate the entries (Import does).
func ParseCSV(k Kind, b []byte) ([]ImportRow, ValidationError, error) {
	sc, err := schemaOf(k)
	if err != nil {
		return nil, nil, err
	}
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
	// at[i] is the schema column of file column i, -1 for an ignored one.
	at := make([]int, len(head))
	seen := map[int]bool{}
	var errs ValidationError
	for i, h := range head {
		h = strings.TrimSpace(h)
		at[i] = -1
		found := -1
		for j, c := range sc.cols {
			if strings.EqualFold(h, c.en) || h == c.ja {
				found = j
			}
		}
		switch {
		case found < 0 && h == "":
			continue // trailing empty columns Excel sometimes adds
		case found < 0:
			errs = append(errs, FieldError{Row: 1, Field: "header", Msg: fmt.Sprintf("column %d: unknown column %q for the %s register", i+1, h, k)})
		case seen[found]:
			errs = append(errs, FieldError{Row: 1, Field: "header", Msg: fmt.Sprintf("column %q appears twice", h)})
		default:
			seen[found], at[i] = true, found
		}
	}
	for _, need := range sc.required {
		ok := false
		for j, c := range sc.cols {
			ok = ok || c.en == need && seen[j]
		}
		if !ok {
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
		e := NewEntry(k)
		for i, cell := range rec {
			if i >= len(at) || at[i] < 0 {
				continue
			}
			c := sc.cols[at[i]]
			// Unescape: a cell our export defused reads back as its text.
			if msg := c.set(e, csvcell.Unescape(strings.TrimSpace(cell))); msg != "" {
				errs = append(errs, FieldError{Row: rowNum, Field: c.en, Msg: msg})
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
