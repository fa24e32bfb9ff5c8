package policy

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
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
