package labels

import "testing"

func TestOf(t *testing.T) {
	for _, c := range []struct {
		set              Set
		lang, code, want string
	}{
		{Control, JA, "fileaccess", "ファイルアクセス"},
		{Control, EN, "fileaccess", "File access"},
		{EventType, JA, "file.read", "ファイル閲覧"},
		{Severity, JA, "violation", "違反"},
		{Status, JA, "active", "有効"},
		{Role, JA, "manager", "個人情報保護管理者"},
		{Role, JA, "auditor", "内部監査責任者"},
		{EventType, JA, "brand.new", "brand.new"}, // unknown codes show as they are
	} {
		if got := Of(c.set, c.lang, c.code); got != c.want {
			t.Errorf("Of(%s, %s, %s) = %q, want %q", c.set, c.lang, c.code, got, c.want)
		}
	}
}

func TestCode(t *testing.T) {
	if c := Code(Control, "ファイルアクセス"); c != "fileaccess" {
		t.Errorf("Code(ファイルアクセス) = %q", c)
	}
	if c := Code(Status, "有効"); c != "active" {
		t.Errorf("Code(有効) = %q", c)
	}
	if c := Code(Control, "nothing"); c != "nothing" {
		t.Errorf("Code(nothing) = %q", c)
	}
}

// Every label of a set is unique per language, or Code could not tell
// which code a label means.
func TestLabelsUnique(t *testing.T) {
	for s, m := range catalog {
		if s == Remedy {
			continue // advice, never read back as a filter
		}
		seen := map[string]string{}
		for c, l := range m {
			for _, v := range []string{"ja:" + l.ja, "en:" + l.en} {
				if o, dup := seen[v]; dup {
					t.Errorf("%s: %s and %s share label %s", s, c, o, v)
				}
				seen[v] = c
			}
		}
	}
}
