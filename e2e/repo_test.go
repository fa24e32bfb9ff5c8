package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDemoFolderIgnored guards against committing the demo's secrets: the
// folder scripts/demo.sh writes (CA key, admin token, initial password) and
// the secret files in it must be ignored by git, so `git add -A` after
// `make demo` stages none of them.
func TestDemoFolderIgnored(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", root, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skip("not a git checkout")
	}
	script, err := os.ReadFile(filepath.Join(root, "scripts", "demo.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^top=\$PWD/(\S+)$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("scripts/demo.sh: no top=$PWD/<folder> line; update this test with the demo's folder")
	}
	demo := string(m[1])
	for _, p := range []string{demo + "/server/ca-key.pem", demo + "/server/admin-token",
		demo + "/server/initial-admin-password", demo + "/agent/key.pem", demo + "/server.log"} {
		out, err := exec.Command("git", "-C", root, "check-ignore", "-v", "--no-index", p).CombinedOutput()
		if err != nil {
			t.Errorf("%s is not ignored by git (git add -A would commit it): %v %s", p, err, strings.TrimSpace(string(out)))
		}
	}
}
