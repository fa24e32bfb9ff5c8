package incident

import (
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/csvcell"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

//go:embed worksheet.html
var worksheetHTML string

var worksheetTmpl = template.Must(template.New("worksheet").Funcs(template.FuncMap{
	"jst": func(t *time.Time) string { return t.In(JST).Format("2006-01-02 15:04") },
	"check": func(b bool) string {
		if b {
			return "☑ 該当"
		}
		return "☐ 非該当"
	},
	"kindJA": func(k register.Kind) string {
		return map[register.Kind]string{register.KindPI: "個人情報管理台帳", register.KindMedia: "媒体管理台帳",
			register.KindApprovals: "持出し承認"}[k]
	},
}).Parse(worksheetHTML))

// eventRow is one event listed in the worksheet.
type eventRow struct {
	Index                    int64
	Time, Host, Type, Object string
}

type worksheetData struct {
	In                                     Incident
	Now, Discovered, Occurred, Kind, Items string
	BundleName                             string
	Over1000                               bool
	Events                                 []eventRow
}

// BundleName is the file name of an incident's evidence bundle.
func BundleName(id string) string { return "mamori-" + id + "-evidence.jsonl" }

func (s *Service) worksheetData(ctx context.Context, in Incident) (worksheetData, error) {
	d := worksheetData{In: in, Now: s.cfg.Now().In(JST).Format("2006-01-02 15:04"),
		Discovered: in.DiscoveredAt.In(JST).Format("2006-01-02 15:04"), Occurred: "不明",
		Kind: "速報", BundleName: BundleName(in.ID), Over1000: in.Persons > 1000}
	if in.OccurredAt != nil {
		d.Occurred = in.OccurredAt.In(JST).Format("2006-01-02 15:04")
	}
	switch {
	case in.FinalReportedAt != nil:
		d.Kind = "報告済み (確報 " + in.FinalReportedAt.In(JST).Format("2006-01-02") + ")"
	case in.PreliminaryReportedAt != nil:
		d.Kind = "確報"
	}
	d.Items = in.DataItems
	if d.Items == "" {
		var names []string
		for _, a := range in.Affected {
			if a.Kind == register.KindPI {
				names = append(names, a.Name)
			}
		}
		d.Items = strings.Join(names, "、")
	}
	for _, idx := range in.Events {
		e, err := s.eventAt(ctx, idx)
		if err != nil {
			return d, err
		}
		host, _ := e.Attrs["hostname"].(string)
		if host == "" && e.Agent != event.ServerStream {
			host = s.cfg.Hostname(ctx, e.Agent)
		}
		d.Events = append(d.Events, eventRow{Index: e.Index, Time: e.Time.In(JST).Format("2006-01-02 15:04:05"),
			Host: host, Type: labels.Of(labels.EventType, labels.JA, e.Type), Object: e.Object})
	}
	return d, nil
}

// WorksheetHTML writes the worksheet as a printable A4 page in Japanese.
func (s *Service) WorksheetHTML(ctx context.Context, w io.Writer, in Incident) error {
	d, err := s.worksheetData(ctx, in)
	if err != nil {
		return err
	}
	if err := worksheetTmpl.Execute(w, d); err != nil {
		return fmt.Errorf("incident: worksheet: %w", err)
	}
	return nil
}

// WorksheetCSV writes the worksheet as 項目,内容 rows: UTF-8 with a BOM so
// Excel opens it, cells Excel would run as formulas defused.
func (s *Service) WorksheetCSV(ctx context.Context, w io.Writer, in Incident) error {
	d, err := s.worksheetData(ctx, in)
	if err != nil {
		return err
	}
	yes := func(b bool) string {
		if b {
			return "該当"
		}
		return "非該当"
	}
	reported := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.In(JST).Format("2006-01-02 15:04")
	}
	rows := [][]string{
		{"項目", "内容"},
		{"管理番号", in.ID},
		{"件名", in.Title},
		{"報告区分", d.Kind},
		{"発覚日時", d.Discovered},
		{"発生日時", d.Occurred},
		{"速報の目安 (開始)", in.Deadlines.PreliminaryFrom},
		{"速報の目安 (終了)", in.Deadlines.PreliminaryBy},
		{"速報の報告日時", reported(in.PreliminaryReportedAt)},
		{"確報の期限", in.Deadlines.FinalBy},
		{"確報の期限日数", strconv.Itoa(in.Deadlines.FinalDays)},
		{"確報の報告日時", reported(in.FinalReportedAt)},
		{"報告の要否", in.ReportableReason},
		{"第1号 要配慮個人情報", yes(in.Sensitive)},
		{"第2号 財産的被害のおそれ", yes(in.PropertyDamage)},
		{"第3号 不正の目的のおそれ", yes(in.Intent)},
		{"第4号 1,000人超", yes(d.Over1000)},
		{"特定個人情報 (マイナンバー)", yes(in.MyNumber)},
		{"高度な暗号化等 (鍵は漏えいしていない)", yes(in.EncryptedKeySafe)},
		{"(1) 概要", in.Summary},
		{"(2) 個人データの項目", d.Items},
		{"(3) 本人の数", strconv.Itoa(in.Persons)},
		{"(4) 原因", in.Cause},
		{"(5) 二次被害又はそのおそれ", in.SecondaryDamage},
		{"(6) 本人への対応の実施状況", in.PeopleInformed},
		{"(7) 公表の実施状況", in.Publication},
		{"(8) 再発防止のための措置", in.Recurrence},
		{"(9) その他参考となる事項", strings.TrimSpace("講じた措置: " + in.Measures + "\n" + in.Notes)},
	}
	for _, a := range in.Affected {
		rows = append(rows, []string{"該当台帳 " + string(a.Kind) + "/" + a.ID,
			fmt.Sprintf("%s (件数 %d, 要配慮 %s) %s", a.Name, a.RecordCount, yes(a.Sensitive), a.Why)})
	}
	for _, e := range d.Events {
		rows = append(rows, []string{"証跡イベント #" + strconv.FormatInt(e.Index, 10), e.Time + " " + e.Host + " " + e.Type + " " + e.Object})
	}
	rows = append(rows, []string{"証跡バンドル", d.BundleName})
	if _, err := io.WriteString(w, "\ufeff"); err != nil {
		return err
	}
	cw := csvcell.NewWriter(w) // every cell defused and quoted
	for _, r := range rows {
		if err := cw.Write(r); err != nil {
			return fmt.Errorf("incident: csv: %w", err)
		}
	}
	return cw.Flush()
}
