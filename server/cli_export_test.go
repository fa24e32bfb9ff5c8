package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An auditor exports a bundle and a CSV with the CLI instead of curl, and
// the bundle verifies offline; a bad query is refused and writes nothing.
func TestExportCLI(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	work := t.TempDir()
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append(args, "--server", srv.URL(), "--data-dir", dir), &out, &errb)
		return code, out.String(), errb.String()
	}
	bundle := filepath.Join(work, "log.jsonl")
	if code, out, errs := cli("export", "--out", bundle); code != 0 || !strings.Contains(out, "mamori-server verify "+bundle) {
		t.Fatalf("export: %d %q %q", code, out, errs)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"verify", bundle, "--pubkey", filepath.Join(dir, "log-key.pub")}, &out, &errb); code != 0 {
		t.Fatalf("verify of the CLI's export: %d\n%s%s", code, out.String(), errb.String())
	}
	csv := filepath.Join(work, "log.csv")
	if code, _, errs := cli("export", "--format", "csv", "--out", csv); code != 0 {
		t.Fatalf("csv export: %d %q", code, errs)
	}
	if b, _ := os.ReadFile(csv); !bytes.HasPrefix(b, []byte("\ufeff\"ログ番号\"")) {
		t.Errorf("csv: %.100q", b)
	}
	for _, bad := range [][]string{
		{"export"},
		{"export", "--out", filepath.Join(work, "x"), "--format", "xml"},
		{"export", "--out", filepath.Join(work, "x"), "--from", "yesterday"},
		{"export", filepath.Join(work, "x")},
	} {
		if code, _, errs := cli(bad...); code != 2 || errs == "" {
			t.Errorf("%q: exit %d %q, want 2", bad, code, errs)
		}
	}
	if ents, _ := os.ReadDir(work); len(ents) != 2 {
		t.Errorf("refused exports left files: %v", ents)
	}
}
