package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The YAML library's syntax errors name a line the admin should not look
// at. It counts its marks from 0 and, for parser errors, names the line of
// the enclosing construct's start (a flow collection's bracket, a block
// mapping) without adding 1 — falling back to where it stopped, also from
// 0, when that start is on the first line; for scanner errors it adds 1 to
// the construct's start. So an unclosed "[" on line 17 said line 16, a key
// mis-indented on line 15 said line 14 (or the line of the mapping it broke
// out of), and a tab on line 7, after a value on line 6, said line 6.
// syntaxError names the line to fix instead.

// yamlSyntaxRE matches the library's syntax errors (unmarshal errors, whose
// lines are right, read "yaml: unmarshal errors:").
var yamlSyntaxRE = regexp.MustCompile(`^yaml: line (\d+): (.+)$`)

// syntaxError returns err, a decoding error of doc, naming the line to fix:
// the line of the unclosed bracket for an unclosed flow collection, else
// the first line at which the file stops being the start of a valid YAML
// stream with this error (a mis-indented key, a tab).
func syntaxError(doc []byte, err error) error {
	m := yamlSyntaxRE.FindStringSubmatch(err.Error())
	if m == nil || bytes.HasPrefix(doc, []byte{0xfe, 0xff}) || bytes.HasPrefix(doc, []byte{0xff, 0xfe}) {
		return fmt.Errorf("policy: %w", err) // no line, or UTF-16: as the library says
	}
	msg := m[2]
	line, start := lineToFix(bytes.TrimPrefix(doc, []byte("\ufeff")), msg)
	switch {
	case line == 0:
		return fmt.Errorf("policy: %w", err)
	case msg == "did not find expected ',' or ']'":
		return fmt.Errorf("policy: line %d: %s (a \"[\" on this line is not closed, or a comma is missing)", line, msg)
	case msg == "did not find expected ',' or '}'":
		return fmt.Errorf("policy: line %d: %s (a \"{\" on this line is not closed, or a comma is missing)", line, msg)
	case msg == "did not find expected key" && start > 0 && start < line:
		// The key is indented unlike its mapping's: either may be wrong.
		return fmt.Errorf("policy: line %d: %s (the key is indented unlike the keys of the mapping from line %d)", line, msg, start)
	}
	return fmt.Errorf("policy: line %d: %s", line, msg)
}

// firstSyntaxError decodes every document of doc and returns the line and
// message of the first syntax error, if any.
func firstSyntaxError(doc []byte) (int, string, bool) {
	d := yaml.NewDecoder(bytes.NewReader(doc))
	for {
		var n yaml.Node
		err := d.Decode(&n)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			return 0, "", false
		}
		m := yamlSyntaxRE.FindStringSubmatch(err.Error())
		if m == nil {
			return 0, "", false
		}
		line, _ := strconv.Atoi(m[1])
		return line, m[2], true
	}
}

// lineToFix returns the 1-based line of doc to fix for the syntax error
// msg, or 0 if it cannot tell, and the line where the construct the error
// is in starts (for parser errors; else near it). It costs a few parses of
// doc (a binary search), only on the error path.
func lineToFix(doc []byte, msg string) (line, start int) {
	// With a blank line in front, no construct starts on the library's
	// line 0, so it names the start of the construct (or, for errors
	// without one, where it stopped): on the original's 1-based line for
	// parser errors, the line after for scanner errors.
	start, m, ok := firstSyntaxError(append([]byte("\n"), doc...))
	if !ok || m != msg || start < 1 {
		return 0, 0
	}
	// An unclosed flow collection is fixed where its bracket opens.
	if msg == "did not find expected ',' or ']'" || msg == "did not find expected ',' or '}'" {
		return start, start
	}
	// Else the first line whose end makes the prefix fail with msg: a
	// construct's start is before or on it.
	ends := lineEnds(doc)
	fails := func(k int) bool { // the first k lines fail with msg
		if k <= 0 {
			return false
		}
		_, m, ok := firstSyntaxError(doc[:ends[k-1]])
		return ok && m == msg
	}
	lo, hi := max(1, start-1), len(ends)
	if lo > hi || fails(lo-1) {
		lo = 1
	}
	if !fails(hi) {
		return 0, 0
	}
	for lo < hi { // smallest k in [lo, hi] that fails
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, start
}

// lineEnds returns the offset just past each line of doc: after "\n",
// "\r\n" or a lone "\r", and the end of the last line.
func lineEnds(doc []byte) []int {
	var ends []int
	for i := 0; i < len(doc); i++ {
		switch {
		case doc[i] == '\n':
			ends = append(ends, i+1)
		case doc[i] == '\r' && (i+1 == len(doc) || doc[i+1] != '\n'):
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(doc) {
		ends = append(ends, len(doc))
	}
	return ends
}

// maxUnknownKeys bounds the unknown keys one error names.
const maxUnknownKeys = 20

// unknownKeys checks n, decoded into a value of type t at path (dotted, as
// FieldError.Field), for keys t has no field for. The decoder's own error
// named Go types ("field screenlok not found in type policy.Controls");
// these name the place, the keys known there (from the yaml tags) and the
// closest one.
func unknownKeys(n *yaml.Node, t reflect.Type, path string, out *Errors) {
	if n.Kind == yaml.AliasNode {
		return // walked where its anchor is; not again per alias (alias bombs)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Time]() || reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return // decoded by its own rules
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		names, types := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Value == "<<" {
				continue // a merge key or a complex key: the decoder judges
			}
			ft, ok := types[k.Value]
			if !ok {
				if len(*out) < maxUnknownKeys {
					*out = append(*out, &FieldError{Line: k.Line, Msg: unknownKeyMsg(k.Value, path, names)})
				}
				continue
			}
			unknownKeys(v, ft, joinPath(path, k.Value), out)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			unknownKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields returns the YAML keys of struct t in field order, and each
// key's type, as the decoder reads them (tag name, else the lower-cased
// field name; "-" skipped; inline structs flattened).
func yamlFields(t reflect.Type) ([]string, map[string]reflect.Type) {
	var names []string
	types := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",inline,") && f.Type.Kind() == reflect.Struct {
			in, inTypes := yamlFields(f.Type)
			for _, n := range in {
				names, types[n] = append(names, n), inTypes[n]
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		names, types[name] = append(names, name), f.Type
	}
	return names, types
}

// unknownKeyMsg says that key is not known at path, which keys are, and
// the closest one when it is close.
func unknownKeyMsg(key, path string, known []string) string {
	where := "at the top level"
	if path != "" {
		where = "under " + path
	}
	s := fmt.Sprintf("unknown key %q %s (known: %s", key, where, strings.Join(known, ", "))
	if k := closest(key, known); k != "" {
		s += fmt.Sprintf("; did you mean %q?", k)
	}
	return s + ")"
}

// closest returns the known key nearest to key by edit distance (a swap of
// two neighbours counting as one edit, case ignored), if it is within
// about one edit per five characters; else "".
func closest(key string, known []string) string {
	if len(key) > 64 {
		return ""
	}
	limit := min(1+len([]rune(key))/5, 3)
	best, bestD := "", limit+1
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance of a and b, in
// runes: insertions, deletions, substitutions and adjacent swaps.
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}
