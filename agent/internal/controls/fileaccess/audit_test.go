package fileaccess

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/policy"
)

// fakeAudit is an OS audit configuration held in memory.
type fakeAudit struct {
	mu               sync.Mutex // the Windows probe re-checks from its poll loop
	on               bool
	policyErr        error
	setErr           error
	sacl             map[string]bool
	keepSACL         bool // false: writes are accepted and not kept (Wine)
	sets, folderSets int
}

func (f *fakeAudit) fileSystemAudit() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.on, f.policyErr
}
func (f *fakeAudit) enableFileSystemAudit() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets++
	if f.setErr != nil {
		return f.setErr
	}
	f.on, f.policyErr = true, nil
	return nil
}
func (f *fakeAudit) folderAudited(dir string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sacl[dir], nil
}
func (f *fakeAudit) auditFolder(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.folderSets++
	if f.keepSACL {
		f.sacl[dir] = true
	}
	return nil
}

// Audit mode only reports what is missing; enforce sets the policy and the
// SACLs and reports what still does not hold (a SACL the OS did not keep,
// a policy it refused).
func TestApplyAudit(t *testing.T) {
	roots := []string{`D:\顧客`, `D:\人事`}
	f := &fakeAudit{sacl: map[string]bool{`D:\人事`: true}, keepSACL: true}
	rep := applyAudit(f, roots, false, map[string]bool{})
	if f.sets != 0 || f.folderSets != 0 || rep.policy != "off" || len(rep.missing) != 2 ||
		!strings.Contains(rep.problem(), `no audit SACL on D:\顧客`) || !strings.Contains(rep.problem(), "policy is off") {
		t.Fatalf("audit mode: %+v (sets %d %d)", rep, f.sets, f.folderSets)
	}
	rep = applyAudit(f, roots, true, map[string]bool{})
	if f.sets != 1 || f.folderSets != 1 || rep.policy != "on" || rep.problem() != "" || rep.err != nil {
		t.Fatalf("enforce: %+v (sets %d %d)", rep, f.sets, f.folderSets)
	}
	// Wine: SACL writes accepted, nothing kept; the policy cannot be read.
	w := &fakeAudit{sacl: map[string]bool{}, policyErr: errors.New("not implemented"), setErr: errors.New("access denied")}
	rep = applyAudit(w, roots[:1], true, map[string]bool{})
	if rep.err == nil || !strings.HasPrefix(rep.policy, "unknown") || !strings.Contains(rep.problem(), "no audit SACL") {
		t.Fatalf("wine-like enforce: %+v", rep)
	}
}

// auditProbe is a fake probe whose OS audit log can break.
type auditProbe struct {
	*fakeProbe
	mu      sync.Mutex
	problem string
}

func (p *auditProbe) auditState() (string, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "on", p.problem
}

// When the OS log attribution depends on cannot be read, the status says
// so (unknown, with the reason) instead of pass, and pass again once it
// works.
func TestBrokenAttributionIsNotPass(t *testing.T) {
	root := t.TempDir()
	p := &auditProbe{fakeProbe: &fakeProbe{out: make(chan access, 8)}}
	h := start(t, p, pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	h.waitStatus(controls.Pass, "fileaccess.watching")
	p.mu.Lock()
	p.problem = "reading the Security log failed: EvtQuery(newest): invalid argument"
	p.mu.Unlock()
	st := h.waitStatus(controls.Unknown, "fileaccess.attribution_degraded")
	if !strings.Contains(fmt.Sprint(st.Attrs["reason_en"]), "EvtQuery(newest): invalid argument") ||
		st.Attrs["attribution_problem"] == nil || st.Attrs["audit_policy"] != "on" {
		t.Fatalf("status %v", st.Attrs)
	}
	p.mu.Lock()
	p.problem = ""
	p.mu.Unlock()
	h.waitStatus(controls.Pass, "fileaccess.watching")
}
