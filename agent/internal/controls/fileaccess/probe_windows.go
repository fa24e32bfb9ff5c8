package fileaccess

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/fswatch"
)

// Windows attribution: in enforce mode the "File System" audit subcategory
// is turned on and an audit SACL (Everyone; read, write, delete; success;
// inherited by subfolders and files) is put on each watched folder. Security
// event 4663 is then read through wevtapi every pollEvery, from the record
// after the bookmark kept in the control's state dir, and joined to changes.
// The bookmark passes a record only once the control has acked it (its
// events are in the spool), so a crash repeats records instead of losing
// them; with no bookmark yet, reading starts at the log's newest record, not
// at the start of a Security log that may hold months of other events.

const (
	evtQueryChannelPath     = 0x1
	evtQueryForwardDir      = 0x100
	evtQueryReverseDir      = 0x200
	evtRenderEventXml       = 1
	pollEvery               = time.Second
	errNoMoreItems          = windows.Errno(259) // ERROR_NO_MORE_ITEMS
	errInsufficientBuffer   = windows.ERROR_INSUFFICIENT_BUFFER
	policyAuditEventSuccess = 0x1
	bookmarkFile            = "security-4663.bookmark"
)

// auditRecheck is how often the audit policy and the folders' SACLs are
// read again while the probe runs.
var auditRecheck = 5 * time.Minute

// fileSystemSubcategory is the "File System" audit subcategory
// {0CCE921D-69AE-11D9-BED3-505054503030}.
var fileSystemSubcategory = windows.GUID{Data1: 0x0CCE921D, Data2: 0x69AE, Data3: 0x11D9,
	Data4: [8]byte{0xBE, 0xD3, 0x50, 0x50, 0x54, 0x50, 0x30, 0x30}}

// objectAccessCategory is the "Object Access" category {6997984A-797A-11D9-BED3-505054503030}.
var objectAccessCategory = windows.GUID{Data1: 0x6997984A, Data2: 0x797A, Data3: 0x11D9,
	Data4: [8]byte{0xBE, 0xD3, 0x50, 0x50, 0x54, 0x50, 0x30, 0x30}}

type auditPolicyInformation struct {
	subCategory windows.GUID
	info        uint32
	category    windows.GUID
}

type winProbe struct {
	env controls.Env
	out chan access

	auditMu sync.Mutex // held across applyAudit and storing its report, taken before mu

	mu      sync.Mutex
	roots   []string
	enforce bool // the mode of the last setRoots: a recheck sets what is missing again
	sacl    map[string]bool
	cancel  context.CancelFunc
	done    chan struct{}
	started bool        // cursor placed (bookmark or the log's end); poll goroutine only
	lastErr error       // of the last Security log read; nil once a read works
	sys     auditSystem // the audit policy and SACLs (a fake in tests)
	audit   auditReport // what applyAudit found at the last setRoots

	cursor recordCursor
}

func newProbe(env controls.Env) probe {
	return &winProbe{env: env, out: make(chan access, 8192), sacl: map[string]bool{}, sys: winAudit{}}
}

// auditState reports the audit policy and, when attribution is not working
// (the Security log cannot be read, the policy is off, a folder has no
// audit SACL), what is wrong.
func (p *winProbe) auditState() (policy, problem string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var probs []string
	if p.lastErr != nil {
		probs = append(probs, "reading the Security log failed: "+p.lastErr.Error())
	}
	if s := p.audit.problem(); s != "" {
		probs = append(probs, s)
	}
	return p.audit.policy, strings.Join(probs, "; ")
}

// winAudit is the real audit configuration.
type winAudit struct{}

func (winAudit) enableFileSystemAudit() error { return enableFileSystemAudit() }
func (winAudit) auditFolder(dir string) error { return setAuditSACL(dir) }

func (winAudit) fileSystemAudit() (bool, error) {
	var pol *auditPolicyInformation
	if err := auditQuerySystemPolicy(&fileSystemSubcategory, 1, &pol); err != nil {
		return false, fmt.Errorf("fileaccess: AuditQuerySystemPolicy(File System): %w", err)
	}
	defer auditFree(unsafe.Pointer(pol))
	return pol.info&policyAuditEventSuccess != 0, nil
}

