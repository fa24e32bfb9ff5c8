package securefs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/windows"
)

// sddl is a protected DACL ("P": the parent's entries, such as Users' read
// on %ProgramData%, do not apply) granting full control to SYSTEM,
// Administrators and the running user. The running user is named so that a
// process without an elevated token (UAC leaves Administrators deny-only)
// can still read what it wrote; for the service it is SYSTEM again. inherit
// is "OICI" for directories (files and subdirs inherit) and "" for files.
func sddl(inherit string) (string, error) {
	s := fmt.Sprintf("D:P(A;%[1]s;FA;;;SY)(A;%[1]s;FA;;;BA)", inherit)
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return "", fmt.Errorf("token user: %w", err)
	}
	if sid := tu.User.Sid; !sid.IsWellKnown(windows.WinLocalSystemSid) {
		s += fmt.Sprintf("(A;%s;FA;;;%s)", inherit, sid.String())
	}
	return s, nil
}

func securityDescriptor(inherit string) (*windows.SECURITY_DESCRIPTOR, error) {
	s, err := sddl(inherit)
	if err != nil {
		return nil, err
	}
	return windows.SecurityDescriptorFromString(s)
}

// protectDir sets the protected DACL on dir; SetNamedSecurityInfo also
// propagates it to the children that inherit, so files written before the
// dir was protected lose the parent's Users entries too.
func protectDir(dir string) error {
	sd, err := securityDescriptor("OICI")
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
}

// createPrivate creates a new file carrying its own protected DACL from
// CreateFile on: setting it afterwards would let a local user open the empty
// file under the inherited ACL and keep the handle to read the secret later.
func createPrivate(dir, prefix string) (*os.File, error) {
	sd, err := securityDescriptor("")
	if err != nil {
		return nil, err
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(unsafe.Sizeof(*sa))
	for range 100 {
		var r [8]byte
		rand.Read(r[:])
		name := filepath.Join(dir, prefix+hex.EncodeToString(r[:]))
		p, err := windows.UTF16PtrFromString(name)
		if err != nil {
			return nil, err
		}
		h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, sa,
			windows.CREATE_NEW, windows.FILE_ATTRIBUTE_NORMAL, 0)
		if errors.Is(err, windows.ERROR_FILE_EXISTS) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "create", Path: name, Err: err}
		}
		return os.NewFile(uintptr(h), name), nil
	}
	return nil, fmt.Errorf("create temp file in %s: too many collisions", dir)
}
