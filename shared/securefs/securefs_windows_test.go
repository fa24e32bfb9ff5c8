package securefs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/windows"
)

// TestDACL checks the dir gets a protected DACL naming only SYSTEM,
// Administrators and the running user, inheritable, and that a secret file
// carries its own protected DACL, also in a dir that was never protected.
func TestDACL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "server")
	if err := ProtectDir(dir); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "log-key")
	if err := WriteSecretFile(key, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	open := t.TempDir() // inherits the parent's entries
	loose := filepath.Join(open, "admin-token")
	if err := WriteSecretFile(loose, []byte("token")); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{key: "secret", loose: "token"} {
		if b, err := os.ReadFile(p); err != nil || string(b) != want {
			t.Fatalf("read back %s: %q, %v", p, b, err)
		}
	}
	// Files first: under Wine their check is partial but still meaningful.
	full := checkDACL(t, key, "")
	full = checkDACL(t, loose, "") && full
	full = checkDACL(t, dir, "OICI") && full
	if !full {
		t.Skip("the DACL writes succeeded, but Wine keeps no DACLs (it derives them from Unix modes): only the files' lack of Users/Everyone entries was checked; the full read-back is checked on real Windows")
	}
}

// checkDACL checks path's DACL and reports false when Wine could not give
// it back (no Administrators entry). Under Wine a file created with the
// private descriptor still gets a mode without "other" bits, so the
// no-Users/Everyone check runs there too; a dir keeps its mode, so not.
func checkDACL(t *testing.T, path, inherit string) bool {
	t.Helper()
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatal(err)
	}
	s := sd.String()
	t.Logf("%s: %s", path, s)
	if underWine() && !strings.Contains(s, ";;;BA)") {
		if inherit == "" {
			checkNoBroadGrants(t, path, s)
		}
		return false
	}
	ctl, _, err := sd.Control()
	if err != nil {
		t.Fatal(err)
	}
	if ctl&windows.SE_DACL_PROTECTED == 0 {
		t.Errorf("%s: DACL %s not protected: the parent's entries (Users) would apply", path, s)
	}
	want := []string{"(A;" + inherit + ";FA;;;SY)", "(A;" + inherit + ";FA;;;BA)"}
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	if !tu.User.Sid.IsWellKnown(windows.WinLocalSystemSid) {
		want = append(want, "(A;"+inherit+";FA;;;"+tu.User.Sid.String()+")")
	}
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s: DACL %s lacks %s", path, s, w)
		}
	}
	checkNoBroadGrants(t, path, s)
	return true
}

func checkNoBroadGrants(t *testing.T, path, sddl string) {
	t.Helper()
	for _, bad := range []string{";;;BU)", ";;;WD)", ";;;AU)", ";;;IU)"} {
		if strings.Contains(sddl, bad) {
			t.Errorf("%s: DACL %s grants %s", path, sddl, bad)
		}
	}
}

// underWine reports whether ntdll is Wine's (it exports wine_get_version).
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}
