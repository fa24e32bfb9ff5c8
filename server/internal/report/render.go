package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/csvcell"
	"github.com/mamori/mamori/shared/labels"
)

//go:embed report.html
var reportHTML string

var tmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":     func(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" },
	"join":    func(s []string) string { return strings.Join(s, "、") },
	"clauses": func(s []string) string { return strings.Join(clausesJA(s), "、") },
	"jst":     func(t time.Time) string { return t.In(JST).Format("2006-01-02 15:04") },
	"jstp":    func(t *time.Time) string { return t.In(JST).Format("2006-01-02 15:04") },
	// Codes read as words: the report is for people, not for Mamori.
	"control": controlJAOf,
	"status":  func(c string) string { return labels.Of(labels.Status, "ja", c) },
	"counts":  counts,
	"controls": func(m map[string]int64) string {
		out := make([]string, 0, len(m))
		for _, c := range slices.Sorted(maps.Keys(m)) {
			out = append(out, controlJAOf(c)+" "+strconv.FormatInt(m[c], 10)+" 件")
		}
		return strings.Join(out, "、")
	},
}).Parse(reportHTML))

// zoneJA follows the times the report shows, as the pages label them
// (messages "jst"): every time is Japan time.
const zoneJA = "（日本時間）"

// clausesJA are the policy packs' clause citations as a reader knows
// them (policies/*.yaml name some in English).
func clausesJA(cs []string) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = labels.Of(labels.Clause, labels.JA, c)
	}
	return out
}

// controlJAOf is a control's Japanese name.
func controlJAOf(c string) string { return labels.Of(labels.Control, labels.JA, c) }

// counts lists event types and their counts, by code.
func counts(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = labels.Of(labels.EventType, labels.JA, k) + " " + strconv.FormatInt(m[k], 10) + " 件"
	}
	return strings.Join(out, "、")
}

// Breakdown is an access row's events by type, with those folded into
// bulk summaries whose types the summary did not say, so it adds up to
// Events.
func (a Access) Breakdown() string {
	s := counts(a.ByType)
	if a.Untyped > 0 {
		if s != "" {
			s += "、"
		}
		s += "一括操作として要約された件数 " + strconv.FormatInt(a.Untyped, 10) + " 件（内訳は要約イベントを参照）"
	}
	return s
}

// Scope is the report's scope as printed: the department (or all) and
// its PCs.
func (r *Report) Scope() string {
	d := r.Department
	if d == "" {
		d = "全部署"
	}
	return fmt.Sprintf("%s (PC %d 台)", d, r.Hosts)
}

// ProvisionalNote says, for a period not ended when the report was made,
// up to when its figures go; "" otherwise.
func (r *Report) ProvisionalNote() string {
	if !r.Provisional {
		return ""
	}
	return "暫定（作成時点 " + r.AsOf.In(JST).Format("2006-01-02 15:04") + " まで）"
}

// HTML writes the report as a printable A4 page in Japanese.
func (r *Report) HTML(w io.Writer) error {
	var months []string
	if len(r.Controls) > 0 {
		for _, m := range r.Controls[0].Months {
			months = append(months, m.Month)
		}
	}
	err := tmpl.Execute(w, map[string]any{"R": r, "Months": months, "AlertListMax": AlertListMax, "Generated": r.Generated.In(JST).Format("2006-01-02 15:04")})
	if err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	return nil
}

