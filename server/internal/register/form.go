package register

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Field input kinds of a form.
const (
	InputText     = "text"
	InputLong     = "textarea" // free text over several lines
	InputLines    = "lines"    // a list, one item per line
	InputSelect   = "select"   // a closed set of codes
	InputYesNo    = "yesno"
	InputDate     = "date"     // YYYY-MM-DD
	InputDateTime = "datetime" // RFC 3339 in the entry; local time in a form
	InputNumber   = "number"
)

// FormField describes one field of a register entry for an input form: its
// name (the CSV's English header and the JSON name), labels, help, kind
// and, for a closed set, the codes to choose from.
type FormField struct {
	Name, LabelJA, LabelEN string
	HelpJA, HelpEN         string
	Input                  string
	Choices                []string
	Required               bool
	// Recorded fields are set by actions (approve, deny, return), not by
	// the form: shown read-only on an entry, absent from a new one.
	Recorded bool
}

// recorded lists, per register, the fields only actions set.
var recorded = map[Kind][]string{KindApprovals: {"approver", "decided", "comment", "returned"}}

// choices of the closed value sets, per register and field.
var formChoices = map[Kind]map[string][]string{
	KindPI:        {"status": {StatusActive, StatusRetired}, "medium": {"electronic", "paper", "both"}},
	KindMedia:     {"status": {StatusActive, StatusLost, StatusDisposed, StatusRetired}},
	KindApprovals: {"status": {StatusRequested, StatusApproved, StatusDenied, StatusReturned, StatusRetired}},
	KindDisposals: {"status": {StatusActive, StatusRetired}},
}

// MediumLabel names a PI entry's medium code in lang.
func MediumLabel(code, lang string) string {
	if lang == LangJA {
		if j, ok := mediumJA[code]; ok {
			return j
		}
	}
	return code
}

type help struct{ ja, en string }

// formHelp explains a field where its label alone may not be enough.
var formHelp = map[string]help{
	"id":              {"台帳の管理番号。英数字と . _ @ - で64文字以内（例: PI-001）。登録後は変更できません。", "Entry number: letters, digits, . _ @ -; at most 64 (e.g. PI-001). Fixed once saved."},
	"contents":        {"氏名、住所、電話番号など、含まれる項目。", "Data items held: name, address, phone, ..."},
	"paper_locations": {"紙の書類を置く場所。1行に1か所（例: 本社2F 書庫 キャビネットA）。", "Where the paper records are kept, one per line (e.g. 2F store room, cabinet A)."},
	"record_count":    {"おおよその件数。", "Approximate number of records."},
	"sensitive":       {"病歴・信条など要配慮個人情報を含むか。", "Whether it holds special-care data (health, creed, ...)."},
	"locations":       {"1行に1か所、「端末名:フォルダー」の形で（例: PC-SOUMU-01:D:\\顧客）。登録するとその端末のエージェントがフォルダーの監視を始めます。", "One per line as HOST:FOLDER (e.g. PC-SOUMU-01:D:\\customers). The PC's agent starts watching the folder."},
	"access":          {"1行に1人または1グループ。", "One person or group per line."},
	"retention":       {"5年、18か月、無期限のいずれかの形で（5y、18m、indefinite とも書けます）。", "A period such as 5y, 18m, or indefinite."},
	"disposal_method": {"保管期間が有限のときは必須（例: シュレッダー、データ消去ソフト）。", "Required when retention is limited (e.g. shredder, wiping tool)."},
	"last_reviewed":   {"最後に内容を見直した日。", "Date of the last review."},
	"serial":          {"USBメモリなどのシリアル番号（英数字と . _ : - で4〜64文字）。", "The device's serial number (4..64 of letters, digits, . _ : -)."},
	"vendor_id":       {"USB の idVendor（16進数4桁、任意）。", "USB idVendor (4 hex digits, optional)."},
	"product_id":      {"USB の idProduct（16進数4桁、任意）。", "USB idProduct (4 hex digits, optional)."},
	"host":            {"持ち出す媒体を使う端末名。", "The PC the device will be used on."},
	"register_ids":    {"持ち出す個人情報の台帳番号。1行に1件。", "Register numbers of the personal data taken out, one per line."},
	"register_id":     {"廃棄した個人情報の台帳番号、または廃棄した媒体の媒体管理台帳の番号（任意）。", "Register number of the disposed personal data, or of the disposed medium in the media register (optional)."},
	"certificate":     {"廃棄証明書の番号など（任意）。", "Disposal certificate reference (optional)."},
	"approver":        {"承認・却下の操作をした人。ここでは変更できません。", "Who approved or denied, recorded by the action; not changed here."},
	"decided":         {"承認・却下の操作の日時。ここでは変更できません。", "When it was approved or denied, recorded by the action; not changed here."},
	"comment":         {"承認・却下の操作で承認者が付けたコメント。ここでは変更できません。", "The approver's, recorded by approve/deny; not changed here."},
	"returned":        {"返却の操作で記録された日時。ここでは変更できません。", "Recorded by the return action; not changed here."},
}