func (winAudit) folderAudited(dir string) (bool, error) {
	aces, err := readSACL(dir)
	if err != nil {
		return false, err
	}
	everyone, err := windows.CreateWellKnownSid(windows.WinWorldSid)
	if err != nil {
		return false, fmt.Errorf("fileaccess: %w", err)
	}
	return countAuditACEs(aces, everyone.String()) > 0, nil
}

func (p *winProbe) accesses() <-chan access  { return p.out }
func (p *winProbe) ack(rec uint64)           { p.cursor.ack(rec) } // persisted by the poll loop
func (p *winProbe) joinDelay() time.Duration { return 2 * pollEvery }

func (p *winProbe) setRoots(ctx context.Context, roots []string, enforce bool) (string, error) {
	p.auditMu.Lock()
	defer p.auditMu.Unlock()
	p.mu.Lock()
	p.roots, p.enforce = append([]string(nil), roots...), enforce
	p.mu.Unlock()
	if len(roots) == 0 {
		return "", nil
	}
	rep := applyAudit(p.sys, roots, enforce, p.sacl)
	p.mu.Lock()
	p.audit = rep
	if p.cancel == nil {
		c, cancel := context.WithCancel(context.WithoutCancel(ctx))
		p.cancel, p.done = cancel, make(chan struct{})
		go p.poll(c, p.done)
	}
	p.mu.Unlock()
	if enforce && rep.err != nil {
		return "security-4663", rep.err
	}
	return "security-4663", nil
}

// recheckAudit reads the audit policy and every folder's SACL again (and in
// enforce mode sets what is missing again), so auditing turned off after the
// policy was applied (auditpol, a GPO, someone covering their tracks) makes
// the status say so instead of staying pass.
func (p *winProbe) recheckAudit() {
	p.auditMu.Lock()
	defer p.auditMu.Unlock()
	p.mu.Lock()
	roots, enforce := append([]string(nil), p.roots...), p.enforce
	p.mu.Unlock()
	if len(roots) == 0 {
		return
	}
	rep := applyAudit(p.sys, roots, enforce, map[string]bool{})
	p.mu.Lock()
	before := p.audit
	p.audit = rep
	p.mu.Unlock()
	if rep.policy != before.policy || rep.problem() != before.problem() {
		p.env.Log.Warn().Err(rep.err).Str("audit_policy", rep.policy).Str("missing", rep.problem()).
			Msg("fileaccess: the audit configuration changed since it was last checked")
	}
}

func (p *winProbe) close() error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel = nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
		p.persist() // acks that came after the last poll
	}
	return nil
}

// enableFileSystemAudit turns on success auditing of the File System
// subcategory (what `auditpol /set /subcategory:{0CCE921D-...} /success:enable` does).
func enableFileSystemAudit() error {
	pol := auditPolicyInformation{subCategory: fileSystemSubcategory, info: policyAuditEventSuccess, category: objectAccessCategory}
	if err := enablePrivilege("SeSecurityPrivilege"); err != nil {
		return err
	}
	if err := auditSetSystemPolicy(&pol, 1); err != nil {
		return fmt.Errorf("fileaccess: AuditSetSystemPolicy(File System, success): %w", err)
	}
	return nil
}

func enablePrivilege(name string) error {
	var tok windows.Token
	if err := windows.OpenProcessToken(windows.CurrentProcess(), windows.TOKEN_ADJUST_PRIVILEGES|windows.TOKEN_QUERY, &tok); err != nil {
		return fmt.Errorf("fileaccess: open process token: %w", err)
	}
	defer tok.Close()
	var luid windows.LUID
	if err := windows.LookupPrivilegeValue(nil, windows.StringToUTF16Ptr(name), &luid); err != nil {
		return fmt.Errorf("fileaccess: lookup %s: %w", name, err)
	}
	tp := windows.Tokenprivileges{PrivilegeCount: 1}
	tp.Privileges[0] = windows.LUIDAndAttributes{Luid: luid, Attributes: windows.SE_PRIVILEGE_ENABLED}
	if err := windows.AdjustTokenPrivileges(tok, false, &tp, 0, nil, nil); err != nil {
		return fmt.Errorf("fileaccess: enable %s: %w", name, err)
	}
	return nil
}

