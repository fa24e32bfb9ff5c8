package service

import (
	"bytes"
	"strings"
	"testing"
)

// version takes no flags and no arguments: anything else is a usage error.
func TestVersionRefusesArgs(t *testing.T) {
	for _, args := range [][]string{{"version", "--bogus"}, {"version", "extra"}, {"--version", "x"}} {
		var out, errb bytes.Buffer
		if code := Main(args, nil, &out, &errb); code != exitUsage || out.Len() != 0 {
			t.Errorf("%q: exit %d, want 2; stdout %q stderr %q", args, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"version", "--help"}, nil, &out, &errb); code != exitOK {
		t.Errorf("version --help: exit %d", code)
	}
}

// An unknown flag prints the error once and the usage once, not the flag
// package's usage and then the agent's.
func TestUnknownFlagUsageOnce(t *testing.T) {
	for _, args := range [][]string{{"enroll", "--bogus"}, {"configure", "--bogus"}, {"status", "--bogus"}, {"run", "--bogus"}} {
		var out, errb bytes.Buffer
		code := Main(args, nil, &out, &errb)
		text := errb.String()
		if code != exitUsage {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if n := strings.Count(strings.ToLower(text), "usage"); n != 1 {
			t.Errorf("%q: usage printed %d times:\n%s", args, n, text)
		}
		if n := strings.Count(text, "not defined: -bogus"); n != 1 {
			t.Errorf("%q: error printed %d times:\n%s", args, n, text)
		}
		// The command's own usage, not every command's.
		if !strings.Contains(text, "usage: mamori-agent "+args[0]+" ") || strings.Contains(text, "uninstall") {
			t.Errorf("%q: not the command's own usage:\n%s", args, text)
		}
	}
	// --help still lists the command's flags, and exits 0.
	var out, errb bytes.Buffer
	if code := Main([]string{"enroll", "--help"}, nil, &out, &errb); code != exitOK || !strings.Contains(errb.String(), "-ca-hash") {
		t.Errorf("enroll --help: exit %d:\n%s", code, errb.String())
	}
}

// A --server URL with a user name or password is refused, not used with
// them silently dropped; the password is not echoed.
func TestServerURLUserInfoRefused(t *testing.T) {
	hash := "sha256:" + strings.Repeat("a", 64)
	for _, args := range [][]string{
		{"enroll", "--server", "https://user:pw@host:8443", "--token", "t", "--ca-hash", hash},
		{"configure", "--server", "https://a:1,https://user:pw@b:2", "--ca-hash", hash},
		{"configure", "--server", "https://user@b:2", "--ca-hash", hash},
	} {
		dir := t.TempDir()
		var out, errb bytes.Buffer
		code := Main(append(args, "--state-dir", dir), nil, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), "user name or password") || strings.Contains(errb.String(), ":pw@") {
			t.Errorf("%q: exit %d, want 2:\n%s", args, code, errb.String())
		}
	}
}

// enroll takes one server; a list (as configure takes) is answered with
// what to use instead, not "want https://host:port".
func TestEnrollWithAListSaysConfigure(t *testing.T) {
	hash := "sha256:" + strings.Repeat("a", 64)
	var out, errb bytes.Buffer
	code := Main([]string{"enroll", "--server", "https://a:8443,https://b:8443", "--token", "t", "--ca-hash", hash,
		"--state-dir", t.TempDir()}, nil, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "mamori-agent configure --server") {
		t.Errorf("exit %d:\n%s", code, errb.String())
	}
}