// required fields a form marks; validation decides, this only guides.
var formRequired = map[Kind][]string{
	KindPI:        {"id", "name", "purpose", "owner", "department", "retention"},
	KindMedia:     {"id", "registered", "product", "serial", "owner"},
	KindApprovals: {"id", "requester", "serial", "host", "purpose", "from", "to"},
	KindDisposals: {"id", "date", "item", "method", "responsible"},
}

// FormFields lists register k's fields in display order.
func FormFields(k Kind) []FormField {
	sc, ok := schemas[k]
	if !ok {
		return nil
	}
	out := make([]FormField, 0, len(sc.cols))
	for _, c := range sc.cols {
		f := FormField{Name: c.en, LabelJA: c.ja, LabelEN: strings.ReplaceAll(c.en, "_", " "), Input: InputText,
			HelpJA: formHelp[c.en].ja, HelpEN: formHelp[c.en].en, Required: slices.Contains(formRequired[k], c.en),
			Recorded: slices.Contains(recorded[k], c.en)}
		switch c.en {
		case "status", "medium":
			f.Input, f.Choices = InputSelect, formChoices[k][c.en]
		case "sensitive", "encrypted":
			f.Input = InputYesNo
		case "locations", "paper_locations", "access", "register_ids":
			f.Input = InputLines
		case "purpose", "contents", "risk_notes", "result", "comment":
			f.Input = InputLong
		case "record_count":
			f.Input = InputNumber
		case "registered", "date", "last_reviewed":
			f.Input = InputDate
		case "from", "to", "decided", "returned":
			f.Input = InputDateTime
		}
		if f.Input == InputSelect && len(f.Choices) == 0 {
			f.Input = InputText
		}
		out = append(out, f)
	}
	return out
}

// FormValues returns e's fields as form values (codes, not labels; times
// in RFC 3339; lists one item per line).
func FormValues(e Entry) map[string]string {
	sc, ok := schemas[e.kind()]
	if !ok {
		return nil
	}
	out := make(map[string]string, len(sc.cols))
	for _, c := range sc.cols {
		out[c.en] = c.get(e, false)
	}
	return out
}

// FromForm builds an entry of kind k from form values (as FormValues gives
// them); fields not in vals stay empty. Cells that cannot be read are
// returned as field errors; validation of the whole entry is the caller's
// (Create and Update run it).
func FromForm(k Kind, vals map[string]string) (Entry, ValidationError) {
	sc, ok := schemas[k]
	if !ok {
		return nil, ValidationError{{Field: "kind", Msg: fmt.Sprintf("unknown register %q", k)}}
	}
	e := NewEntry(k)
	var errs ValidationError
	for _, c := range sc.cols {
		v, ok := vals[c.en]
		if !ok {
			continue
		}
		if msg := c.set(e, strings.TrimSpace(v)); msg != "" {
			errs = append(errs, FieldError{Field: c.en, Msg: msg})
		}
	}
	return e, errs
}

// FieldOf is the form field a validation error's field belongs to
// ("locations[0].host" belongs to "locations").
func FieldOf(field string) string {
	if i := strings.IndexAny(field, "[."); i > 0 {
		return field[:i]
	}
	return field
}

