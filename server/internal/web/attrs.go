package web

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

// attrForPeople says an attribute of e in the page's language where the
// agent wrote it for machines or in English: a bulk summary's sentence
// and counts by operation, Go durations. ok is false for the rest, which
// attrText writes as they are.
func attrForPeople(e api.Stored, k string, v any, lang string) (string, bool) {
	if d, ok := labels.DurationAttr(k, v, lang); ok {
		return d, true
	}
	if e.Type != "fileaccess.bulk" || lang == labels.EN {
		return "", false
	}
	switch k {
	case "summary":
		if s := bulkSummary(e.Event, lang); s != "" {
			return s, true
		}
	case "counts", "totals":
		if m := attrMap(v); m != nil {
			return opCounts(m, lang), true
		}
	case "processes":
		if m := attrMap(v); m != nil {
			parts := make([]string, 0, len(m))
			for _, p := range slices.Sorted(maps.Keys(m)) {
				name := p
				if p == "(others)" {
					name = "その他"
				}
				parts = append(parts, name+": "+labels.Value(m[p], lang, time.UTC))
			}
			return strings.Join(parts, ", "), true
		}
	}
	return "", false
}

func attrMap(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		return x
	case event.Attrs:
		return x
	}
	return nil
}

// attrInt reads a number as the store returns it (json.Number, float64, int).
func attrInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		return int64(x), true
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// grouped writes n with thousands separators ("1,243"), as the agent does.
func grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// opCounts says counts per operation (read, modified, ...), most first:
// 「読み取り 72、変更 1」.
func opCounts(m map[string]any, lang string) string {
	type kv struct {
		k string
		n int64
	}
	var all []kv
	for k, v := range m {
		n, ok := attrInt(v)
		if !ok {
			continue
		}
		all = append(all, kv{k, n})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.k, b.k)) })
	parts := make([]string, len(all))
	for i, c := range all {
		name := c.k
		switch {
		case labels.Known(labels.Operation, c.k):
			name = labels.Of(labels.Operation, lang, c.k)
		case labels.Known(labels.EventType, "file."+c.k):
			name = labels.Of(labels.EventType, lang, "file."+c.k)
		}
		parts[i] = name + " " + grouped(c.n)
	}
	sep := ", "
	if lang != labels.EN {
		sep = "、"
	}
	return strings.Join(parts, sep)
}

// bulkSummary writes a fileaccess.bulk event's summary in Japanese from
// its attributes (the agent's summary sentence is English): who, over how
// long, how many, by operation: 「cat が 5秒間に 73 件のファイル操作（読み取り
// 72、変更 1）」. "" when the attributes do not say enough.
func bulkSummary(e event.Event, lang string) string {
	total, ok := attrInt(e.Attrs["total"])
	totals := attrMap(e.Attrs["totals"])
	if !ok || totals == nil {
		return ""
	}
	var b strings.Builder
	if p := e.Process; p != "" {
		if i := strings.LastIndexAny(p, `/\`); i >= 0 && i < len(p)-1 {
			p = p[i+1:]
		}
		b.WriteString(p + " が ")
	}
	switch src, _ := e.Attrs["attribution_source"].(string); src {
	case "while_agent_stopped":
		b.WriteString("エージェント停止中に ")
	case "not_recorded":
		b.WriteString("記録できなかった間に ")
	default:
		from, _ := e.Attrs["from"].(string)
		to, _ := e.Attrs["to"].(string)
		tf, err1 := time.Parse(time.RFC3339Nano, from)
		tt, err2 := time.Parse(time.RFC3339Nano, to)
		if err1 == nil && err2 == nil && !tt.Before(tf) {
			d := labels.Duration(tt.Sub(tf), lang)
			if !strings.HasSuffix(d, "時間") { // 5秒間, 1時間
				d += "間"
			}
			b.WriteString(d + "に ")
		}
	}
	fmt.Fprintf(&b, "%s 件のファイル操作（%s）", grouped(total), opCounts(totals, lang))
	return b.String()
}
