//go:build !windows

package securefs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestModes: the dir ends 0700 (also when it existed 0755) and secret files
// 0600 (also when they replace a 0644 file, and under a permissive umask).
func TestModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	fresh := filepath.Join(t.TempDir(), "fresh")
	if err := ProtectDir(fresh); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, fresh); m != 0o700 {
		t.Errorf("new dir mode %o, want 700", m)
	}

	dir := filepath.Join(t.TempDir(), "server")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ProtectDir(dir); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("existing dir mode %o, want 700", m)
	}
	if err := WriteSecretFile(p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, p); m != 0o600 {
		t.Errorf("replaced file mode %o, want 600", m)
	}
	q := filepath.Join(dir, "ca-key.pem")
	if err := WriteSecretFile(q, []byte("key")); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, q); m != 0o600 {
		t.Errorf("new file mode %o, want 600", m)
	}
}

// A public file gets the mode asked for, whatever the umask.
func TestWriteFileMode(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	p := filepath.Join(t.TempDir(), "log-key.pub")
	if err := WriteFile(p, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, p); m != 0o644 {
		t.Errorf("mode %o, want 644", m)
	}
}
