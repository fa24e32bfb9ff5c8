package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/server/internal/state"
)

// TestTokensCLI creates, lists and revokes tokens and disables an agent
// through the CLI against a real server.
func TestTokensCLI(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append(args, "--server", srv.URL(), "--data-dir", dir), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, tok, errs := cli("tokens", "create", "api", "--name", "audit-script", "--role", "auditor", "--ttl", "720h")
	if code != 0 || len(strings.TrimSpace(tok)) < 40 || !strings.Contains(errs, "shown only this once") {
		t.Fatalf("create: %d %q %q", code, tok, errs)
	}
	code, list, errs := cli("tokens", "list")
	if code != 0 || !strings.Contains(list, "audit-script") || !strings.Contains(list, "enroll") || strings.Contains(list, strings.TrimSpace(tok)) {
		t.Fatalf("list: %d %q %q", code, list, errs)
	}
	var id string
	for _, l := range strings.Split(list, "\n") {
		if strings.Contains(l, "audit-script") {
			id = strings.Fields(l)[0]
		}
	}
	if code, out, errs := cli("tokens", "revoke", id); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %d %q %q", code, out, errs)
	}
	if code, _, _ := cli("tokens", "revoke", id); code == 0 {
		t.Fatal("revoking twice succeeded")
	}
	if code, _, errs := cli("tokens", "frobnicate"); code != 2 {
		t.Fatalf("unknown subcommand: %d %q", code, errs)
	}
	// agents disable/enable on an enrolled agent record.
	id = pki.NewAgentID()
	if err := srv.State().PutAgent(context.Background(), stateAgent(id)); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"disable", "enable"} {
		if code, out, errs := cli("agents", sub, id); code != 0 || !strings.Contains(out, sub+"d") {
			t.Fatalf("agents %s: %d %q %q", sub, code, out, errs)
		}
	}
}

func stateAgent(id string) state.Agent {
	return state.Agent{ID: id, Hostname: "pc-1", OS: "linux", Arch: "amd64", CertSerial: "0a0b"}
}

// TestTokensListUsedUp: a token whose uses are spent but whose expiry is
// ahead is "used up", not "expired": the admin needs more uses, not a
// longer life.
func TestTokensListUsedUp(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	ctx := context.Background()
	plain, tok, err := srv.State().CreateEnrollToken(ctx, time.Hour, 1, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.State().ConsumeEnrollToken(ctx, plain); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"tokens", "list", "--server", srv.URL(), "--data-dir", dir}, &out, &errb); code != 0 {
		t.Fatalf("list: %d %q", code, errb.String())
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, tok.ID) {
			if !strings.HasSuffix(strings.TrimSpace(l), "used up") {
				t.Fatalf("spent token with an hour to live:\n%s", out.String())
			}
			return
		}
	}
	t.Fatalf("token %s not listed:\n%s", tok.ID, out.String())
}

// A server reached by a name its certificate lacks is running: the CLI
// says which names it has, not to check the firewall.
func TestAdminCLIWrongName(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	var out, errb bytes.Buffer
	base := "https://localhost:" + strconv.Itoa(srv.Port())
	code := run([]string{"tokens", "list", "--server", base, "--data-dir", dir}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "its certificate is for 127.0.0.1, not \"localhost\"") ||
		!strings.Contains(errb.String(), "https://127.0.0.1:PORT") || strings.Contains(errb.String(), "firewall") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// startServer serves dir in process, on loopback, for the CLI's tests.
func startServer(t *testing.T, dir string) *app.Server {
	t.Helper()
	srv, err := app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1"}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// "tokens create --ttl 3d" used to fail with `invalid value "3d" for flag
// -ttl: parse error`, though --retention takes days; and a kanji name was
// refused as not letters.
func TestTokensCreateDaysAndUnicodeNames(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append(args, "--server", srv.URL(), "--data-dir", dir), &out, &errb)
		return code, out.String(), errb.String()
	}
	validUntil := func(errs string) time.Time {
		_, s, _ := strings.Cut(errs, "valid until ")
		s, _, _ = strings.Cut(s, ";")
		at, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatalf("no expiry in %q", errs)
		}
		return at
	}
	for _, tc := range []struct {
		args []string
		ttl  time.Duration
	}{
		{[]string{"tokens", "create", "--ttl", "3d", "--uses", "5"}, 72 * time.Hour},
		{[]string{"tokens", "create", "api", "--name", "山田", "--role", "auditor", "--ttl", "30d"}, 30 * 24 * time.Hour},
		{[]string{"tokens", "create", "api", "--name", "経理-スクリプト_2", "--role", "auditor", "--ttl", "12h"}, 12 * time.Hour},
		{[]string{"tokens", "create", "api", "--name", strings.Repeat("山", 64), "--role", "auditor", "--ttl", "1d"}, 24 * time.Hour},
	} {
		start := time.Now()
		code, tok, errs := cli(tc.args...)
		if code != 0 || len(strings.TrimSpace(tok)) < 40 {
			t.Fatalf("%v: %d %q %q", tc.args, code, tok, errs)
		}
		if at := validUntil(errs); at.Before(start.Add(tc.ttl).Add(-time.Second)) || at.After(time.Now().Add(tc.ttl).Add(time.Second)) {
			t.Errorf("%v: valid until %s, want about %s from now", tc.args, at, tc.ttl)
		}
	}
	if code, list, errs := cli("tokens", "list"); code != 0 || !strings.Contains(list, "山田") || !strings.Contains(list, "経理-スクリプト_2") {
		t.Fatalf("list: %d %q %q", code, list, errs)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ttl", "3x"}, `--ttl: "3x" is not a duration such as 12h, 30d or 90d`},
		{[]string{"--ttl", "d"}, `--ttl: "d" is not a duration such as 12h, 30d or 90d`},
		{[]string{"--ttl", "-3d"}, `--ttl -3d: want from 1s to 90d for an enroll token`},
		{[]string{"--ttl", "91d"}, `--ttl 91d: want from 1s to 90d for an enroll token`},
		{[]string{"api", "--name", "x", "--ttl", "367d"}, `--ttl 367d: want from 1s to 366d for an api token`},
		{[]string{"api", "--name", " 山田"}, `--name " 山田"`},
		{[]string{"api", "--name", "山田 "}, `--name "山田 "`},
		{[]string{"api", "--name", "山田 太郎"}, `--name "山田 太郎"`},
		{[]string{"api", "--name", "山田\u3000太郎"}, `--name "山田\u3000太郎"`},
		{[]string{"api", "--name", "a/b"}, `--name "a/b"`},
		{[]string{"api", "--name", `a\b`}, `--name "a\\b"`},
		{[]string{"api", "--name", "a\nb"}, `--name "a\nb"`},
		{[]string{"api", "--name", "a\u200bb"}, `--name "a\u200bb"`},
		{[]string{"api", "--name", ".."}, `--name ".."`},
		{[]string{"api", "--name", strings.Repeat("山", 65)}, `--name`},
	} {
		code, _, errs := cli(append([]string{"tokens", "create"}, tc.args...)...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d %q, want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}
