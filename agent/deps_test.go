package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the agent lean and apart from the server: it must never
// link the etcd server, SQL drivers or server code, on any OS it ships for.
func TestDeps(t *testing.T) {
	forbidden := []string{
		"go.etcd.io/etcd/server",
		"modernc.org/sqlite",
		"github.com/jackc/pgx",
		"github.com/mamori/mamori/server",
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command here (e.g. under Wine); the Linux run covers every GOOS")
	}
	for _, goos := range []string{"windows", "linux", "darwin"} {
		cmd := exec.Command("go", "list", "-deps", ".")
		cmd.Env = append(cmd.Environ(), "GOOS="+goos, "GOARCH=amd64")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list (%s): %v", goos, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list (%s) listed only %d packages", goos, len(deps))
		}
		for _, d := range deps {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("GOOS=%s: mamori-agent depends on %s", goos, d)
				}
			}
		}
	}
}
