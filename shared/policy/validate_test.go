package policy

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// doc is a policy whose controls section is body (line 5 onwards).
func doc(body string) []byte {
	return []byte("apiVersion: mamori/v1\nkind: Policy\nname: default\ncontrols:\n" + body)
}

// wantFieldError parses body and wants one error on field at line.
func wantFieldError(t *testing.T, body, field string, line int, msg ...string) {
	t.Helper()
	_, err := Parse(doc(body))
	var es Errors
	if !errors.As(err, &es) {
		t.Errorf("%s: accepted or not a field error: %v", body, err)
		return
	}
	for _, e := range es {
		if e.Field == field && e.Line == line {
			for _, m := range msg {
				if !strings.Contains(e.Msg, m) {
					t.Errorf("%s: %q does not say %q", body, e.Error(), m)
				}
			}
			return
		}
	}
	t.Errorf("%s: want %s at line %d, got %v", body, field, line, err)
}

// The agent's backup control refuses a source and destination that contain
// one another (and with it the whole policy); the server must refuse the
// PUT instead, whichever OS's paths the policy names.
func TestBackupOverlapRefused(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{
		{"/tmp/lin/顧客データ", "/tmp/lin/顧客データ/bk"}, // the tester's case
		{"/tmp/lin/顧客データ/", "/tmp/lin/./顧客データ"}, // the same folder
		{"/srv/data/a", "/srv/data"},            // source inside destination
		{"/srv/data", "/srv/x/../data/bk"},      // after cleaning
		{`C:\Data`, `c:\data\bk`},               // Windows: case-insensitive
		{`C:/Users/顧客`, `c:\USERS\顧客\Backup`},   // either separator
		{`D:\`, `d:\bk`},                        // a drive root
		{`\\nas\share\顧客`, `\\NAS\Share\顧客\bk`}, // UNC
		{`\\nas\share\a\bk`, `\\nas\share\A`},   // UNC, source inside
		{`C:\Data\Sub\..`, `C:\data\BK`},        // after cleaning
		{"C:\\Ünïcode", "c:\\üNÏCODE\\bk"},      // non-ASCII case
		{"/", "/srv/bk"},                        // the root holds everything
		{"//nas/share/a", `\\nas\share\a\bk`},   // UNC with slashes, as Windows reads it
	} {
		body := "  backup: {mode: enforce, sources: [" + q(tc.src) + "], destination: " + q(tc.dst) + "}\n"
		wantFieldError(t, body, "controls.backup.sources[0]", 5, "overlap")
	}
	// Block style: the error points at the source's own line.
	wantFieldError(t, "  backup:\n    mode: audit\n    sources:\n      - /home\n      - /srv/a\n    destination: /srv\n",
		"controls.backup.sources[1]", 9, "overlap", `"/srv"`)
	// Register folders written into the document are sources too.
	wantFieldError(t, "  backup: {mode: enforce, folders: [{path: /srv/a, register_id: r1}], destination: /srv}\n",
		"controls.backup.folders[0].path", 5, "overlap")
	for _, tc := range []struct{ src, dst string }{
		{"/tmp/lin/顧客データ", "/tmp/lin/顧客データ2"}, // a name prefix is not containment
		{"/tmp/lin/顧客データ2", "/tmp/lin/顧客データ"},
		{"/Data", "/data/bk"}, // POSIX paths are case-sensitive
		{`C:\Data`, `D:\Data\bk`},
		{`C:\Data`, `C:\Data2`},
		{`\\nas\share\a`, `\\nas\share2\a\bk`},
		{`\\nas\share\a`, `\\nas2\share\a\bk`},
		{`C:\Data`, "/Data/bk"}, // different machines
	} {
		body := "  backup: {mode: enforce, sources: [" + q(tc.src) + "], destination: " + q(tc.dst) + "}\n"
		if _, err := Parse(doc(body)); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
	// observe copies nothing, so its destination may hold the sources.
	if _, err := Parse(doc("  backup: {mode: audit, method: observe, sources: [/srv], destination: /srv/bk}\n")); err != nil {
		t.Error(err)
	}
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }

// Checks the agent controls make at Apply, which the server must make too.
func TestAgentParseChecksOnServer(t *testing.T) {
	for _, tc := range []struct {
		body, field, msg string
	}{
		{"  backup: {mode: enforce, sources: [/a], destination: backup}\n", "controls.backup.destination", "absolute"},
		{"  backup: {mode: enforce, sources: [/a], destination: /b, schedule: 30s}\n", "controls.backup.schedule", "1m"},
		{"  screenlock: {mode: enforce, max_idle: 45s}\n", "controls.screenlock.max_idle", "1m"},
		{"  screenlock: {mode: enforce, max_idle: 25h}\n", "controls.screenlock.max_idle", "24h"},
		{"  screenlock: {mode: enforce, max_idle: 90500ms}\n", "controls.screenlock.max_idle", "whole seconds"},
	} {
		wantFieldError(t, tc.body, tc.field, 5, tc.msg)
	}
}

// An explicit 0 used to turn silently into the default; it is refused with
// the minimum and what leaving the key out gives.
func TestExplicitZeroRefused(t *testing.T) {
	for _, tc := range []struct {
		body, field, min, def string
	}{
		{"  screenlock: {mode: enforce, max_idle: 0s}\n", "controls.screenlock.max_idle", "1m", "10m"},
		{"  fileaccess: {mode: audit, bulk_threshold: 0}\n", "controls.fileaccess.bulk_threshold", "1", "200"},
		{"  fileaccess: {mode: audit, bulk_window: 0s}\n", "controls.fileaccess.bulk_window", "1s", "10s"},
		{"  fileaccess: {mode: audit, debounce: 0s}\n", "controls.fileaccess.debounce", "100ms", "300ms"},
		{"  backup: {mode: off, max_age: 0s}\n", "controls.backup.max_age", "1h", "26h"},
		{"  backup: {mode: off, generations: 0}\n", "controls.backup.generations", "1", "7"},
		{"  backup: {mode: off, schedule: 0s}\n", "controls.backup.schedule", "1m", "half of max_age"},
		{"  agent: {heartbeat: 0s}\n", "controls.agent.heartbeat", "10s", "5m"},
		{"  agent: {silent_after: 0s}\n", "controls.agent.silent_after", "heartbeat", "30m"},
	} {
		wantFieldError(t, tc.body, tc.field, 5, tc.min, "leave", tc.def)
	}
	// Line of the key itself in block style.
	wantFieldError(t, "  backup:\n    mode: off\n    max_age: 1s\n    generations: 0\n", "controls.backup.generations", 8, "leave", "7")
}

// Values too small to mean anything are refused with the range.
func TestTinyValuesRefused(t *testing.T) {
	for _, tc := range []struct {
		body, field, msg string
	}{
		{"  backup: {mode: off, max_age: 1s}\n", "controls.backup.max_age", "at least 1h"},
		{"  backup: {mode: off, max_age: 2h, schedule: 3h}\n", "controls.backup.schedule", "2h"},
		{"  backup: {mode: off, schedule: 27h}\n", "controls.backup.schedule", "26h"},
		{"  fileaccess: {mode: audit, debounce: 1ms}\n", "controls.fileaccess.debounce", "100ms to 1m"},
		{"  fileaccess: {mode: audit, debounce: 2m}\n", "controls.fileaccess.debounce", "100ms to 1m"},
		{"  fileaccess: {mode: audit, bulk_window: 10ms}\n", "controls.fileaccess.bulk_window", "at least 1s"},
		{"  agent: {silent_after: 1m}\n", "controls.agent.silent_after", "5m"}, // longer than the default heartbeat
	} {
		wantFieldError(t, tc.body, tc.field, 5, tc.msg)
	}
}

// A key left out (or written as null) still takes its default.
func TestAbsentKeysTakeDefaults(t *testing.T) {
	for _, body := range []string{
		"  screenlock: {mode: enforce}\n  fileaccess: {mode: audit}\n  backup: {mode: off}\n  agent: {}\n",
		"  screenlock: {mode: enforce, max_idle: ~}\n  fileaccess: {mode: audit, bulk_threshold: null, debounce: ~}\n" +
			"  backup: {mode: off, max_age: ~, generations: ~, schedule: ~}\n  agent: {heartbeat: ~, silent_after: ~}\n",
	} {
		p, err := Parse(doc(body))
		if err != nil {
			t.Fatal(err)
		}
		c := p.Controls
		if c.Screenlock.MaxIdle.D() != DefaultMaxIdle || c.FileAccess.BulkThreshold != DefaultBulkThreshold ||
			c.FileAccess.BulkWindow.D() != DefaultBulkWindow || c.FileAccess.Debounce.D() != DefaultDebounce ||
			c.Backup.MaxAge.D() != DefaultBackupMaxAge || c.Backup.Generations != DefaultGenerations ||
			c.Backup.Schedule.D() != DefaultBackupMaxAge/2 || c.Agent.Heartbeat.D() != DefaultHeartbeat ||
			c.Agent.SilentAfter.D() != DefaultSilentAfter {
			t.Fatalf("defaults not applied: %+v", c)
		}
	}
	// The bounds themselves are allowed.
	if _, err := Parse(doc("  screenlock: {mode: enforce, max_idle: 1m}\n  fileaccess: {mode: audit, bulk_threshold: 1, bulk_window: 1s, debounce: 100ms}\n" +
		"  backup: {mode: off, max_age: 1h, schedule: 1h, generations: 1}\n  agent: {heartbeat: 10s, silent_after: 11s}\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(doc("  screenlock: {mode: enforce, max_idle: 24h}\n  fileaccess: {mode: audit, debounce: 1m}\n  backup: {mode: off, max_age: 2h, schedule: 1m}\n")); err != nil {
		t.Fatal(err)
	}
}

// exclude: [] means "exclude nothing"; the JSON the agents get used to drop
// it, and the agent then applied the default patterns.
func TestEmptyExcludeSurvivesJSON(t *testing.T) {
	p, err := Parse(doc("  fileaccess: {mode: audit, exclude: []}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	a, err := ParseJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Controls.FileAccess.Exclude) != 0 {
		t.Fatalf("agent excludes %q", a.Controls.FileAccess.Exclude)
	}
	// Left out, the defaults apply on both sides.
	p, _ = Parse(doc("  fileaccess: {mode: audit}\n"))
	b, _ = json.Marshal(p)
	if a, _ = ParseJSON(b); len(a.Controls.FileAccess.Exclude) != len(DefaultExclude) {
		t.Fatalf("agent excludes %q", a.Controls.FileAccess.Exclude)
	}
}

// make demo's policy (scripts/demo.sh fills in the folder).
func TestDemoPolicyParses(t *testing.T) {
	b, err := os.ReadFile("../../scripts/demo-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse([]byte(strings.ReplaceAll(string(b), "@DEMO_FOLDER@", "/tmp/mamori-demo/顧客データ")))
	if err != nil {
		t.Fatal(err)
	}
	if p.Controls.Agent.Heartbeat.D() != time.Minute {
		t.Fatalf("%+v", p.Controls.Agent)
	}
}

// TestStoredPolicyOutlivesStricterChecks: a policy stored by a server
// before a check joined Parse is still read (and served to agents) after
// the upgrade; only a new PUT is held to the new checks.
func TestStoredPolicyOutlivesStricterChecks(t *testing.T) {
	doc := []byte("apiVersion: " + APIVersion + "\nkind: " + Kind + "\nname: old\ncontrols:\n  screenlock: {mode: enforce, max_idle: 0s}\n  backup: {mode: audit, destination: /srv/backup, max_age: 2m}\n")
	if _, err := Parse(doc); err == nil {
		t.Fatal("Parse took an explicit 0 and a 2m max_age")
	}
	p, err := ParseStored(doc)
	if err != nil {
		t.Fatalf("a stored policy of an older server: %v", err)
	}
	if p.Controls.Screenlock.MaxIdle.D() != 10*time.Minute {
		t.Errorf("stored policy not normalized: %+v", p.Controls.Screenlock)
	}
}

// The destination must neither hold nor lie inside a watched folder either:
// the agent's copies would land in the access log as changes to personal
// data (docs/controls.md, backup.destination).
func TestBackupDestinationOverlapsWatchedFolder(t *testing.T) {
	for _, tc := range []struct{ watched, dst string }{
		{"/tmp/w", "/tmp/w/bk"},                 // destination inside the watched folder
		{"/tmp/w/顧客", "/tmp/w"},                 // destination holds the watched folder
		{"/tmp/w/", "/tmp/x/../w/./bk"},         // after cleaning
		{`C:\Data`, `c:\DATA\bk`},               // Windows: case-insensitive
		{`\\nas\share\顧客\bk`, `\\NAS\Share\顧客`}, // UNC
	} {
		body := "  fileaccess: {mode: audit, paths: [" + q(tc.watched) + "]}\n" +
			"  backup: {mode: enforce, sources: [/src], destination: " + q(tc.dst) + "}\n"
		wantFieldError(t, body, "controls.fileaccess.paths[0]", 5, "overlap", "watched folder", "neither hold nor lie inside")
	}
	// Register folders written into the document are watched folders too.
	wantFieldError(t, "  fileaccess: {mode: audit, folders: [{path: /srv/a, register_id: r1}]}\n  backup: {mode: enforce, sources: [/src], destination: /srv}\n",
		"controls.fileaccess.folders[0].path", 5, "overlap")
	// Block style: the error points at the watched folder's own line.
	wantFieldError(t, "  fileaccess:\n    mode: audit\n    paths:\n      - /home\n      - /tmp/w\n  backup: {mode: enforce, sources: [/src], destination: /tmp/w/bk}\n",
		"controls.fileaccess.paths[1]", 9, "overlap", `"/tmp/w/bk"`)
	// The source message says the same rule.
	wantFieldError(t, "  backup: {mode: enforce, sources: [/srv/a], destination: /srv}\n",
		"controls.backup.sources[0]", 5, "neither hold nor lie inside")
	for _, body := range []string{
		"  fileaccess: {mode: audit, paths: [/tmp/w]}\n  backup: {mode: enforce, sources: [/src], destination: /tmp/w2}\n",
		"  fileaccess: {mode: audit, paths: [\"C:\\\\Data\"]}\n  backup: {mode: enforce, sources: [/src], destination: \"D:\\\\Data\\\\bk\"}\n",
		"  fileaccess: {mode: audit, paths: [/Data]}\n  backup: {mode: enforce, sources: [/src], destination: /data/bk}\n",
		// observe writes nothing into its destination.
		"  fileaccess: {mode: audit, paths: [/tmp/w]}\n  backup: {mode: audit, method: observe, destination: /tmp/w/bk}\n",
	} {
		if _, err := Parse(doc(body)); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
	// A stored policy keeps working (the agent's own checks decide there).
	if _, err := ParseStored(doc("  fileaccess: {mode: audit, paths: [/tmp/w]}\n  backup: {mode: enforce, sources: [/src], destination: /tmp/w/bk}\n")); err != nil {
		t.Error(err)
	}
}

// Backup with no sources is taken: the register's folders on each host are
// compiled into backup.folders when an agent fetches its policy.
func TestBackupWithoutSourcesWaitsForRegister(t *testing.T) {
	if _, err := Parse(doc("  backup: {mode: enforce, destination: /srv/bk}\n")); err != nil {
		t.Fatal(err)
	}
}

// Watching a filesystem or drive root is refused: the agent cannot read all
// of it (fileaccess.root_unreadable) and would log the whole machine.
func TestWatchingRootRefused(t *testing.T) {
	for _, p := range []string{"/", "//", "/tmp/..", `C:\`, "c:/", `D:\Windows\..`} {
		wantFieldError(t, "  fileaccess: {mode: audit, paths: ["+q(p)+"]}\n", "controls.fileaccess.paths[0]", 5, "root", "folder")
	}
	wantFieldError(t, "  fileaccess: {mode: audit, folders: [{path: /, register_id: r1}]}\n", "controls.fileaccess.folders[0].path", 5, "root")
	for _, p := range []string{"/tmp", `C:\Data`, `\\nas\share`, `\\nas\share\顧客`} {
		if _, err := Parse(doc("  fileaccess: {mode: audit, paths: [" + q(p) + "]}\n")); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
