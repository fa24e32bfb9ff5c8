// Package securefs keeps secret files private to the service account and
// administrators on every OS: mode 0700/0600 on Unix, a protected DACL for
// SYSTEM, Administrators and the running user on Windows, where os.Chmod
// only toggles the read-only attribute and %ProgramData% lets Users read.
//
// Each OS file defines:
//
//	protectDir(dir string) error                             // make an existing dir private
//	createPrivate(dir, prefix string) (*os.File, error)      // new temp file, private from birth
package securefs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ProtectDir creates dir (and missing parents) if needed and makes it
// readable only by its owner: mode 0700 on Unix (root or the service user
// runs the programs, so chmod suffices); on Windows a protected DACL granting
// SYSTEM, Administrators and the running user full control, inherited by
// everything inside and replacing what an existing dir inherited (existing
// children are re-inherited too).
func ProtectDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("securefs: %w", err)
	}
	if err := protectDir(dir); err != nil {
		return fmt.Errorf("securefs: protect %s: %w", dir, err)
	}
	return nil
}

// WriteSecretFile replaces path with data through a synced temporary file
// and a rename, so readers see the old or the new content, never a mix and
// never half a key. The file is private from the moment it exists, before
// any byte is written: mode 0600 on Unix; on Windows its own protected DACL
// (SYSTEM, Administrators, the running user), so it stays private even in a
// directory that ProtectDir did not protect.
func WriteSecretFile(path string, data []byte) error {
	f, err := createPrivate(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return fmt.Errorf("securefs: write %s: %w", path, err)
	}
	return replace(f, path, data)
}

// WriteFile replaces a public file (certificate, verifier key) the same
// way, with mode perm on Unix; on Windows it takes its directory's ACL.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("securefs: write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("securefs: write %s: %w", path, err)
	}
	return replace(f, path, data)
}

// replace writes data to the temporary file f, syncs it and renames it
// over path; f is removed on any failure.
func replace(f *os.File, path string, data []byte) error {
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("securefs: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("securefs: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("securefs: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("securefs: write %s: %w", path, err)
	}
	return nil
}
