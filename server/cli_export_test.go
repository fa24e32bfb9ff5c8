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
	// Days as an auditor types them, in JST.
	day := filepath.Join(work, "day.jsonl")
	if code, _, errs := cli("export", "--out", day, "--from", "2026-01-01", "--to", "2099-01-01"); code != 0 {
		t.Fatalf("export by days: %d %q", code, errs)
	}
	if b, _ := os.ReadFile(day); !bytes.Contains(b, []byte(`2026-01-01T00:00:00+09:00`)) && !bytes.Contains(b, []byte(`2025-12-31T15:00:00Z`)) {
		t.Errorf("the bundle's query lacks the JST day: %.300s", b)
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
	if ents, _ := os.ReadDir(work); len(ents) != 3 {
		t.Errorf("refused exports left files: %v", ents)
	}
}
