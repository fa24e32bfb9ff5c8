package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

const childArgsEnv = "MAMORI_SERVER_TEST_ARGS"

func TestMain(m *testing.M) {
	if a := os.Getenv(childArgsEnv); a != "" {
		os.Exit(run(strings.Split(a, "\x1f"), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

var dashboardRE = regexp.MustCompile(`dashboard:\s+https://127\.0\.0\.1:(\d+)/`)

var enrollRE = regexp.MustCompile(`mamori-agent enroll --server https://127\.0\.0\.1:(\d+) --token (\S+) --ca-hash (sha256:[0-9a-f]{64})`)

// serveOnce runs "mamori-server serve" as a child process, waits for the
// enroll command on stdout, checks /healthz, sends SIGTERM and returns
// the token and CA hash it printed.
func serveOnce(t *testing.T, dir string) (token, caHash string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join([]string{"serve", "--data-dir", dir,
		"--listen", "127.0.0.1:0", "--hostname", "127.0.0.1,localhost", "--log-level", "warn"}, "\x1f"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		port := ""
		for sc.Scan() {
			if m := dashboardRE.FindStringSubmatch(sc.Text()); m != nil {
				port = m[1]
			}
			if m := enrollRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			} else if strings.Contains(sc.Text(), "tokens create") && port != "" {
				found <- []string{sc.Text(), port, "", ""} // later starts: no bootstrap token printed
			}
		}
		io.Copy(io.Discard, out)
	}()
	var m []string
	select {
	case m = <-found:
	case <-time.After(60 * time.Second):
		t.Fatalf("no enroll command printed; stderr: %s", stderr.String())
	}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://127.0.0.1:" + m[1] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v; stderr: %s", err, stderr.String())
	}
	return m[2], m[3]
}

func TestServeFirstAndSecondStart(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("sends SIGTERM")
	}
	dir := t.TempDir()
	tok1, ca1 := serveOnce(t, dir)
	file, _ := os.ReadFile(filepath.Join(dir, "enroll-token"))
	if strings.TrimSpace(string(file)) != tok1 {
		t.Fatal("printed token differs from the enroll-token file")
	}
	// The bootstrap enroll token is printed on the first start only, not
	// into every later start's log.
	if tok2, _ := serveOnce(t, dir); tok2 != "" {
		t.Fatal("second start printed the enroll token again")
	}
	if tok1 == "" || ca1 == "" {
		t.Fatal("first start printed no enroll command")
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"serve", "--no-such-flag"}, 2},
		{[]string{"serve", "extra"}, 2},
		{[]string{"serve", "--log-level", "loud"}, 2},
		{[]string{"stop", "--listen", ":1"}, 2},
		{[]string{"version"}, 0},
	} {
		if got := run(tc.args, &out, &errb); got != tc.code {
			t.Errorf("%q: exit %d, want %d (%s)", tc.args, got, tc.code, errb.String())
		}
	}
}

func TestServiceArgs(t *testing.T) {
	f := newFlags(io.Discard)
	if err := f.parse([]string{"--data-dir", "rel/dir", "--listen", ":9443"}); err != nil {
		t.Fatal(err)
	}
	args, err := f.serviceArgs()
	if err != nil {
		t.Fatal(err)
	}
	if len(args) != 5 || args[0] != "serve" || args[1] != "--data-dir" || !filepath.IsAbs(args[2]) || args[3] != "--listen" || args[4] != ":9443" {
		t.Fatalf("service args %q", args)
	}
}

// --help and a bare mamori-server name every command, and the bare form
// lists the serve flags under their heading; version names commit and date.
func TestHelpNamesEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, nil} {
		var out, errb bytes.Buffer
		run(args, &out, &errb)
		text := out.String() + errb.String()
		for _, cmd := range []string{"serve", "install", "uninstall", "start", "stop", "harden-service", "verify", "register import", "policy apply", "version", "help"} {
			if !strings.Contains(text, "\n  "+cmd+" ") {
				t.Errorf("%q does not name %q:\n%s", args, cmd, text)
			}
		}
		if !strings.Contains(text, "flags:\n  -") {
			t.Errorf("%q: empty flags heading:\n%s", args, text)
		}
	}
	version, commit, date = "v1.0.0", "c0ffee", "2026-12-03T00:00:00Z"
	defer func() { version, commit, date = "", "", "" }()
	var out, errb bytes.Buffer
	run([]string{"version"}, &out, &errb)
	if !strings.Contains(out.String(), "mamori-server v1.0.0 (commit c0ffee, built 2026-12-03T00:00:00Z") {
		t.Fatalf("version: %q", out.String())
	}
}
