package main

import (
	"bytes"
	"strings"
	"testing"
)

// "mamori-server COMMAND --help" (and -h) prints that command's usage,
// with only the flags it takes, and exits 0: the top-level usage promises it.
func TestCommandHelp(t *testing.T) {
	for _, tc := range []struct {
		cmd        string
		has, lacks []string
	}{
		{"serve", []string{"-listen", "-data-dir"}, nil},
		{"install", []string{"-listen", "-data-dir"}, nil},
		{"uninstall", nil, []string{"-listen", "-data-dir"}},
		{"start", nil, []string{"-listen", "-data-dir"}},
		{"stop", nil, []string{"-listen", "-data-dir"}},
		{"harden-service", []string{"harden-service [NAME]"}, nil},
		{"verify", []string{"-pubkey", "-checkpoint"}, nil},
		{"export", []string{"-out", "-agent", "-token-file"}, []string{"-kind", "-ttl"}},
		{"compliance", []string{"-department", "-status"}, []string{"-kind", "-ttl"}},
		{"witness", []string{"-pubkey", "-state"}, nil},
		{"register", []string{"register import", "-kind", "-token-file"}, []string{"-ttl"}},
		{"policy", []string{"policy apply", "-token-file"}, []string{"-kind", "-encoding", "-ttl"}},
		{"tokens", []string{"tokens create", "-ttl", "-uses", "-token-file"}, []string{"-kind", "-encoding"}},
		{"agents", []string{"agents disable", "-token-file"}, []string{"-kind", "-ttl", "-uses"}},
		{"kek", []string{"kek new FILE"}, nil},
	} {
		for _, h := range []string{"--help", "-h"} {
			var out, errb bytes.Buffer
			code := run([]string{tc.cmd, h}, &out, &errb)
			text := out.String() + errb.String()
			if code != 0 {
				t.Errorf("%s %s: exit %d, want 0:\n%s", tc.cmd, h, code, text)
			}
			if !strings.Contains(text, "usage: mamori-server "+tc.cmd) && !strings.Contains(text, "  mamori-server "+tc.cmd) {
				t.Errorf("%s %s: no usage of %s:\n%s", tc.cmd, h, tc.cmd, text)
			}
			for _, bad := range []string{"unknown command", "help requested", "not a service name"} {
				if strings.Contains(text, bad) {
					t.Errorf("%s %s: says %q:\n%s", tc.cmd, h, bad, text)
				}
			}
			for _, s := range tc.has {
				if !strings.Contains(text, s) {
					t.Errorf("%s %s: does not list %q:\n%s", tc.cmd, h, s, text)
				}
			}
			for _, s := range tc.lacks {
				if strings.Contains(text, s+" ") || strings.Contains(text, s+"\n") {
					t.Errorf("%s %s: lists %q, which it does not take:\n%s", tc.cmd, h, s, text)
				}
			}
		}
	}
}
