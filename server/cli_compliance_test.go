package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/compliance"
)

// The compliance table lines up with Japanese names (two columns a
// character) and says why each failing or unknown control is so.
func TestComplianceTable(t *testing.T) {
	seen := time.Date(2026, 12, 7, 16, 58, 0, 0, time.UTC)
	hosts := []compliance.Host{
		{Agent: "ag-1", Hostname: "PC-総務-01", Department: "総務部", LastSeen: &seen, Controls: map[string]compliance.ControlState{
			"screenlock": {Status: compliance.Unknown, Reason: "screenlock.no_gui", ReasonJA: "GUI がありません"},
			"media":      {Status: "pass"}, "fileaccess": {Status: compliance.Fail, ReasonJA: "監視対象のフォルダがありません: /srv/x"},
			"backup": {Status: "off"}, "posture": {Status: "pass"}}},
		{Agent: "ag-2", Hostname: "vm", Department: "営業", Controls: map[string]compliance.ControlState{"screenlock": {Status: "pass"}}},
	}
	var b bytes.Buffer
	writeCompliance(&b, hosts, "ja", time.Now())
	out := b.String()
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || cellWidth(lines[1][:strings.Index(lines[1], "総務部")]) != cellWidth(lines[2][:strings.Index(lines[2], "営業")]) {
		t.Errorf("columns do not line up:\n%s", out)
	}
	for _, want := range []string{"2026-12-08 01:58", "未受信", "違反", "不明", "対象外", "PC-総務-01 画面ロック (不明): GUI がありません",
		"監視対象のフォルダがありません: /srv/x"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
}

// Against a server: an empty fleet is said, a bad flag is a usage error.
func TestComplianceCLI(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	var out, errb bytes.Buffer
	if code := run([]string{"compliance", "--server", srv.URL(), "--data-dir", dir}, &out, &errb); code != 0 || !strings.Contains(out.String(), "該当する端末はありません") {
		t.Fatalf("compliance: %d %q %q", code, out.String(), errb.String())
	}
	errb.Reset()
	if code := run([]string{"compliance", "--status", "broken", "--server", srv.URL(), "--data-dir", dir}, &out, &errb); code != 2 {
		t.Errorf("bad status: %d %q", code, errb.String())
	}
}
