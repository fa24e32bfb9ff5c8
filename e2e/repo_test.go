package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

// make demo on a port another program holds says so and names DEMO_PORT,
// at once and without building or creating anything.
func TestDemoPortTaken(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	root, _ := filepath.Abs("..")
	if _, err := os.Stat(filepath.Join(root, ".demo")); err == nil {
		t.Skip(".demo exists (a demo ran here); not touching it")
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "demo.sh"))
	cmd.Env = append(os.Environ(), "DEMO_PORT="+strconv.Itoa(port))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("demo started on a taken port:\n%s", out)
	}
	if !strings.Contains(string(out), "already in use") || !strings.Contains(string(out), "DEMO_PORT=") {
		t.Fatalf("message does not say the port is taken or name DEMO_PORT:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(root, ".demo")); err == nil {
		os.RemoveAll(filepath.Join(root, ".demo"))
		t.Fatal("the refused demo created .demo")
	}
}

// TestDocsLinksStayInRepo keeps README and docs/ self-contained for a user
// who clones the repository: every relative link names a file or folder
// inside it, and no tracked file points at the team's notes next to the
// repository (../shared), which a clone does not have.
func TestDocsLinksStayInRepo(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pages, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	pages = append(pages, filepath.Join(root, "README.md"))
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	checked := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllSubmatch(b, -1) {
			target := string(m[1])
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			abs := filepath.Clean(filepath.Join(filepath.Dir(page), filepath.FromSlash(target)))
			rel, err := filepath.Rel(root, abs)
			if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				t.Errorf("%s links %s, outside the repository", page, m[1])
				continue
			}
			if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s links %s: %v", page, m[1], err)
			}
			checked++
		}
	}
	if checked < 10 {
		t.Fatalf("only %d relative links found in README.md and docs/: is the link pattern still right?", checked)
	}
	if _, err := exec.LookPath("git"); err != nil {
		return
	}
	out, err := exec.Command("git", "-C", root, "grep", "-n", "-I", "-F", "-e", "../shared/", "-e", "/work/shared",
		"--", ".", ":!e2e/repo_test.go").CombinedOutput()
	if err == nil {
		t.Errorf("tracked files point outside the repository:\n%s", out)
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Logf("git grep not run (%v): %s", err, out) // not a checkout
	}
}
