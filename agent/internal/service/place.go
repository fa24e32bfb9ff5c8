package service

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// ProgramDir is where `install` puts the agent's program before it
// registers the service, so the service never runs from Downloads, a temp
// folder or a network share that may vanish or be writable by users.
func ProgramDir() string {
	switch runtime.GOOS {
	case "windows":
		pf := os.Getenv("ProgramFiles")
		if pf == "" {
			pf = `C:\Program Files`
		}
		return filepath.Join(pf, "Mamori")
	default:
		return "/usr/local/bin"
	}
}

// trustedProgramDirs are folders a service may run from as they are:
// ProgramDir and the packages' /usr/bin.
func trustedProgramDirs() []string {
	if runtime.GOOS == "windows" {
		return []string{ProgramDir()}
	}
	return []string{ProgramDir(), "/usr/bin", "/usr/sbin", "/usr/local/sbin"}
}

// placeExecutable returns the path the service should run: exe itself when
// it sits in a trusted folder, else a copy in dir (written through a temp
// file and a rename, mode 0755), replacing an older copy.
func placeExecutable(exe, dir string, trusted []string) (string, bool, error) {
	exeDir := filepath.Dir(exe)
	for _, t := range trusted {
		if strings.EqualFold(filepath.Clean(exeDir), filepath.Clean(t)) {
			return exe, false, nil
		}
	}
	dst := filepath.Join(dir, filepath.Base(exe))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("service: %w", err)
	}
	src, err := os.Open(exe)
	if err != nil {
		return "", false, fmt.Errorf("service: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(dir, ".mamori-agent-*")
	if err != nil {
		return "", false, fmt.Errorf("service: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", false, fmt.Errorf("service: copy program: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return "", false, fmt.Errorf("service: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", false, fmt.Errorf("service: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", false, fmt.Errorf("service: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", false, fmt.Errorf("service: %w (is the service running from there? stop it first)", err)
	}
	return dst, true, nil
}
