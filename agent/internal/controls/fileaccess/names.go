package fileaccess

import (
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
)

// pathAttrs are the attrs of a fileaccess event that hold paths.
var pathAttrs = []string{"old_path", "moved_to", "deleted_as", "names", "moved_with", "removed_in", "moved_out_to"}

// escapeNames makes e valid UTF-8 without losing a byte. A name on disk is
// bytes (Linux) and need not be UTF-8 (a Shift_JIS name copied from an old
// share); the spool refuses such an event, which would leave the access out
// of the log. When any path of e is not UTF-8, every path (object, process,
// pathAttrs) is written with event.EscapeBytes and attr "path_encoding"
// says so, so that each reads back exactly and a literal "\x8c" in a name
// cannot pass for a byte. Other strings that are not UTF-8 (an error text
// naming such a file, a user name) are escaped the same way.
func escapeNames(e *event.Event) {
	bad := !utf8.ValidString(e.Object) || !utf8.ValidString(e.Process)
	for _, k := range pathAttrs {
		bad = bad || !validAttr(e.Attrs[k])
	}
	if bad {
		e.Object, e.Process = event.EscapeBytes(e.Object), event.EscapeBytes(e.Process)
		for _, k := range pathAttrs {
			if v, ok := e.Attrs[k]; ok {
				e.Attrs[k] = mapStrings(v, event.EscapeBytes)
			}
		}
		if e.Attrs == nil {
			e.Attrs = event.Attrs{}
		}
		e.Attrs["path_encoding"] = event.PathEncodingEscaped
	}
	if !utf8.ValidString(e.User) {
		e.User = event.EscapeBytes(e.User)
	}
	if !validAttr(map[string]any(e.Attrs)) {
		e.Attrs = mapStrings(map[string]any(e.Attrs), escapeInvalid).(map[string]any)
	}
}

func escapeInvalid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return event.EscapeBytes(s)
}

// validAttr reports whether every string in v (keys included) is UTF-8.
func validAttr(v any) bool {
	switch t := v.(type) {
	case string:
		return utf8.ValidString(t)
	case []string:
		for _, s := range t {
			if !utf8.ValidString(s) {
				return false
			}
		}
	case []any:
		for _, x := range t {
			if !validAttr(x) {
				return false
			}
		}
	case event.Attrs:
		return validAttr(map[string]any(t))
	case map[string]any:
		for k, x := range t {
			if !utf8.ValidString(k) || !validAttr(x) {
				return false
			}
		}
	}
	return true
}

// mapStrings returns v with f applied to every string in it, keys included.
func mapStrings(v any, f func(string) string) any {
	switch t := v.(type) {
	case string:
		return f(t)
	case []string:
		out := make([]string, len(t))
		for i, s := range t {
			out[i] = f(s)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = mapStrings(x, f)
		}
		return out
	case event.Attrs:
		return event.Attrs(mapStrings(map[string]any(t), f).(map[string]any))
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[f(k)] = mapStrings(x, f)
		}
		return out
	}
	return v
}
