package fileaccess

import (
	"errors"
	"fmt"
	"strings"
)

// auditSystem is the OS audit configuration that attribution depends on
// where the OS logs accesses itself (Windows: the "File System" audit
// subcategory and an audit SACL on each folder). The Windows probe uses the
// real one; tests use a fake.
type auditSystem interface {
	// fileSystemAudit says whether success auditing of file system
	// objects is on.
	fileSystemAudit() (bool, error)
	enableFileSystemAudit() error
	// folderAudited says whether dir's SACL audits what attribution needs.
	folderAudited(dir string) (bool, error)
	auditFolder(dir string) error
}

// auditReport is what applyAudit found: what is still missing for
// attribution to work, and the errors on the way.
type auditReport struct {
	policy  string   // "on", "off", or "unknown: <why>"
	missing []string // what the OS still lacks, in words for the status
	err     error    // enforce: what could not be set
}

// applyAudit sets the audit policy and the folders' SACLs (enforce) or only
// checks them (audit), and reports what is missing either way: in audit mode
// the admin must turn them on (GPO), and the status says so.
func applyAudit(sys auditSystem, roots []string, enforce bool, done map[string]bool) auditReport {
	var rep auditReport
	var errs []error
	on, err := sys.fileSystemAudit()
	if enforce && (err != nil || !on) {
		if serr := sys.enableFileSystemAudit(); serr != nil {
			errs = append(errs, serr)
		} else {
			on, err = sys.fileSystemAudit()
			if err == nil && !on {
				err = errors.New("still off after AuditSetSystemPolicy")
			}
		}
	}
	switch {
	case err != nil:
		rep.policy = "unknown: " + err.Error()
		rep.missing = append(rep.missing, "File System audit policy: "+err.Error())
	case on:
		rep.policy = "on"
	default:
		rep.policy = "off"
		rep.missing = append(rep.missing, "File System audit policy is off (auditpol /set /subcategory:\"File System\" /success:enable)")
	}
	for _, r := range roots {
		if done[r] {
			continue
		}
		ok, err := sys.folderAudited(r)
		if enforce && (err != nil || !ok) {
			if serr := sys.auditFolder(r); serr != nil {
				errs = append(errs, serr)
			} else {
				ok, err = sys.folderAudited(r)
			}
		}
		switch {
		case err != nil:
			rep.missing = append(rep.missing, fmt.Sprintf("audit SACL of %s: %v", r, err))
		case !ok:
			rep.missing = append(rep.missing, "no audit SACL on "+r)
		default:
			done[r] = true
		}
	}
	rep.err = errors.Join(errs...)
	return rep
}

func (a auditReport) problem() string { return strings.Join(a.missing, "; ") }