// auditMask is what the SACL audits: reads, writes and deletes.
const auditMask = windows.FILE_GENERIC_READ | windows.FILE_GENERIC_WRITE | windows.DELETE

// setAuditSACL puts an audit ACE for Everyone on dir, inherited by its
// subfolders and files, keeping the SACL entries already there.
func setAuditSACL(dir string) error {
	if err := enablePrivilege("SeSecurityPrivilege"); err != nil {
		return err
	}
	var merged *windows.ACL
	if sd, err := getSACL(dir); err == nil {
		merged, _, _ = sd.SACL()
	}
	acl, err := buildAuditSACL(merged)
	if err != nil {
		return fmt.Errorf("fileaccess: build SACL for %s: %w", dir, err)
	}
	if err := windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT, windows.SACL_SECURITY_INFORMATION, nil, nil, nil, acl); err != nil {
		return fmt.Errorf("fileaccess: set SACL on %s: %w", dir, err)
	}
	return nil
}

// buildAuditSACL adds the Everyone success-audit entry to merged (which may be nil).
func buildAuditSACL(merged *windows.ACL) (*windows.ACL, error) {
	everyone, err := windows.CreateWellKnownSid(windows.WinWorldSid)
	if err != nil {
		return nil, fmt.Errorf("fileaccess: Everyone SID: %w", err)
	}
	if merged != nil {
		// SetEntriesInAcl adds SET_AUDIT_SUCCESS entries rather than
		// merging them: leave a SACL that already audits as we want alone.
		if es, err := aclEntries(merged); err == nil && countAuditACEs(es, everyone.String()) > 0 {
			return merged, nil
		}
	}
	return windows.ACLFromEntries([]windows.EXPLICIT_ACCESS{{
		AccessPermissions: auditMask,
		AccessMode:        windows.SET_AUDIT_SUCCESS,
		Inheritance:       windows.SUB_CONTAINERS_AND_OBJECTS_INHERIT,
		Trustee: windows.TRUSTEE{
			TrusteeForm:  windows.TRUSTEE_IS_SID,
			TrusteeType:  windows.TRUSTEE_IS_WELL_KNOWN_GROUP,
			TrusteeValue: windows.TrusteeValueFromSID(everyone),
		},
	}}, merged)
}

// getSACL reads path's SACL through a handle opened with
// ACCESS_SYSTEM_SECURITY (needs SeSecurityPrivilege enabled).
func getSACL(path string) (*windows.SECURITY_DESCRIPTOR, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, fmt.Errorf("fileaccess: %w", err)
	}
	h, err := windows.CreateFile(p, windows.READ_CONTROL|windows.ACCESS_SYSTEM_SECURITY,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil,
		windows.OPEN_EXISTING, windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return nil, fmt.Errorf("fileaccess: open %s for its SACL: %w", path, err)
	}
	defer windows.CloseHandle(h)
	sd, err := windows.GetSecurityInfo(h, windows.SE_FILE_OBJECT, windows.SACL_SECURITY_INFORMATION)
	if err != nil {
		return nil, fmt.Errorf("fileaccess: read SACL of %s: %w", path, err)
	}
	return sd, nil
}

// auditACE is one audit ACE of a SACL.
type auditACE struct {
	aceType byte
	flags   byte
	mask    uint32
	sid     string
}

// readSACL returns the audit ACEs on path.
func readSACL(path string) ([]auditACE, error) {
	if err := enablePrivilege("SeSecurityPrivilege"); err != nil {
		return nil, err
	}
	sd, err := getSACL(path)
	if err != nil {
		return nil, err
	}
	acl, _, err := sd.SACL()
	if err != nil || acl == nil {
		return nil, nil // no SACL
	}
	return aclEntries(acl)
}

