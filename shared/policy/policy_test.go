package policy

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

const good = `apiVersion: mamori/v1
kind: Policy
name: pmark-baseline
description: Privacy Mark baseline for office PCs
controls:
  screenlock: {mode: enforce, max_idle: 10m, require_password: true}
  media:      {mode: enforce, default: block, allow_registered: true, allow_serials: [], log_file_writes: true}
  fileaccess: {mode: audit, paths: ["D:\\顧客"], exclude: ["~$*", "*.tmp"], bulk_threshold: 200}
  backup:     {mode: enforce, sources: [], destination: "\\\\nas\\backup", max_age: 26h, generations: 7}
  posture:    {mode: audit, disk_encryption: required, antivirus: required, os_update_max_age: 720h}
  agent:      {heartbeat: 5m, silent_after: 30m}
`

func TestParseDesignExample(t *testing.T) {
	p, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Controls.Screenlock.MaxIdle.D() != 10*time.Minute || p.Controls.FileAccess.Paths[0] != `D:\顧客` ||
		p.Controls.Backup.Destination != `\\nas\backup` || p.Controls.Media.Default != MediaBlock {
		t.Fatalf("parsed %+v", p.Controls)
	}
	// JSON form round-trips to the same version.
	b, _ := json.Marshal(p)
	q, err := ParseJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if q.Version() != p.Version() {
		t.Fatal("version changed over JSON")
	}
}

func TestParseErrorsNameLineAndField(t *testing.T) {
	bad := strings.Replace(good, "max_idle: 10m", "max_idle: 10 minutes", 1)
	_, err := Parse([]byte(bad))
	if err == nil || !strings.Contains(err.Error(), "line 6") {
		t.Fatalf("got %v", err)
	}
	bad = strings.Replace(good, "mode: audit, paths", "mode: watch, paths", 1)
	_, err = Parse([]byte(bad))
	var es Errors
	if !errors.As(err, &es) || es[0].Line != 8 || es[0].Field != "controls.fileaccess.mode" {
		t.Fatalf("got %v", err)
	}
	bad = strings.Replace(good, "generations: 7", "generation: 7", 1)
	if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "generation") {
		t.Fatalf("unknown field accepted: %v", err)
	}
	bad = strings.Replace(good, `paths: ["D:\\顧客"]`, `paths: ["顧客"]`, 1)
	if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "paths[0]") {
		t.Fatalf("relative path accepted: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	p, err := Parse([]byte("apiVersion: mamori/v1\nkind: Policy\nname: default\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Controls.FileAccess.Mode != Off || p.Controls.Agent.Heartbeat.D() != DefaultHeartbeat {
		t.Fatalf("%+v", p.Controls)
	}
}

// A file with a second YAML document used to apply the first and drop the
// second without a word.
func TestSecondDocumentRefused(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		line string
	}{
		{good + "---\n" + good, "line 12"}, // the line of the second ---
		{"---\n" + good + "---\napiVersion: mamori/v1\n", "line 13"},
		{good + "---\n", "line 12"},
		{good + "...\n---\nname: x\n", "line 13"},
	} {
		_, err := Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.line) || !strings.Contains(err.Error(), "one document") {
			t.Errorf("got %v, want %s and one document", err, tc.line)
		}
		// Stored by an older server, it keeps working as it did.
		if _, err := ParseStored([]byte(tc.doc)); err != nil {
			t.Errorf("stored: %v", err)
		}
	}
	// A leading --- and a document end marker are one document.
	for _, d := range []string{"---\n" + good, good + "...\n", "# c\n---\n" + good + "# end\n"} {
		if _, err := Parse([]byte(d)); err != nil {
			t.Errorf("%q: %v", d, err)
		}
	}
}

// A Shift_JIS file used to fail with "yaml: invalid leading UTF-8 octet",
// without a line or a hint.
func TestNotUTF8Refused(t *testing.T) {
	sjis := "apiVersion: mamori/v1\nkind: Policy\nname: default\ndescription: \x8c\xda\x8b\x71\n" // 顧客 in Shift_JIS
	_, err := Parse([]byte(sjis))
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "not UTF-8") ||
		!strings.Contains(err.Error(), "save it as UTF-8") {
		t.Fatalf("got %v", err)
	}
	if _, err := ParseStored([]byte(sjis)); err == nil || !strings.Contains(err.Error(), "not UTF-8") {
		t.Fatalf("stored: %v", err)
	}
	// A UTF-8 byte order mark is UTF-8; UTF-16 with its mark is read as before.
	if _, err := Parse([]byte("\ufeff" + good)); err != nil {
		t.Fatal(err)
	}
	var u16 []byte
	for _, r := range utf16.Encode([]rune("\ufeff" + good)) {
		u16 = append(u16, byte(r), byte(r>>8))
	}
	if _, err := Parse(u16); err != nil {
		t.Fatal(err)
	}
}
