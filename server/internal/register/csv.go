package register

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
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
	// tm is a time column's field: a CSV cell holds it in the service's
	// location (csvTime, readCSVTime), a form in RFC 3339 (get, set).
	tm func(e Entry) *time.Time
}

// keep copies c's field from src into dst, for a column a file does not
// have. The cell codec round-trips (export, import: same entry), so any
// column copies through it; a time's cell is coarser, so it copies itself.
func (c column) keep(dst, src Entry) {
	if c.tm != nil {
		*c.tm(dst) = *c.tm(src)
		return
	}
	_ = c.set(dst, c.get(src, false))
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

// DefaultLocation is where CSV times without a zone are read and where
// exported times are written, unless Config.Location says otherwise: the
// office's time (the web UI's default), not the server's, which is often
// UTC in a container.
var DefaultLocation = time.FixedZone("JST", 9*3600)

// csvTimeLayout is how an exported time cell reads: what Excel shows and
// keeps for a date-time, in the office's time, to the minute.
const csvTimeLayout = "2006/01/02 15:04"

// CSV time cells: on import RFC 3339, and in the location the forms Excel
// writes back for a recognised date-time and the form export writes.
var csvTimeLayouts = []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006/1/2 15:04:05", "2006/1/2 15:04"}

func csvTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	return t.In(loc).Format(csvTimeLayout)
}

// readCSVTime sets *f from cell s, a time in loc unless it names its zone.
func readCSVTime(f *time.Time, s string, loc *time.Location) string {
	if s == "" {
		*f = time.Time{}
		return ""
	}
	n := width.Fold.String(s)
	if t, err := time.Parse(time.RFC3339, n); err == nil {
		*f = t
		return ""
	}
	for _, l := range csvTimeLayouts {
		if t, err := time.ParseInLocation(l, n, loc); err == nil {
			*f = t
			return ""
		}
	}
	return fmt.Sprintf("%q is not a time (2026/11/02 09:00 or 2026-11-02T09:00:00+09:00)", s)
}

// timeCol holds a time: RFC 3339 in a form (the web UI converts to its
// zone), the office's time in a CSV.
func timeCol[T Entry](en, ja string, f func(T) *time.Time) column {
	return column{en: en, ja: ja,
		tm: func(e Entry) *time.Time { return f(e.(T)) },
		get: func(e Entry, _ bool) string {
			if t := *f(e.(T)); !t.IsZero() {
				return t.Format(time.RFC3339)
			}
			return ""
		},
		set: func(e Entry, s string) string { return readCSVTime(f(e.(T)), s, DefaultLocation) }}
}

// csvGet and csvSet are a column's CSV cell, times in loc.
func (c column) csvGet(e Entry, ja bool, loc *time.Location) string {
	if c.tm != nil {
		return csvTime(*c.tm(e), loc)
	}
	return c.get(e, ja)
}

func (c column) csvSet(e Entry, cell string, loc *time.Location) string {
	if c.tm != nil {
		return readCSVTime(c.tm(e), cell, loc)
	}
	return c.set(e, cell)
}

// The 改訂 (revision) column: not a field, so not in the schemas (nor the
// forms). It names the entry as exported, by a hash of its cells (times
// in UTC, to the minute, as a cell names them), so that an import of an
// older export can tell a row whose entry has changed since; a hash of the
// cells rather than etcd's revision is the same on every server a register
// is exported from and imported into, so exports still round-trip.
const (
	revisionEN = "revision"
	revisionJA = "改訂"
)

