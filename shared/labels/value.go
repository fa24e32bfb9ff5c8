package labels

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Value writes an attribute's value for people: a list as its items, an
// object as "key: value" in key order, one level deep (what agents send),
// anything deeper as JSON; an RFC 3339 time in loc, a boolean as yes or
// no in lang. fmt.Sprint would show Go's map[create:1 write:2].
func Value(v any, lang string, loc *time.Location) string {
	switch x := v.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = scalar(e, lang, loc)
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		parts := make([]string, 0, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			parts = append(parts, k+": "+scalar(x[k], lang, loc))
		}
		return strings.Join(parts, ", ")
	}
	return scalar(v, lang, loc)
}

// Attrs writes attributes as "label: value" lines in key order, labels
// in lang: an event's attributes in one spreadsheet cell people read.
func Attrs(a map[string]any, lang string, loc *time.Location) string {
	lines := make([]string, 0, len(a))
	for _, k := range slices.Sorted(maps.Keys(a)) {
		v := Value(a[k], lang, loc)
		if d, ok := DurationAttr(k, a[k], lang); ok {
			v = d
		}
		lines = append(lines, Of(Attr, lang, k)+": "+v)
	}
	return strings.Join(lines, "\n")
}

// durationAttrs are attributes agents and the server write as Go
// durations ("10s", "5m0s", "24h0m0s").
var durationAttrs = map[string]bool{"window": true, "max_idle": true, "max_age": true, "skew": true, "rewind": true, "keep": true}

// DurationAttr says attribute k's value v for people when it is a Go
// duration (10秒, 5分, 1日 in Japanese); ok is false for anything else,
// such as backup's keep, which counts generations.
func DurationAttr(k string, v any, lang string) (string, bool) {
	s, isStr := v.(string)
	if !isStr || !durationAttrs[k] || (k == "keep" && !strings.ContainsAny(s, "hms")) {
		return "", false
	}
	return DurationText(s, lang), true
}

func scalar(v any, lang string, loc *time.Location) string {
	switch x := v.(type) {
	case string:
		if len(x) >= 20 && x[10] == 'T' {
			if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return t.In(loc).Format("2006-01-02 15:04:05.000")
			}
		}
		return x
	case json.Number:
		return x.String()
	case bool:
		if x {
			return Of(YesNo, lang, "yes")
		}
		return Of(YesNo, lang, "no")
	case int, int64, uint64, float64:
		return fmt.Sprint(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