// Lines says each error on a line of its own in lang (LangJA or LangEN):
// the row in spreadsheet numbering, the field by its column header in
// Japanese, and in Japanese the message's Japanese with the exact English
// detail after it, which names the value.
func (es ValidationError) Lines(k Kind, lang string) []string {
	if lang != LangJA {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.Error()
		}
		return out
	}
	header := map[string]string{revisionEN: revisionJA}
	for _, f := range FormFields(k) {
		header[f.Name] = f.LabelJA
	}
	out := make([]string, len(es))
	for i, e := range es {
		where := e.Field
		switch h, ok := header[FieldOf(e.Field)]; {
		case ok:
			where = "「" + h + "」"
		case e.Field == "header":
			where = "（見出し）"
		case e.Field == "file" || e.Field == "columns": // the message says where
			where = ""
		}
		if e.Row > 0 {
			where = fmt.Sprintf("%d 行目", e.Row) + where
		}
		msg := MessageJA(e.Msg)
		if choices := choicesJA(k, FieldOf(e.Field)); choices != "" && strings.Contains(e.Msg, "is not one of") {
			// The codes the English detail lists are not what a Japanese
			// file or form says.
			msg = choices + "のいずれかを入力してください。"
			if v, err := strconv.QuotedPrefix(e.Msg); err == nil {
				msg += "（" + v + "）"
			}
		} else if msg != e.Msg {
			msg += "（" + e.Msg + "）"
		}
		if where == "" {
			out[i] = msg
			continue
		}
		out[i] = where + ": " + msg
	}
	return out
}

// choicesJA lists field's closed set of register k in Japanese: 「紙」「電子」.
func choicesJA(k Kind, field string) string {
	names := map[string]map[string]string{"status": statusJA, "medium": mediumJA}[field]
	var b strings.Builder
	for _, c := range formChoices[k][field] {
		if j, ok := names[c]; ok {
			b.WriteString("「" + j + "」")
		}
	}
	return b.String()
}

// MessageJA says a validation message in Japanese; a message this table
// does not know is returned as it is.
func MessageJA(msg string) string {
	for _, m := range messagesJA {
		if strings.Contains(msg, m.en) {
			return m.ja
		}
	}
	return msg
}