// SYSTEM_AUDIT_ACE_TYPE and SUCCESSFUL_ACCESS_ACE_FLAG (winnt.h), not in x/sys.
const (
	systemAuditACEType      = 2
	successfulAccessACEFlag = 0x40
)

// countAuditACEs counts the entries that audit successful reads, writes and
// deletes by sid, inherited by subfolders and files.
func countAuditACEs(aces []auditACE, sid string) int {
	n := 0
	inherit := byte(windows.OBJECT_INHERIT_ACE | windows.CONTAINER_INHERIT_ACE)
	for _, a := range aces {
		if a.aceType == systemAuditACEType && a.sid == sid && a.mask&auditMask == auditMask &&
			a.flags&inherit == inherit && a.flags&successfulAccessACEFlag != 0 {
			n++
		}
	}
	return n
}

func aclEntries(acl *windows.ACL) ([]auditACE, error) {
	var out []auditACE
	for i := uint32(0); i < uint32(acl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE // same layout as SYSTEM_AUDIT_ACE
		if err := windows.GetAce(acl, i, &ace); err != nil {
			return nil, fmt.Errorf("fileaccess: ace %d: %w", i, err)
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		out = append(out, auditACE{aceType: ace.Header.AceType, flags: ace.Header.AceFlags, mask: uint32(ace.Mask), sid: sid.String()})
	}
	return out, nil
}

func (p *winProbe) bookmarkPath() string {
	if p.env.StateDir == "" {
		return ""
	}
	return filepath.Join(p.env.StateDir, bookmarkFile)
}

// loadBookmark reads the saved position; ok is false when there is none.
func (p *winProbe) loadBookmark() (uint64, bool) {
	path := p.bookmarkPath()
	if path == "" {
		return 0, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := parseBookmark(b)
	if err != nil {
		p.env.Log.Warn().Err(err).Msg("fileaccess: ignoring unreadable 4663 bookmark")
		return 0, false
	}
	return n, true
}

func (p *winProbe) saveBookmark(n uint64) error {
	path := p.bookmarkPath()
	if path == "" {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, bookmarkXML(n), 0o600); err != nil {
		return fmt.Errorf("fileaccess: save 4663 bookmark: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("fileaccess: save 4663 bookmark: %w", err)
	}
	return nil
}

// persist saves the cursor's position when acks or passed records moved it.
func (p *winProbe) persist() {
	pos, dirty := p.cursor.unsaved()
	if !dirty {
		return
	}
	if err := p.saveBookmark(pos); err != nil {
		p.env.Log.Warn().Err(err).Msg("fileaccess: 4663 bookmark")
		return
	}
	p.cursor.markSaved(pos)
}

// place puts the cursor at the saved bookmark or, on a first run, at the
// newest record of the Security log, and saves that at once so a restart
// resumes there.
func (p *winProbe) place() error {
	if n, ok := p.loadBookmark(); ok {
		p.cursor.start(n)
		return nil
	}
	n, err := newestRecord()
	if err != nil {
		return err
	}
	p.cursor.start(n)
	if err := p.saveBookmark(n); err != nil {
		return err
	}
	p.env.Log.Info().Uint64("record", n).Msg("fileaccess: no 4663 bookmark, reading from the newest Security record")
	return nil
}

// newestRecord is the record id of the newest event in the Security log (0
// when it is empty).
func newestRecord() (uint64, error) {
	ch, _ := windows.UTF16PtrFromString(securityChannel)
	q, _ := windows.UTF16PtrFromString("*")
	h, err := evtQuery(0, ch, q, evtQueryChannelPath|evtQueryReverseDir)
	if err != nil {
		return 0, fmt.Errorf("fileaccess: EvtQuery(newest): %w", err)
	}
	defer evtClose(h)
	var e windows.Handle
	var n uint32
	if err := evtNext(h, 1, &e, 0, 0, &n); err != nil {
		if errors.Is(err, errNoMoreItems) {
			return 0, nil
		}
		return 0, fmt.Errorf("fileaccess: EvtNext(newest): %w", err)
	}
	defer evtClose(e)
	buf := make([]uint16, 4096)
	x, err := renderXML(e, &buf)
	if err != nil {
		return 0, err
	}
	return parseRecordID([]byte(x))
}

func (p *winProbe) poll(ctx context.Context, done chan struct{}) {
	defer close(done)
	checked := time.Now() // setRoots has just checked
	for {
		if time.Since(checked) >= auditRecheck {
			p.recheckAudit()
			checked = time.Now()
		}
		err := p.readNew(ctx)
		p.persist()
		if err == nil {
			p.mu.Lock()
			p.lastErr = nil
			p.mu.Unlock()
		} else {
			p.mu.Lock()
			first := p.lastErr == nil || p.lastErr.Error() != err.Error()
			p.lastErr = err
			p.mu.Unlock()
			if first {
				p.env.Log.Warn().Err(err).Msg("fileaccess: reading Security event 4663")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(pollEvery, auditRecheck)):
		}
	}
}

// readNew reads the 4663 events after the cursor and hands those under the
// roots on, each noted in flight first; the others move the cursor at once.
func (p *winProbe) readNew(ctx context.Context) error {
	if !p.started {
		if err := p.place(); err != nil {
			return err
		}
		p.started = true
	}
	p.mu.Lock()
	roots := p.roots
	p.mu.Unlock()
	ch, _ := windows.UTF16PtrFromString(securityChannel)
	q, _ := windows.UTF16PtrFromString(query4663(p.cursor.next()))
	h, err := evtQuery(0, ch, q, evtQueryChannelPath|evtQueryForwardDir)
	if err != nil {
		return fmt.Errorf("fileaccess: EvtQuery: %w", err)
	}
	defer evtClose(h)
	evs := make([]windows.Handle, 64)
	buf := make([]uint16, 8192)
	for ctx.Err() == nil {
		var n uint32
		if err := evtNext(h, uint32(len(evs)), &evs[0], 0, 0, &n); err != nil {
			if errors.Is(err, errNoMoreItems) {
				return nil
			}
			return fmt.Errorf("fileaccess: EvtNext: %w", err)
		}
		for i, e := range evs[:n] {
			x, rerr := renderXML(e, &buf)
			evtClose(e)
			if rerr != nil {
				for _, rest := range evs[i+1 : n] {
					evtClose(rest)
				}
				return rerr
			}
			se, perr := parse4663([]byte(x))
			if perr != nil {
				if id, err := parseRecordID([]byte(x)); err == nil {
					p.cursor.passed(id)
				}
				continue
			}
			a, ok := underRoot(se.access, roots)
			if !ok {
				p.cursor.passed(se.RecordID)
				continue
			}
			p.cursor.handOut(se.RecordID)
			select {
			case p.out <- a:
			case <-ctx.Done():
				for _, rest := range evs[i+1 : n] {
					evtClose(rest)
				}
				return nil // in flight, never acked: read again next time
			}
		}
	}
	return nil
}

// underRoot returns a with its path spelled as the root it falls under
// (4663 may report another case than the policy's).
func underRoot(a access, roots []string) (access, bool) {
	for _, r := range roots {
		if fswatch.Within(strings.ToLower(a.Path), strings.ToLower(r)) {
			a.Path = r + a.Path[len(r):]
			return a, true
		}
	}
	return a, false
}

func renderXML(e windows.Handle, buf *[]uint16) (string, error) {
	for {
		var used, props uint32
		b := *buf
		err := evtRender(0, e, evtRenderEventXml, uint32(len(b)*2), &b[0], &used, &props)
		if err == nil {
			return windows.UTF16ToString(b[:used/2]), nil
		}
		if !errors.Is(err, errInsufficientBuffer) || int(used/2) <= len(b) {
			return "", fmt.Errorf("fileaccess: EvtRender: %w", err)
		}
		*buf = make([]uint16, used/2+1)
	}
}
