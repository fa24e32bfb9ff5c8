package register

import (
	"crypto/sha256"
	"encoding/hex"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
)

// maxChangeValue bounds each before/after value in a change's event, so
// that a change of several long fields stays within an event's attrs
// (event.MaxAttrsLen); entry_sha256 still pins the whole entry.
const maxChangeValue = 1000

// ChangeAttrs are the attrs of a register change's event: the fields that
// changed with their values before and after, and the SHA-256 of the entry
// after it. The hash-chained log then holds the change itself, not only a
// pointer into etcd's history, which is not tamper-evident.
func ChangeAttrs(c Change) event.Attrs {
	a := event.Attrs{"kind": string(c.Kind), "version": c.Version, "revision": c.Revision}
	var (
		fields        []any
		before, after = map[string]any{}, map[string]any{}
	)
	created := len(c.Before) == 0
	for _, f := range Diff(c.Kind, c.Before, c.After) {
		if created && f.After == "" {
			continue
		}
		fields = append(fields, f.Field)
		before[f.Field], after[f.Field] = clip(f.Before), clip(f.After)
	}
	// Two flat maps rather than one of pairs: the event page shows each as
	// "field: value", which people read without knowing JSON. A new entry
	// has no before.
	if len(fields) > 0 {
		a["changed"], a["after"] = fields, after
		if !created {
			a["before"] = before
		}
	}
	if c.Cause != "" {
		a["cause"] = c.Cause
	}
	sum := sha256.Sum256(c.After)
	a["entry_sha256"] = hex.EncodeToString(sum[:])
	return a
}

// clip shortens s to at most maxChangeValue bytes on a rune boundary.
func clip(s string) string {
	if len(s) <= maxChangeValue {
		return s
	}
	n := maxChangeValue
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…(truncated)"
}

// FieldLabel names field of register k in lang ("owner" is 管理責任者), for
// pages that show a change's before and after; an unknown field is itself.
func FieldLabel(k Kind, field, lang string) string {
	for _, f := range FormFields(k) {
		if f.Name == field {
			if lang == LangJA {
				return f.LabelJA
			}
			return f.LabelEN
		}
	}
	return field
}

// ValueLabel says a closed-set value (status, medium) in lang: "lost" is
// 紛失; any other value is itself.
func ValueLabel(field, v, lang string) string {
	if lang != LangJA {
		return v
	}
	if j, ok := map[string]map[string]string{"status": statusJA, "medium": mediumJA}[field][v]; ok {
		return j
	}
	return v
}
