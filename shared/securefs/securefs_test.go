package securefs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteSecretFileReplacesAtomically(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := ProtectDir(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("ProtectDir did not create %s: %v", dir, err)
	}
	p := filepath.Join(dir, "log-key")
	for _, v := range []string{"first", "second, longer"} {
		if err := WriteSecretFile(p, []byte(v)); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != v {
			t.Fatalf("read back %q, %v; want %q", b, err, v)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %q, want only log-key (temp files left behind)", names)
	}
}

func TestWriteSecretFileMissingDir(t *testing.T) {
	err := WriteSecretFile(filepath.Join(t.TempDir(), "nope", "key"), []byte("x"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want one wrapping fs.ErrNotExist", err)
	}
}

func TestProtectDirOnFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ProtectDir(p); err == nil {
		t.Fatal("ProtectDir on a regular file succeeded")
	}
}

// WriteFile replaces a public file the same way, leaving no temp file.
func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ca.pem")
	for _, v := range []string{"first", "second, longer"} {
		if err := WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != v {
			t.Fatalf("read back %q, %v; want %q", b, err, v)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("dir holds %d entries, want only ca.pem", len(ents))
	}
	if err := WriteFile(filepath.Join(dir, "missing", "x"), nil, 0o644); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v", err)
	}
}
