package uplink

import "golang.org/x/sys/windows"

// stateDirSDDL grants full control to SYSTEM and Administrators only, with
// inheritance to files and subdirs, and blocks inherited entries from the
// parent (ProgramData lets Users read).
const stateDirSDDL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

// protectDir sets a protected DACL for SYSTEM + Administrators.
func protectDir(dir string) error {
	sd, err := windows.SecurityDescriptorFromString(stateDirSDDL)
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
