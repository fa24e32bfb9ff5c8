package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/keyring"
)

func writeKEK(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kek")
	var out bytes.Buffer
	if err := cmdKEK([]string{"new", p}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "id ") {
		t.Errorf("kek new says %q", out.String())
	}
	return p
}

func TestKEKNewWritesAPrivateFileOnce(t *testing.T) {
	p := writeKEK(t)
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v %v", fi.Mode(), err)
		}
	}
	before, _ := os.ReadFile(p)
	if err := cmdKEK([]string{"new", p}, io.Discard, io.Discard); err == nil {
		t.Fatal("overwrote an existing key")
	}
	if after, _ := os.ReadFile(p); !bytes.Equal(before, after) {
		t.Fatal("the existing key changed")
	}
	if _, err := keyring.ReadKEKFile(p); err != nil {
		t.Fatal(err)
	}
}

func TestClusterFlags(t *testing.T) {
	kek := writeKEK(t)
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("etcd-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	parse := func(args ...string) error {
		f := newFlags(io.Discard)
		if err := f.parse(args); err != nil {
			return err
		}
		_, err := f.configEnv(zerolog.Nop(), getenv)
		return err
	}
	for _, tc := range []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"--join", "--kek-file", kek, "--events-dsn", "postgres://db/mamori"}, "--etcd-endpoints"},
		{[]string{"--join", "--etcd-endpoints", "https://e:2379", "--events-dsn", "postgres://db/mamori"}, "key-encryption key"},
		{[]string{"--join", "--etcd-endpoints", "https://e:2379", "--kek-file", kek}, "--events-dsn"},
		{[]string{"--join", "--etcd-endpoints", "https://e:2379", "--kek-file", kek, "--events-dsn", "postgres://db/mamori"}, ""},
		{[]string{"--etcd-user", "mamori"}, "--etcd-endpoints"},
		{[]string{"--etcd-endpoints", "https://e:2379", "--etcd-user", "mamori"}, "no password"},
		{[]string{"--etcd-endpoints", "https://e:2379", "--etcd-user", "mamori", "--etcd-password-file", pw}, ""},
		{[]string{"--etcd-endpoints", "https://e:2379", "--etcd-password-file", pw}, "without --etcd-user"},
		{[]string{"--etcd-endpoints", "https://e:2379", "--etcd-cert", kek}, "go together"},
		{[]string{"--kek-file", filepath.Join(t.TempDir(), "missing")}, "no such file"},
		{[]string{"--service-name", "bad name!"}, "--service-name"},
		{[]string{"--service-name", "mamori.example.jp", "--kek-file", kek}, ""},
	} {
		err := parse(tc.args...)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
	// The password comes from the environment when no file is given, and
	// never from a flag value.
	env[EnvEtcdPassword] = "from-env"
	if err := parse("--etcd-endpoints", "https://e:2379", "--etcd-user", "mamori"); err != nil {
		t.Errorf("password from %s: %v", EnvEtcdPassword, err)
	}
	env[keyring.EnvKEK] = keyring.NewKEKText()
	if err := parse("--kek-file", kek); err == nil || !strings.Contains(err.Error(), "give one") {
		t.Errorf("KEK by file and environment: %v", err)
	}
}

func TestServiceArgsOfAJoinedServer(t *testing.T) {
	kek := writeKEK(t)
	rel, err := filepath.Rel(mustWd(t), kek)
	if err != nil {
		t.Fatal(err)
	}
	f := newFlags(io.Discard)
	if err := f.parse([]string{"--join", "--kek-file", rel, "--etcd-endpoints", "https://e:2379"}); err != nil {
		t.Fatal(err)
	}
	args, err := f.serviceArgs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(args, "--join=true") || !slices.Contains(args, kek) {
		t.Fatalf("service args %q: want --join=true and the absolute KEK path %s", args, kek)
	}
	g := newFlags(io.Discard)
	if err := g.parse(args[1:]); err != nil || !g.cluster.join {
		t.Fatalf("service args do not parse back: %v", err)
	}
}

func mustWd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