// CSV writes the report as one table (区分 first) for Excel: UTF-8 with a
// BOM, formulas defused.
func (r *Report) CSV(w io.Writer) error {
	// One sheet of sections; each section opens with a row naming its
	// columns, in the words of the HTML report.
	rows := [][]string{{"区分", "項目", "内容"}}
	add := func(cells ...string) { rows = append(rows, cells) }
	ctl := controlJAOf
	yes := func(b bool) string {
		if b {
			return "はい"
		}
		return "いいえ"
	}
	period := r.From + " 〜 " + r.To
	if note := r.ProvisionalNote(); note != "" {
		period += " " + note
	}
	add("概要", "対象期間", period)
	add("概要", "対象範囲", r.Scope())
	add("概要", "作成日時"+zoneJA, r.Generated.In(JST).Format("2006-01-02 15:04"))
	add("概要", "イベント数", strconv.FormatInt(r.TotalEvents, 10))
	add("概要", "一括操作として要約されたファイル操作", strconv.FormatInt(r.Summarised, 10)+" 件 (要約イベント "+strconv.FormatInt(r.Summaries, 10)+" 件、イベント数には含みません)")
	add("イベント数", "管理策", "件数")
	for _, c := range slices.Sorted(maps.Keys(r.EventsByControl)) {
		add("イベント数", ctl(c), strconv.FormatInt(r.EventsByControl[c], 10))
	}
	add("準拠率", "管理策", "根拠条項", "準拠率", "状態の記録数", "違反の記録数", "例外の数")
	for _, c := range r.Controls {
		add("準拠率", ctl(c.Control), strings.Join(clausesJA(c.Clauses), " / "), rate(c.Rate, c.Hosts),
			strconv.FormatInt(c.StatusEvents, 10), strconv.FormatInt(c.FailEvents, 10), strconv.Itoa(c.Exceptions))
	}
	add("月別準拠率", "管理策", "月", "準拠率", "対象端末数", "違反端末数", "不明端末数")
	for _, c := range r.Controls {
		for _, m := range c.Months {
			add("月別準拠率", ctl(c.Control), m.Month, rate(m.Rate, m.Hosts), strconv.Itoa(m.Hosts), strconv.Itoa(m.Failing), strconv.Itoa(m.Unknown))
		}
	}
	add("例外", "端末", "管理策", "理由", "開始"+zoneJA, "終了"+zoneJA, "秒数", "継続期間")
	for _, e := range r.Exceptions {
		to := "継続中"
		if e.To != nil {
			to = e.To.In(JST).Format(time.DateTime)
		}
		add("例外", e.Hostname, ctl(e.Control), e.Reason, e.From.In(JST).Format(time.DateTime), to, strconv.FormatInt(e.Seconds, 10), e.Duration)
	}
	add("台帳見直し", "台帳番号", "名称", "部署", "最終見直し日", "12か月以上未見直し")
	for _, v := range r.Reviews {
		add("台帳見直し", v.ID, v.Name, v.Department, v.LastReviewed, yes(v.Overdue || v.LastReviewed == ""))
	}
	add("持出し", "番号", "申請者", "媒体のシリアル", "端末", "目的", "期間"+zoneJA, "承認者", "状態", "結果", "媒体管理台帳にない媒体")
	for _, a := range r.CarryOuts {
		add("持出し", a.ID, a.Requester, a.Serial, a.Host, a.Purpose, jstTime(a.From)+" 〜 "+jstTime(a.To), a.Approver,
			labels.Of(labels.Status, labels.JA, a.Status), a.Result, yes(a.NotInRegister))
	}
	add("台帳にない媒体", "端末", "シリアル番号", "製品", "最初の使用"+zoneJA, "最後の使用"+zoneJA, "書き込まれたファイル数", "持出しの承認")
	for _, m := range r.UnregisteredMedia {
		add("台帳にない媒体", m.Host, m.Serial, m.Device(), m.First.In(JST).Format(time.DateTime), m.Last.In(JST).Format(time.DateTime),
			strconv.Itoa(m.FilesWritten), m.Covered())
	}
	if len(r.UnregisteredMedia) == 0 {
		add("台帳にない媒体", "なし", "期間中に媒体管理台帳にない媒体は使われていません")
	}
	add("廃棄", "番号", "日付", "対象", "方法", "責任者")
	for _, d := range r.Disposals {
		add("廃棄", d.ID, d.Date, d.Item, d.Method, d.Responsible)
	}
	add("事故", "番号", "件名", "発見日時"+zoneJA, "本人の数", "状態")
	for _, in := range r.Incidents {
		add("事故", in.ID, in.Title, in.DiscoveredAt.In(JST).Format(time.DateTime), strconv.Itoa(in.Persons), labels.Of(labels.Status, labels.JA, in.Status))
	}
	add("アラート集計", "種類", "件数", "通知済み", "通知失敗", "通知の記録なし", "うち一覧外", "確認", "解決", "期間末で未解決")
	for _, k := range r.Alerts.Kinds {
		cells := []string{"アラート集計", k.Name, strconv.Itoa(k.Alerted), strconv.Itoa(k.Delivered), strconv.Itoa(k.Failed),
			strconv.Itoa(k.NotNotified), strconv.Itoa(k.Unlisted), "", "", ""}
		if k.Kind == failedDeliveryKind {
			cells[3], cells[4], cells[5] = "", "", ""
		}
		if k.Handled {
			cells[7], cells[8], cells[9] = strconv.Itoa(k.Acknowledged), strconv.Itoa(k.Resolved), strconv.Itoa(k.Open)
		}
		add(cells...)
	}
	add("アラート", "ログ番号", "日時"+zoneJA, "PC", "種類", "内容", "通知", "対応")
	for _, a := range r.Alerts.List {
		notified := a.Notified()
		if a.Kind == failedDeliveryKind {
			notified = ""
		}
		add("アラート", strconv.FormatInt(a.Index, 10), a.Time.In(JST).Format(time.DateTime), a.Host, a.KindName, a.What, notified, a.Handling())
	}
	if r.Alerts.More > 0 {
		add("アラート", "ほか", strconv.Itoa(r.Alerts.More)+" 件 (一覧は発生順に先頭 "+strconv.Itoa(AlertListMax)+" 件)")
	}
	add("アクセス記録", "台帳番号", "名称", "イベント数", "利用者数", "内訳")
	for _, a := range r.Access {
		add("アクセス記録", a.RegisterID, a.Name, strconv.FormatInt(a.Events, 10), strconv.FormatInt(a.Users, 10), a.Breakdown())
	}
	in := r.Integrity
	add("完全性", "項目", "ログの件数", "ルートハッシュ")
	add("完全性", "期間開始時のチェックポイント", strconv.FormatInt(in.StartSize, 10), in.StartRoot)
	add("完全性", "期間末のチェックポイント", strconv.FormatInt(in.EndSize, 10), in.EndRoot)
	add("完全性", "検証済み", yes(in.Verified), in.Statement)
	for _, it := range integrityTypes {
		if n := in.Problems[it.typ]; n > 0 {
			add("完全性", "記録された問題", it.ja, strconv.FormatInt(n, 10), it.typ)
		}
	}
	if _, err := io.WriteString(w, "\ufeff"); err != nil {
		return err
	}
	cw := csvcell.NewWriter(w) // every cell defused and quoted
	for _, row := range rows {
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("report: csv: %w", err)
		}
	}
	return cw.Flush()
}

// rate is a pass rate for the CSV: empty where the control ran on no PC, so
// that no one reads a control nobody ran as 0% compliant.
func rate(r float64, hosts int) string {
	if hosts == 0 {
		return ""
	}
	return strconv.FormatFloat(r*100, 'f', 1, 64) + "%"
}
