package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the load generator outside the server: it measures what an
// agent sees, so it must never link server code, the etcd server or SQL
// drivers (and the server, being other packages, never links it).
func TestDeps(t *testing.T) {
	forbidden := []string{"go.etcd.io/etcd/server", "modernc.org/sqlite", "github.com/jackc/pgx",
		"github.com/mamori/mamori/server", "github.com/mamori/mamori/agent"}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command here")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list listed only %d packages", len(deps))
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("mamori-loadgen depends on %s", d)
			}
		}
	}
	// And the server never links the load generator.
	out, err = exec.Command("go", "list", "-deps", "../server").Output()
	if err != nil {
		t.Fatalf("go list ../server: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, "github.com/mamori/mamori/loadgen") {
			t.Errorf("mamori-server depends on %s", d)
		}
	}
}
