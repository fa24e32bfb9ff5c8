package labels

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

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

// Every attribute key the programs put in an event has a label, so that an
// event's page never shows a bare code such as "from_seq". It reads the
// repository's Go sources: event.Attrs literals, and keys set on a map
// named a or attrs (the convention where attributes are built up) or on
// an event's Attrs field.
func TestEveryAttrHasLabel(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	missing := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "loadgen", "storetest", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		need := func(lit ast.Expr) {
			b, ok := lit.(*ast.BasicLit)
			if !ok || b.Kind != token.STRING {
				return
			}
			k, err := strconv.Unquote(b.Value)
			if err != nil || Of(Attr, JA, k) != k {
				return
			}
			missing[k] = fset.Position(b.Pos()).String()
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CompositeLit:
				if sel, ok := x.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Attrs" {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "event" {
						for _, el := range x.Elts {
							if kv, ok := el.(*ast.KeyValueExpr); ok {
								need(kv.Key)
							}
						}
					}
				}
			case *ast.AssignStmt:
				for _, l := range x.Lhs {
					if ix, ok := l.(*ast.IndexExpr); ok {
						switch x := ix.X.(type) {
						case *ast.Ident:
							if x.Name == "a" || x.Name == "attrs" {
								need(ix.Index)
							}
						case *ast.SelectorExpr: // e.Attrs["old_path"] = ...
							if x.Sel.Name == "Attrs" {
								need(ix.Index)
							}
						}
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, at := range missing {
		t.Errorf("attribute %q (%s) has no label in the %s set", k, at, Attr)
	}
}

func TestDuration(t *testing.T) {
	for _, c := range []struct {
		in, ja, en string
	}{
		{"10s", "10秒", "10s"}, {"5m0s", "5分", "5m"}, {"1h0m0s", "1時間", "1h"}, {"1h30m0s", "1時間30分", "1h30m"},
		{"90s", "1分30秒", "1m30s"}, {"48h", "2日", "2d"}, {"73ms", "73ミリ秒", "73ms"}, {"0s", "0秒", "0s"},
		{"fast", "fast", "fast"},
	} {
		if got := DurationText(c.in, JA); got != c.ja {
			t.Errorf("DurationText(%q, ja) = %q, want %q", c.in, got, c.ja)
		}
		if got := DurationText(c.in, EN); got != c.en {
			t.Errorf("DurationText(%q, en) = %q, want %q", c.in, got, c.en)
		}
	}
}

// The access-log CSV's 属性 cell says durations as people do (a bulk
// summary's window, a clock skew), not as Go writes them; backup's keep,
// a count, stays a number.
func TestAttrsSayDurations(t *testing.T) {
	got := Attrs(map[string]any{"window": "10s", "skew": "1h30m0s", "keep": "7"}, JA, time.UTC)
	for _, want := range []string{": 10秒", ": 1時間30分", ": 7"} {
		if !strings.Contains(got, want) {
			t.Errorf("Attrs lacks %q:\n%s", want, got)
		}
	}
}