func rowRevision(sc *csvSchema, e Entry) string {
	h := sha256.New()
	for _, c := range sc.cols {
		v := c.get(e, false)
		if c.tm != nil {
			v = csvTime(*c.tm(e), time.UTC)
		}
		_, _ = io.WriteString(h, v)
		_, _ = h.Write([]byte{0})
	}
	// A letter first: Excel would read all-digit hex as a number.
	return "r" + hex.EncodeToString(h.Sum(nil)[:6])
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
		// The approver's comment and the return time are the actions'
		// (approve/deny, return): exported for the auditor, and on import
		// checked against what is stored (Service.Import).
		textCol("comment", "承認コメント", func(e *Approval) *string { return &e.Comment }),
		textCol("result", "結果", func(e *Approval) *string { return &e.Result }),
		timeCol("returned", "返却日時", func(e *Approval) *time.Time { return &e.Returned }),
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

// registerOfHeaders is the register other than k whose columns every
// non-empty header of head is, with its required ones; "" for none.
func registerOfHeaders(head []string, k Kind) Kind {
	for _, other := range Kinds {
		sc := schemas[other]
		if other == k || sc == nil {
			continue
		}
		has := map[string]bool{}
		fits := true
		for _, h := range head {
			h = strings.TrimSpace(h)
			if h == "" || strings.EqualFold(h, revisionEN) || h == revisionJA {
				continue
			}
			known := false
			for _, c := range sc.cols {
				if strings.EqualFold(h, c.en) || h == c.ja {
					known, has[c.en] = true, true
				}
			}
			fits = fits && known
		}
		for _, need := range sc.required {
			fits = fits && has[need]
		}
		if fits && len(has) > 0 {
			return other
		}
	}
	return ""
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
	out := make([]string, len(sc.cols), len(sc.cols)+1)
	for i, c := range sc.cols {
		out[i] = c.en
		if lang == LangJA {
			out[i] = c.ja
		}
	}
	if lang == LangJA {
		return append(out, revisionJA), nil
	}
	return append(out, revisionEN), nil
}

// ExportCSV writes entries of register k as CSV that Excel opens: CRLF
// line ends, headers in lang (ja or en), UTF-8 with a BOM or CP932, times
// in DefaultLocation; the last column is each row's 改訂 (revision).
func ExportCSV(w io.Writer, k Kind, entries []Entry, lang, enc string) error {
	return exportCSV(w, k, entries, lang, enc, DefaultLocation)
}

// ExportCSV is ExportCSV writing times in the service's location.
func (s *Service) ExportCSV(w io.Writer, k Kind, entries []Entry, lang, enc string) error {
	return exportCSV(w, k, entries, lang, enc, s.loc)
}

func exportCSV(w io.Writer, k Kind, entries []Entry, lang, enc string, loc *time.Location) error {
	if lang != LangJA && lang != LangEN {
		return fmt.Errorf("%w: lang %q is not ja or en", ErrInvalid, lang) // ErrInvalid says "register: "
	}
	if enc != EncUTF8 && enc != EncSJIS {
		return fmt.Errorf("%w: encoding %q is not utf8 or sjis", ErrInvalid, enc)
	}
	sc, err := schemaOf(k)
	if err != nil {
		return err
	}
	head, _ := CSVHeaders(k, lang)
	var buf bytes.Buffer
	cw := csvcell.NewWriter(&buf) // every cell defused and quoted
	_ = cw.Write(head)
	rec := make([]string, len(sc.cols)+1)
	var unwritable ValidationError
	for row, e := range entries {
		if e.kind() != k {
			return fmt.Errorf("register: export %s: entry %s is a %s entry: %w", k, e.meta().ID, e.kind(), ErrInvalid)
		}
		for i, c := range sc.cols {
			rec[i] = c.csvGet(e, lang == LangJA, loc)
			if enc == EncSJIS {
				for _, r := range notInCP932(rec[i]) {
					unwritable = append(unwritable, FieldError{Row: row + 2, Field: c.en,
						Msg: fmt.Sprintf("%q (%s) has no Shift_JIS (CP932) form: export as utf8, which Excel opens too", r, e.meta().ID)})
				}
			}
		}
		rec[len(sc.cols)] = rowRevision(sc, e)
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

// saveAgain is what to do with a file that is not text Excel writes.
const saveAgain = "Excel で「CSV UTF-8」または「CSV（コンマ区切り）」の形式で保存し直してください。"

// DecodeText turns an uploaded file into UTF-8: a UTF-8 BOM or valid UTF-8
// is taken as UTF-8, anything else is read as CP932 (Shift_JIS as Excel
// writes it). Its refusals are in Japanese: the file's language is not
// known yet.
func DecodeText(b []byte) ([]byte, error) {
	if rest, ok := bytes.CutPrefix(b, []byte(utf8BOM)); ok {
		if !utf8.Valid(rest) {
			return nil, ValidationError{{Field: "file", Msg: "ファイルは UTF-8 の BOM で始まりますが、UTF-8 として読めません。" + saveAgain}}
		}
		return rest, nil
	}
	if utf8.Valid(b) {
		return b, nil
	}
	out, _, err := transform.Bytes(japanese.ShiftJIS.NewDecoder(), b)
	if err != nil {
		return nil, ValidationError{{Field: "file", Msg: "ファイルを UTF-8 としても Shift_JIS（CP932）としても読めません。" + saveAgain}}
	}
	return out, nil
}

// registerJA names each register in Japanese, for messages.
var registerJA = map[Kind]string{KindPI: "個人情報管理台帳", KindMedia: "媒体管理台帳", KindApprovals: "持出し記録", KindDisposals: "廃棄記録"}

// ParseCSV reads a CSV of register k (UTF-8 with or without BOM, or CP932;
// Japanese or English headers in any order), times without a zone in
// DefaultLocation. It returns the rows and every cell it could not read,
// each with its spreadsheet row; it does not validate the entries (Import
// does). A file that cannot be read at all is a ValidationError too.
// Messages about the headers and the rows' CSV syntax are in the file's
// language and name columns by the headers it used; those about the file
// as a whole (empty, too large, not text, a broken header row) are in
// Japanese.
func ParseCSV(k Kind, b []byte) ([]ImportRow, ValidationError, error) {
	return parseCSV(k, b, DefaultLocation)
}

// ParseCSV is ParseCSV reading times without a zone in the service's location.
func (s *Service) ParseCSV(k Kind, b []byte) ([]ImportRow, ValidationError, error) {
	return parseCSV(k, b, s.loc)
}

// csvReadError names a CSV syntax error of spreadsheet row row, in
// Japanese unless en.
func csvReadError(row int, err error, en bool) error {
	cause := err
	if pe, ok := errors.AsType[*csv.ParseError](err); ok {
		cause = pe.Err
	}
	var msg string
	switch {
	case errors.Is(cause, csv.ErrBareQuote) && en:
		msg = `a quote (") inside a cell that is not quoted`
	case errors.Is(cause, csv.ErrBareQuote):
		msg = `セルの途中に引用符（"）があります。セル全体を "…" で囲み、中の " は "" と2つ重ねてください。`
	case errors.Is(cause, csv.ErrQuote) && en:
		msg = `a quoted cell is not closed (or a quote (") inside it is not doubled)`
	case errors.Is(cause, csv.ErrQuote):
		msg = `引用符（"）で始まるセルが閉じていません（またはセルの中の " が "" と2つ重ねられていません）。`
	case en:
		msg = cause.Error()
	default:
		msg = fmt.Sprintf("CSV として読めません（%v）。", cause)
	}
	return ValidationError{{Row: row, Field: "file", Msg: msg}}
}

func parseCSV(k Kind, b []byte, loc *time.Location) ([]ImportRow, ValidationError, error) {
	sc, err := schemaOf(k)
	if err != nil {
		return nil, nil, err
	}
	if len(b) > MaxCSVBytes {
		return nil, nil, ValidationError{{Field: "file", Msg: fmt.Sprintf("ファイルが大きすぎます（%d バイト。%d MB まで）。ファイルを分けて取り込んでください。", len(b), MaxCSVBytes>>20)}}
	}
	text, err := DecodeText(b)
	if err != nil {
		return nil, nil, err
	}
	cr := csv.NewReader(bytes.NewReader(text))
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, ValidationError{{Field: "file", Msg: "ファイルが空です（1行目に見出しの行が必要です）。"}}
	}
	if err != nil {
		return nil, nil, csvReadError(1, err, false)
	}
	// English headers are ASCII: any other character means the file is
	// Japanese, and so are the messages about its headers.
	ja := false
	for _, h := range head {
		ja = ja || strings.ContainsFunc(h, func(r rune) bool { return r >= utf8.RuneSelf })
	}
	say := func(en, jaMsg string) string {
		if ja {
			return jaMsg
		}
		return en
	}
	if len(head) > maxCells {
		return nil, nil, ValidationError{{Row: 1, Field: "header", Msg: say(fmt.Sprintf("header has %d columns, at most %d", len(head), maxCells),
			fmt.Sprintf("見出しが %d 列あります。%d 列までにしてください。", len(head), maxCells))}}
	}
	// at[i] is the schema column of file column i, -1 for an ignored one.
	at := make([]int, len(head))
	seen := map[int]bool{}
	revAt := -1
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
		case found < 0 && (strings.EqualFold(h, revisionEN) || h == revisionJA) && revAt < 0:
			revAt = i
		case found < 0 && h == "":
			continue // trailing empty columns Excel sometimes adds
		case found < 0:
			errs = append(errs, FieldError{Row: 1, Field: "header", Msg: say(fmt.Sprintf("column %d: unknown column %q for the %s register", i+1, h, k),
				fmt.Sprintf("%d 列目「%s」は%sの列ではありません。見出しを直すか、その列を削除してください。", i+1, h, registerJA[k]))})
		case seen[found]:
			errs = append(errs, FieldError{Row: 1, Field: "header", Msg: say(fmt.Sprintf("column %q appears twice", h),
				fmt.Sprintf("%d 列目「%s」の列が2つあります。", i+1, h))})
		default:
			seen[found], at[i] = true, found
		}
	}
	for _, need := range sc.required {
		for j, c := range sc.cols {
			if c.en == need && !seen[j] {
				errs = append(errs, FieldError{Row: 1, Field: "header", Msg: say("missing column "+c.en,
					fmt.Sprintf("必須の列「%s」がありません。", c.ja))})
			}
		}
	}
	if len(errs) > 0 {
		// A file of another register (the --kind left at its default) is
		// said as that, before the column-by-column detail.
		if other := registerOfHeaders(head, k); other != "" {
			errs = append(ValidationError{{Row: 1, Field: "header", Msg: say(
				fmt.Sprintf("this file's headers are those of the %s register, not %s: import it as --kind %s (on the web, on that register's page)", other, k, other),
				fmt.Sprintf("このファイルの見出しは%sのものです（%sではありません）。--kind %s で（画面ではその台帳のページで）取り込んでください。", registerJA[other], registerJA[k], other))}}, errs...)
		}
		return nil, errs, nil
	}
	var absent []int
	for j := range sc.cols {
		if !seen[j] {
			absent = append(absent, j)
		}
	}
	var rows []ImportRow
	for rowNum := 2; ; rowNum++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, csvReadError(rowNum, err, !ja)
		}
		if blank(rec) {
			continue
		}
		e := NewEntry(k)
		ir := ImportRow{Row: rowNum, Entry: e, absent: absent, hasRevision: revAt >= 0}
		for i, cell := range rec {
			if i == revAt {
				ir.revision = strings.TrimSpace(cell)
				continue
			}
			if i >= len(at) || at[i] < 0 {
				// A value with no header is a column out of place: refuse
				// it rather than drop it. Excel leaves empty cells there.
				if v := strings.TrimSpace(cell); v != "" {
					errs = append(errs, FieldError{Row: rowNum, Field: "columns", Msg: say(fmt.Sprintf("column %d has %q but no header: add its header or clear the cell", i+1, v),
						fmt.Sprintf("%d 列目に値「%s」がありますが、その列に見出しがありません。見出しを付けるか、セルを空にしてください。", i+1, v))})
				}
				continue
			}
			c := sc.cols[at[i]]
			// Unescape: a cell our export defused reads back as its text.
			if msg := c.csvSet(e, csvcell.Unescape(strings.TrimSpace(cell)), loc); msg != "" {
				errs = append(errs, FieldError{Row: rowNum, Field: c.en, Msg: msg})
			}
		}
		rows = append(rows, ir)
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
