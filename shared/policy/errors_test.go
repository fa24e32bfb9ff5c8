package policy

import (
	"strings"
	"testing"
)

// office is a policy with no header comment, so that its mapping starts on
// line 1; each case below breaks one line of it.
var office = []string{
	"apiVersion: mamori/v1",         // 1
	"kind: Policy",                  // 2
	"name: office",                  // 3
	"description: office PCs",       // 4
	"controls:",                     // 5
	"  screenlock:",                 // 6
	"    mode: enforce",             // 7
	"    max_idle: 10m",             // 8
	"    require_password: true",    // 9
	"  media:",                      // 10
	"    mode: audit",               // 11
	"    default: allow",            // 12
	"    allow_registered: true",    // 13
	"  fileaccess:",                 // 14
	"    mode: audit",               // 15
	"    bulk_threshold: 200",       // 16
	`    exclude: ["~$*", "*.tmp"]`, // 17
	"  backup:",                     // 18
	"    mode: off",                 // 19
	"  posture:",                    // 20
	"    mode: audit",               // 21
}

// officeWith returns office with line n (1-based) replaced by s, or, for
// several pairs, each of them.
func officeWith(pairs ...any) []byte {
	ls := append([]string(nil), office...)
	for i := 0; i < len(pairs); i += 2 {
		ls[pairs[i].(int)-1] = pairs[i+1].(string)
	}
	return []byte(strings.Join(ls, "\n") + "\n")
}

// The YAML library names the line its parser was on when it gave up, one
// too early (its marks count from 0) or the line where the enclosing
// construct began: the admin looked at the wrong line. The error must name
// the line to fix.
func TestSyntaxErrorsNameTheLineToFix(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  []byte
		want string
	}{
		{"unclosed [ on line 17", officeWith(17, `    exclude: ["~$*", "*.tmp"`),
			"policy: line 17: did not find expected ',' or ']'"},
		{"mis-indented key on line 15", officeWith(15, " mode: audit"),
			"policy: line 15: did not find expected key"},
		{"tab on line 7", []byte("apiVersion: mamori/v1\nkind: Policy\nname: office\ncontrols:\n  screenlock:\n    mode: enforce\n\tmax_idle: 10m\n"),
			"policy: line 7: found a tab character that violates indentation"},
		// The same with a header comment, and a key mis-indented deep
		// inside (the library named the line of screenlock:, three early).
		{"mis-indented key under a header", append([]byte("# office PCs\n# second line\n"), officeWith(8, "   max_idle: 10m")...),
			"policy: line 10: did not find expected key (the key is indented unlike the keys of the mapping from line 8)"},
		// A mapping indented unlike its siblings is found at the sibling
		// that breaks it: both lines are named.
		{"mis-indented mapping", officeWith(6, " screenlock:", 7, "   mode: enforce", 8, "   max_idle: 10m", 9, "   require_password: true"),
			"policy: line 10: did not find expected key (the key is indented unlike the keys of the mapping from line 6)"},
		{"unclosed [ on line 1", []byte("[apiVersion, kind\n"),
			"policy: line 1: did not find expected ',' or ']'"},
		{"unclosed { in JSON", []byte("{\"apiVersion\": \"mamori/v1\",\n \"kind\": \"Policy\",\n \"controls\": {\"screenlock\": {\"mode\": \"off\"}\n}\n"),
			"policy: line 1: did not find expected ',' or '}'"},
		{"tab in a UTF-8 BOM file", append([]byte("\ufeff"), officeWith(12, "\tdefault: allow")...),
			"policy: line 12: found a tab character that violates indentation"},
		{"tab in a CRLF file", []byte(strings.ReplaceAll(string(officeWith(12, "\tdefault: allow")), "\n", "\r\n")),
			"policy: line 12: found a tab character that violates indentation"},
	} {
		_, err := Parse(tc.doc)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.want)
		}
	}
	// A second document's error names its line in the file too.
	d := append(officeWith(), []byte("---\nname: x\n  bad: [\n")...)
	if _, err := Parse(d); err == nil || !strings.Contains(err.Error(), "line 24") {
		t.Errorf("second document: %v", err)
	}
}

// A typo'd key used to say "field screenlok not found in type
// policy.Controls": Go names, no hint.
func TestUnknownKeysNamedWithSuggestion(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  []byte
		want string
	}{
		{"control", officeWith(6, "  screenlok:"),
			`policy: line 6: unknown key "screenlok" under controls (known: screenlock, media, fileaccess, backup, posture, agent; did you mean "screenlock"?)`},
		{"setting", officeWith(16, "    bulk_treshold: 200"),
			`policy: line 16: unknown key "bulk_treshold" under controls.fileaccess (known: mode, paths, folders, exclude, bulk_threshold, bulk_window, debounce, clauses; did you mean "bulk_threshold"?)`},
		{"top level", officeWith(1, "apiversion: mamori/v1"),
			`policy: line 1: unknown key "apiversion" at the top level (known: apiVersion, kind, name, description, controls; did you mean "apiVersion"?)`},
		{"nothing close", officeWith(9, "    colour: red"),
			`policy: line 9: unknown key "colour" under controls.screenlock (known: mode, max_idle, require_password, clauses)`},
		{"in a list", []byte("apiVersion: mamori/v1\nkind: Policy\nname: office\ncontrols:\n  fileaccess:\n    mode: audit\n    folders:\n    - path: /srv/a\n      registerid: PI-1\n"),
			`policy: line 9: unknown key "registerid" under controls.fileaccess.folders[0] (known: path, register_id; did you mean "register_id"?)`},
	} {
		_, err := Parse(tc.doc)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.name, err, tc.want)
		}
		if _, err := ParseStored(tc.doc); err == nil {
			t.Errorf("%s: stored policy with an unknown key accepted", tc.name)
		}
	}
	// Every unknown key is named, in file order.
	_, err := Parse(officeWith(6, "  screenlok:", 16, "    bulk_treshold: 200"))
	if err == nil || !strings.Contains(err.Error(), `line 6: unknown key "screenlok"`) || !strings.Contains(err.Error(), `; line 16: unknown key "bulk_treshold"`) {
		t.Errorf("two unknown keys: %v", err)
	}
	if _, err := Parse(officeWith()); err != nil {
		t.Fatalf("the office policy itself: %v", err)
	}
}

// A CSV, a text or a YAML list given as a policy says it is not one,
// without the YAML library's "cannot unmarshal !!str" and a cut character.
func TestNotAPolicy(t *testing.T) {
	for name, doc := range map[string]string{
		"csv":  "管理番号,登録日,製品名\r\nMD-1,2026-01-10,USB\r\n",
		"text": "hello world\n",
		"list": "- a\n- b\n",
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), "this is not a policy") || strings.Contains(err.Error(), "unmarshal") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
