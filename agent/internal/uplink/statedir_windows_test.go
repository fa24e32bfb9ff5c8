package uplink

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/windows"
)

// TestStateDirDACL checks the state dir gets a protected DACL naming only
// SYSTEM and Administrators, and that files written into it inherit it.
func TestStateDirDACL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := MakeStateDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, FileKey), []byte("secret")); err != nil {
		t.Fatal(err)
	}
	sd, err := windows.GetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatal(err)
	}
	if underWine() && !contains(sd.String(), ";;;BA)") {
		t.Skip("the DACL write succeeded, but Wine does not keep DACLs on this filesystem (it stores them in user xattrs); read-back is checked on real Windows")
	}
	ctl, _, err := sd.Control()
	if err != nil {
		t.Fatal(err)
	}
	if ctl&windows.SE_DACL_PROTECTED == 0 {
		t.Error("DACL not protected: the parent's entries (Users) would apply")
	}
	s := sd.String()
	for _, want := range []string{"(A;OICI;FA;;;SY)", "(A;OICI;FA;;;BA)"} {
		if !contains(s, want) {
			t.Errorf("DACL %s lacks %s", s, want)
		}
	}
	for _, bad := range []string{";;;BU)", ";;;WD)", ";;;AU)"} {
		if contains(s, bad) {
			t.Errorf("DACL %s grants %s", s, bad)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, FileKey)); err != nil || string(b) != "secret" {
		t.Fatalf("read back: %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// underWine reports whether ntdll is Wine's (it exports wine_get_version).
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}
