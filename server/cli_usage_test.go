package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/eventlog"
)

// "help TOPIC" prints that command's usage (what COMMAND --help prints),
// on stdout, exit 0; an unknown topic is a usage error naming it.
func TestHelpTopic(t *testing.T) {
	for topic, want := range map[string]string{
		"tokens": "mamori-server tokens create", "agents": "mamori-server agents disable",
		"policy": "mamori-server policy apply", "register": "mamori-server register import",
		"serve": "usage: mamori-server serve", "verify": "-pubkey", "witness": "-state", "kek": "kek new FILE",
		"install": "-listen", "harden-service": "harden-service [NAME]", "version": "usage: mamori-server version",
		"help": "commands:",
	} {
		var out, errb bytes.Buffer
		code := run([]string{"help", topic}, &out, &errb)
		if code != 0 || !strings.Contains(out.String(), want) {
			t.Errorf("help %s: exit %d, stdout lacks %q:\n%s\nstderr: %s", topic, code, want, out.String(), errb.String())
		}
		if topic != "help" && strings.Contains(out.String(), "commands:\n  serve") {
			t.Errorf("help %s: printed the general help:\n%s", topic, out.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"help", "bogus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown help topic "bogus"`) {
		t.Errorf("help bogus: exit %d: %q", code, errb.String())
	}
}

// An unknown subcommand says so first, then prints the usage; exit 2.
func TestUnknownSubcommand(t *testing.T) {
	for _, args := range [][]string{{"tokens", "bogus"}, {"agents", "bogus", "x"}, {"policy", "bogus"}, {"register", "bogus"}} {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		text := errb.String()
		if code != 2 || !strings.HasPrefix(text, "mamori-server "+args[0]+`: unknown subcommand "bogus"`) || !strings.Contains(text, "usage:") {
			t.Errorf("%q: exit %d:\n%s", args, code, text)
		}
	}
}

// version takes no flags or arguments.
func TestVersionRefusesArgs(t *testing.T) {
	for _, args := range [][]string{{"version", "--bogus"}, {"version", "extra"}, {"--version", "x"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 || out.Len() != 0 {
			t.Errorf("%q: exit %d, want 2; stdout %q stderr %q", args, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "mamori-server ") {
		t.Errorf("version: exit %d %q", code, out.String())
	}
}

// serve refuses a listen address it cannot listen on before opening the
// data directory: a usage error.
func TestServeBadListen(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:abc", "127.0.0.1", "127.0.0.1:70000"} {
		dir := filepath.Join(t.TempDir(), "data")
		var out, errb bytes.Buffer
		code := run([]string{"serve", "--listen", addr, "--data-dir", dir}, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "--listen") {
			t.Errorf("--listen %s: exit %d: %s", addr, code, errb.String())
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("--listen %s: created %s", addr, dir)
		}
	}
}

// --retention takes years and days as well as Go durations.
func TestRetentionFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"3y": eventlog.DefaultRetention, "1095d": eventlog.DefaultRetention, "26280h": eventlog.DefaultRetention,
		"2y": 2 * 365 * 24 * time.Hour, "800d": 800 * 24 * time.Hour,
	} {
		f := newFlags(&bytes.Buffer{})
		if err := f.parse([]string{"--retention", in}); err != nil || f.retention != want {
			t.Errorf("--retention %s: %v, %s; want %s", in, err, f.retention, want)
		}
		// install passes the value on: it must read back the same.
		var rv retentionValue
		if err := rv.Set((*retentionValue)(&f.retention).String()); err != nil || time.Duration(rv) != want {
			t.Errorf("--retention %s: String %q does not read back: %v", in, (*retentionValue)(&f.retention).String(), err)
		}
	}
	if f := newFlags(&bytes.Buffer{}); f.parse(nil) != nil || f.retention != eventlog.DefaultRetention {
		t.Errorf("default retention %s", f.retention)
	}
	for _, in := range []string{"1.5y", "y", "-1d", "forever"} {
		var errb bytes.Buffer
		code := run([]string{"serve", "--retention", in, "--data-dir", filepath.Join(t.TempDir(), "d")}, &bytes.Buffer{}, &errb)
		if code != 2 || !strings.Contains(errb.String(), "years (3y), days (1095d) or a Go duration") {
			t.Errorf("--retention %s: exit %d: %s", in, code, errb.String())
		}
	}
	// Parsed but too short: refused with the 2-year floor.
	var errb bytes.Buffer
	if code := run([]string{"serve", "--retention", "1y", "--data-dir", filepath.Join(t.TempDir(), "d")}, &bytes.Buffer{}, &errb); code != 2 || !strings.Contains(errb.String(), "2 years") {
		t.Errorf("--retention 1y: exit %d: %s", code, errb.String())
	}
}

// policy apply reads and checks its file before it looks for the admin
// token or the server.
func TestPolicyApplyFileFirst(t *testing.T) {
	empty := t.TempDir()
	var out, errb bytes.Buffer
	code := run([]string{"policy", "apply", filepath.Join(empty, "nonexist.yaml"), "--data-dir", empty}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "nonexist.yaml") || strings.Contains(errb.String(), "admin token") {
		t.Errorf("missing file: exit %d: %s", code, errb.String())
	}
	bad := filepath.Join(empty, "bad.yaml")
	os.WriteFile(bad, []byte("name: x\nversion: 1\ncontrols:\n  bogus: {}\n"), 0o644)
	errb.Reset()
	code = run([]string{"policy", "apply", bad, "--data-dir", empty}, &out, &errb)
	if code != 2 || strings.Contains(errb.String(), "admin token") {
		t.Errorf("invalid file: exit %d: %s", code, errb.String())
	}
}

// --server with a user name or password is refused (the CLI would drop
// them), before the token is read; the password is not echoed.
func TestServerURLUserInfo(t *testing.T) {
	empty := t.TempDir()
	for _, args := range [][]string{
		{"tokens", "list"}, {"agents", "disable", "x"}, {"register", "export"},
	} {
		var out, errb bytes.Buffer
		code := run(append(args, "--server", "https://user:pw@localhost:8443", "--data-dir", empty), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "user name or password") || strings.Contains(errb.String(), ":pw@") {
			t.Errorf("%q: exit %d: %s", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	code := run([]string{"witness", "--server", "https://user:pw@localhost:8443", "--token", "t", "--pubkey", "p", "--state", empty, "--once"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "user name or password") {
		t.Errorf("witness: exit %d: %s", code, errb.String())
	}
}

// tokens create refuses, before contacting the server, what the server
// would refuse; a 400 the server answers is a usage error too (exit 2),
// other failures exit 1.
func TestTokensCreateUsage(t *testing.T) {
	empty := t.TempDir()
	for _, args := range [][]string{
		{"--uses", "0"}, {"--uses", "100001"}, {"--ttl", "0s"}, {"--ttl", "2400h"},
		{"api", "--name", "x", "--role", "root"}, {"api", "--name", "bad name"}, {"api"}, {"api", "--name", "x", "--ttl", "9000h"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"tokens", "create", "--data-dir", empty}, args...), &out, &errb)
		if code != 2 || strings.Contains(errb.String(), "admin token") {
			t.Errorf("%q: exit %d: %s", args, code, errb.String())
		}
	}
	dir := t.TempDir()
	srv := startServer(t, dir)
	var out, errb bytes.Buffer
	// Not found (404): a failure, exit 1.
	if code := run([]string{"tokens", "revoke", "nonexist", "--server", srv.URL(), "--data-dir", dir}, &out, &errb); code != 1 {
		t.Errorf("revoke unknown: exit %d, want 1: %s", code, errb.String())
	}
	// A 400 from the server: exit 2.
	c, err := (&adminFlags{server: srv.URL(), dataDir: dir}).client()
	if err != nil {
		t.Fatal(err)
	}
	err = c.call("POST", "/api/v1/tokens", "application/json", []byte(`{"kind":"enroll","ttl":"1h","uses":0}`), &struct{}{})
	if code := exitCode(fmt.Errorf("tokens create: %w", err), &bytes.Buffer{}); code != 2 {
		t.Errorf("400: exit %d: %v", code, err)
	}
}

// A TLS host name mismatch names the certificate's names and the fix, in
// the witness as in the admin commands.
func TestWitnessWrongName(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	var out, errb bytes.Buffer
	code := run([]string{"witness", "--server", "https://localhost:" + strconv.Itoa(srv.Port()), "--token", "t",
		"--pubkey", filepath.Join(dir, "log-key.pub"), "--ca", filepath.Join(dir, "ca.pem"), "--state", t.TempDir(), "--once"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "its certificate is for 127.0.0.1, not \"localhost\"") ||
		!strings.Contains(errb.String(), "--hostname") {
		t.Errorf("exit %d: %s", code, errb.String())
	}
}
