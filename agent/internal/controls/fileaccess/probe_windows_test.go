package fileaccess

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/windows"

	"github.com/mamori/mamori/agent/internal/controls"
)

func hasAuditACE(t *testing.T, aces []auditACE) bool {
	t.Helper()
	everyone, _ := windows.CreateWellKnownSid(windows.WinWorldSid)
	n := countAuditACEs(aces, everyone.String())
	if n > 1 {
		t.Fatalf("%d duplicate audit entries in %+v", n, aces)
	}
	return n == 1
}

func TestBuildAuditSACL(t *testing.T) {
	// What we send: an Everyone success-audit entry, inherited.
	acl, err := buildAuditSACL(nil)
	if err != nil {
		t.Fatal(err)
	}
	built, err := aclEntries(acl)
	if err != nil || !hasAuditACE(t, built) || len(built) != 1 {
		t.Fatalf("built SACL %+v %v", built, err)
	}
	// Merging into a SACL that already has it does not pile entries up.
	again, err := buildAuditSACL(acl)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := aclEntries(again); !hasAuditACE(t, e) {
		t.Fatalf("merged SACL %+v", e)
	}
}

func TestSetAuditSACLReadBack(t *testing.T) {
	dir := t.TempDir()
	if err := setAuditSACL(dir); err != nil {
		t.Fatalf("set SACL: %v", err)
	}
	if err := setAuditSACL(dir); err != nil {
		t.Fatalf("set SACL again: %v", err)
	}
	aces, err := readSACL(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(aces) == 0 {
		t.Skip("the SACL write was accepted but the OS kept no SACL (Wine does not store SACLs); read-back needs real Windows")
	}
	if !hasAuditACE(t, aces) {
		t.Fatalf("no Everyone success audit ACE with inheritance in %+v", aces)
	}
}

// TestWinProbeQueriesSecurityLog runs the probe's wevtapi path: under Wine
// the query succeeds but there are no 4663 events; the bookmark stays put.
func TestWinProbeQueriesSecurityLog(t *testing.T) {
	state := t.TempDir()
	os.WriteFile(filepath.Join(state, bookmarkFile), bookmarkXML(41), 0o600)
	p := newProbe(controls.Env{Log: zerolog.Nop(), StateDir: state, Clock: controls.RealClock{}}).(*winProbe)
	p.loadBookmark()
	if p.last != 41 {
		t.Fatalf("bookmark not loaded: %d", p.last)
	}
	p.roots = []string{t.TempDir()}
	if err := p.readNew(context.Background()); err != nil {
		t.Skipf("Security log not readable here: %v", err)
	}
	if p.last < 41 {
		t.Fatalf("bookmark moved back to %d", p.last)
	}
}