var messagesJA = []struct{ en, ja string }{
	{"required for electronic data", "電子データの場合は保管場所（端末名:フォルダー）を1行以上入力してください。"},
	{"required when retention is limited", "保管期間が有限のときは廃棄方法を入力してください。"},
	{"required once", "承認・却下には承認者が必要です。"},
	{"required", "入力してください。"},
	{"longer than", "長すぎます（半角2,000文字、全角およそ660文字まで）。"},
	{"is not one of", "選択肢から選んでください。"},
	{"is not a date", "日付（2026-04-01、2026/4/1 または 2026年4月1日）で入力してください。"},
	{"is in the future", "未来の日付は入力できません。"},
	{"reserved for CSV", "この番号は使えません（CSVの取り込み・書き出し用）。"},
	{"an id is needed on every row", "管理番号を入力してください。新しい行には、まだ使っていない番号を付けてください（例: 既存の最後の番号の次）。取り込みでは番号で行を照合するため、空欄の行は受け付けません（画面や API で追加すると番号は自動で付きます）。"},
	{"is not a valid id", "英数字と . _ @ - で64文字以内の番号にしてください。"},
	{"must not be negative", "0以上の数にしてください。"},
	{"is not a hostname", "端末名（英数字と . _ -）で入力してください。"},
	{"is not an absolute folder path", "フォルダーを絶対パス（例: D:\\顧客）で入力してください。"},
	{"is not a period", "5年（5y）、18か月（18m）、無期限（indefinite）の形で入力してください。"},
	{"is not a serial number", "シリアル番号は英数字と . _ : - で4〜64文字です。"},
	{"is not 4 hex digits", "16進数4桁で入力してください（例: 0781）。"},
	{"must be after from", "終了は開始より後の日時にしてください。"},
	{"is not a register id", "台帳番号の形ではありません。"},
	{"is not yes/no", "有 か 無 を選んでください。"},
	{"is not a whole number", "整数で入力してください。"},
	{"a paper record's place goes in", "「端末名:フォルダー」の形で入力してください。書庫やキャビネットなど紙の保管場所は「紙の保管場所」に入力してください。"},
	{"is not HOST:FOLDER", "「端末名:フォルダー」の形で入力してください。"},
	{"is a network share", "共有フォルダー（\\\\サーバー\\共有）ではなく、それを置くサーバーの端末名とそのフォルダーを入力してください（例: FS01:D:\\共有\\顧客データ）。"},
	{"is not a time", "日時で入力してください。"},
	{"has no Shift_JIS", "Shift_JIS（CP932）にない文字です。UTF-8 で書き出してください（Excel でも開けます）。"},
	{"the window has ended", "持出し期間が終わっているため承認できません。"},
	{"does not exist", "その台帳番号は登録されていません。"},
	{"in the PI or media register", "その番号は個人情報管理台帳にも媒体管理台帳にもありません。"},
	{"no register entry", "個人情報管理台帳にその台帳番号はありません。"},
	{"is retired", "その台帳番号は廃止されています（廃止した個人情報は持ち出せません）。"},
	{"only an active medium can be carried out", "媒体管理台帳で廃棄済・紛失となっている媒体は持ち出せません（台帳にない媒体は承認の期間だけ使えます）。"},
	{"is registered already as", "このシリアル番号の媒体は既に「有効」で登録されています。同じ媒体を2件登録することはできません。"},
	{"with the approve/deny action", "申請の承認・却下は、承認者が「承認」「却下」の操作で行ってください。"},
	{"approval cannot become", "この状態には変更できません（申請中→承認・却下は承認者の操作で、承認→返却済のみ）。"},
	{"fixed once the approval is", "承認・却下後の持出し承認は内容を変更できません。変更が必要なら新しく申請してください。"},
	{"an import cannot change", "承認者と承認日時は取り込みで変更できません。"},
	{"has not ended: an imported approval", "持出し期間が終わっていない「承認」は取り込めません。「申請中」として取り込み、承認者が承認してください。"},
	{"has not begun, so the medium cannot have been returned", "持出し開始前のため「返却済」にはできません。"},
	{"a requested approval has no approver", "「申請中」の行に承認者・承認日時は入力できません。"},
	{"a requested approval has no comment", "「申請中」の行に承認コメントは入力できません（承認者が承認・却下のときに付けます）。"},
	{"the approver's comment is recorded by", "承認コメントは承認・却下の操作で記録されます。ファイルでは変更できません。記録どおりにするか、空欄にしてください。"},
	{"the return time is recorded by", "返却日時は返却の操作で記録されます。ファイルでは変更できません。記録どおりにするか、空欄にしてください。"},
	{"only a returned approval has a return time", "返却日時は「返却済」の行にだけ入力できます。"},
	{"before the decision at", "返却日時が承認日時より前です。"},
	{"changed since this file was exported", "このファイルを書き出した後に台帳で変更された行です。取り込むとその変更が元に戻るため、取り込みを中止しました。もう一度書き出して、新しいファイルに編集をやり直してください。"},
	{"repeats row", "同じ管理番号の行が2つあります。"},
	{"inside a cell that is not quoted", "セルの途中に引用符（\"）があります。セル全体を \"…\" で囲み、中の \" は \"\" と2つ重ねてください。"},
	{"quoted cell is not closed", "引用符（\"）で始まるセルが閉じていません（またはセルの中の \" が \"\" と2つ重ねられていません）。"},
}

// FieldChange is one field's change in a history record.
type FieldChange struct {
	Field, LabelJA, LabelEN string
	Before, After           string
}

// Diff lists the fields that differ between a change's before and after
// (JSON of the entry), in form order, meta fields left out.
func Diff(k Kind, before, after json.RawMessage) []FieldChange {
	var b, a map[string]any
	_ = json.Unmarshal(before, &b)
	_ = json.Unmarshal(after, &a)
	var out []FieldChange
	for _, f := range FormFields(k) {
		bv, av := b[f.Name], a[f.Name]
		if reflect.DeepEqual(bv, av) {
			continue
		}
		out = append(out, FieldChange{Field: f.Name, LabelJA: f.LabelJA, LabelEN: f.LabelEN, Before: show(bv), After: show(av)})
	}
	return out
}

func show(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []any:
		s := make([]string, len(x))
		for i, e := range x {
			if m, ok := e.(map[string]any); ok && m["host"] != nil {
				s[i] = fmt.Sprintf("%v%s%v", m["host"], hostSep, m["folder"])
				continue
			}
			s[i] = fmt.Sprint(e)
		}
		return strings.Join(s, "\n")
	}
	return fmt.Sprint(v)
}
