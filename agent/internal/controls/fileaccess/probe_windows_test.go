package fileaccess

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/windows"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
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

func readBookmark(t *testing.T, state string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, bookmarkFile))
	if err != nil {
		t.Fatal(err)
	}
	n, err := parseBookmark(b)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWinProbeBookmarkFollowsAcks: the saved bookmark passes a record handed
// to the control only after the control's ack, records not ours at once.
func TestWinProbeBookmarkFollowsAcks(t *testing.T) {
	state := t.TempDir()
	os.WriteFile(filepath.Join(state, bookmarkFile), bookmarkXML(41), 0o600)
	p := newProbe(controls.Env{Log: zerolog.Nop(), StateDir: state, Clock: controls.RealClock{}}).(*winProbe)
	if err := p.place(); err != nil || p.cursor.next() != 41 {
		t.Fatalf("bookmark not loaded: %d %v", p.cursor.next(), err)
	}
	p.cursor.handOut(42) // queued to the control
	p.cursor.passed(43)  // another folder's record
	p.persist()
	if n := readBookmark(t, state); n != 41 {
		t.Fatalf("bookmark %d before the ack, want 41", n)
	}
	p.ack(42)
	p.persist()
	if n := readBookmark(t, state); n != 43 {
		t.Fatalf("bookmark %d after the ack, want 43", n)
	}
}

// TestWinProbeFirstRunStartsAtNewest: without a bookmark the probe starts at
// the newest Security record and saves it, instead of reading the whole log.
// Wine's wevtapi cannot query the Security channel: checked on Windows only.
func TestWinProbeFirstRunStartsAtNewest(t *testing.T) {
	state := t.TempDir()
	p := newProbe(controls.Env{Log: zerolog.Nop(), StateDir: state, Clock: controls.RealClock{}}).(*winProbe)
	newest, err := newestRecord()
	if err != nil {
		t.Skipf("Security log not readable here (Wine's EvtQuery refuses it; on Windows run elevated): %v", err)
	}
	if err := p.place(); err != nil {
		t.Fatal(err)
	}
	if got := readBookmark(t, state); got < newest {
		t.Fatalf("first run saved %d, newest record was %d", got, newest)
	}
	p.roots = []string{t.TempDir()}
	if err := p.readNew(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.cursor.next() < newest {
		t.Fatalf("cursor moved back to %d", p.cursor.next())
	}
}

// TestSecurityLogFailureReported: with the audit configuration faked as
// complete, a Security log that cannot be read (Wine: EvtQuery fails) makes
// auditState name the failure, which turns the status from pass to
// unknown (TestBrokenAttributionIsNotPass); on Windows the read works and
// nothing is reported.
func TestSecurityLogFailureReported(t *testing.T) {
	dir := t.TempDir()
	p := newProbe(controls.Env{Log: zerolog.Nop(), StateDir: t.TempDir()}).(*winProbe)
	p.sys = &fakeAudit{on: true, sacl: map[string]bool{dir: true}, keepSACL: true}
	if _, err := p.setRoots(context.Background(), []string{dir}, false); err != nil {
		t.Fatal(err)
	}
	defer p.close()
	deadline := time.Now().Add(3 * pollEvery)
	for time.Now().Before(deadline) {
		if pol, problem := p.auditState(); problem != "" {
			if pol != "on" || !strings.Contains(problem, "Security log") {
				t.Fatalf("policy %q problem %q", pol, problem)
			}
			t.Logf("reported: %s", problem)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Log("the Security log reads fine here (real Windows): nothing to report")
}

// waitAudit polls the probe's audit state until ok holds.
func waitAudit(t *testing.T, p *winProbe, what string, ok func(policy, problem string) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pol, problem := p.auditState()
		if ok(pol, problem) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: policy %q problem %q", what, pol, problem)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAuditTurnedOffLaterIsReported: the audit policy and the folders'
// SACLs are checked again while the probe runs, not only when the policy is
// applied. In audit mode a policy turned off or a SACL removed later
// (auditpol /clear, a GPO, a careful insider) is reported and nothing is
// changed; in enforce mode both are set again.
func TestAuditTurnedOffLaterIsReported(t *testing.T) {
	defer func(d time.Duration) { auditRecheck = d }(auditRecheck)
	auditRecheck = 50 * time.Millisecond
	dir := t.TempDir()
	f := &fakeAudit{on: true, sacl: map[string]bool{dir: true}, keepSACL: true}
	p := newProbe(controls.Env{Log: zerolog.Nop(), StateDir: t.TempDir()}).(*winProbe)
	p.sys = f
	if _, err := p.setRoots(context.Background(), []string{dir}, false); err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if pol, problem := p.auditState(); pol != "on" || strings.Contains(problem, "audit") {
		t.Fatalf("at start: policy %q problem %q", pol, problem)
	}
	f.mu.Lock()
	f.on = false
	delete(f.sacl, dir)
	f.mu.Unlock()
	waitAudit(t, p, "audit mode: the policy off and the SACL gone reported", func(pol, problem string) bool {
		return pol == "off" && strings.Contains(problem, "policy is off") && strings.Contains(problem, "no audit SACL on "+dir)
	})
	f.mu.Lock()
	sets, folderSets := f.sets, f.folderSets
	f.mu.Unlock()
	if sets != 0 || folderSets != 0 {
		t.Fatalf("audit mode changed the audit configuration: %d policy sets, %d SACL sets", sets, folderSets)
	}

	if _, err := p.setRoots(context.Background(), []string{dir}, true); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	sets, folderSets = f.sets, f.folderSets
	f.on = false
	delete(f.sacl, dir)
	f.mu.Unlock()
	waitAudit(t, p, "enforce mode: the policy and the SACL set again", func(pol, problem string) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.sets > sets && f.folderSets > folderSets && f.on && f.sacl[dir] &&
			pol == "on" && !strings.Contains(problem, "audit")
	})
}

// TestStatusNotPassWhenSecurityLogUnreadable: the real Windows probe in the
// control, where the Security log cannot be read (Wine): the status is
// unknown with the reason, not pass with attribution security-4663.
func TestStatusNotPassWhenSecurityLogUnreadable(t *testing.T) {
	if _, err := newestRecord(); err == nil {
		t.Skip("the Security log reads fine here (real Windows, elevated): nothing broken to report")
	}
	root := t.TempDir()
	h := start(t, newProbe(controls.Env{Log: zerolog.Nop(), StateDir: t.TempDir()}),
		pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	// The audit configuration is checked at once, the log at the first read.
	evs := h.waitFor("status naming the Security log", func(evs []event.Event) bool {
		var st *event.Event
		for i := range evs {
			if evs[i].Type == "fileaccess.status" {
				st = &evs[i]
			}
		}
		return st != nil && strings.Contains(fmt.Sprint(st.Attrs["attribution_problem"]), "reading the Security log failed")
	})
	for _, e := range evs {
		if e.Type == "fileaccess.status" && (e.Attrs["status"] != string(controls.Unknown) ||
			e.Attrs["reason"] != "fileaccess.attribution_degraded" || e.Attrs["attribution"] != "security-4663") {
			t.Fatalf("status %v", e.Attrs)
		}
	}
}
