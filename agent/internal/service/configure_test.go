package service

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mamori/mamori/agent/internal/uplink"
)

// configure --env-file reads /etc/mamori/agent.env as the packages'
// postinst passes it; flags win over the file; a later run without a token
// (an upgrade) keeps the waiting token.
func TestConfigureFromEnvFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	env := filepath.Join(t.TempDir(), "agent.env")
	hash := "sha256:" + strings.Repeat("ab", 32)
	os.WriteFile(env, []byte("# installed by the admin\n"+
		"MAMORI_SERVER=\"https://a.example:8443,https://b.example:8443\"\n"+
		"MAMORI_TOKEN=secret-token\n"+
		"export MAMORI_CA_HASH='"+hash+"'\n"+
		"MAMORI_DEPARTMENT=\"総務部\"\n\n"), 0o600)
	var out, errb bytes.Buffer
	if code := Main([]string{"configure", "--env-file", env, "--proxy", "http://proxy:3128", "--state-dir", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if strings.Contains(out.String()+errb.String(), "secret-token") {
		t.Fatal("configure printed the token")
	}
	c, err := uplink.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Servers, ",") != "https://a.example:8443,https://b.example:8443" || c.Token != "secret-token" ||
		c.CAHash != hash || c.Department != "総務部" || c.Proxy != "http://proxy:3128" {
		t.Fatalf("config %+v", c)
	}
	out.Reset()
	if code := Main([]string{"configure", "--server", "https://c.example:8443", "--ca-hash", hash, "--state-dir", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if c, _ = uplink.LoadConfig(dir); c.Token != "secret-token" || c.Servers[0] != "https://c.example:8443" {
		t.Fatalf("after upgrade without token: %+v", c)
	}
	bad := filepath.Join(t.TempDir(), "bad.env")
	os.WriteFile(bad, []byte("MAMORI_SERVER\n"), 0o600)
	if code := Main([]string{"configure", "--env-file", bad, "--state-dir", dir}, nil, &out, &errb); code != exitUsage ||
		!strings.Contains(errb.String(), "line 1") {
		t.Fatalf("bad env file: exit %d %s", code, errb.String())
	}
}

// version names version, commit and build date; help names every command.
func TestVersionAndHelp(t *testing.T) {
	Build = BuildInfo{Version: "v9.9.9", Commit: "c0ffee", Date: "2026-12-03T00:00:00Z"}
	defer func() { Build = BuildInfo{} }()
	var out, errb bytes.Buffer
	if code := Main([]string{"version"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, w := range []string{"mamori-agent v9.9.9", "commit c0ffee", "built 2026-12-03T00:00:00Z"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("version %q lacks %q", out.String(), w)
		}
	}
	out.Reset()
	Main([]string{"--help"}, nil, &out, &errb)
	for _, cmd := range []string{"enroll", "configure", "run", "install", "uninstall", "start", "stop", "status", "version", "help"} {
		if !strings.Contains(out.String(), "\n  "+cmd+" ") {
			t.Errorf("--help does not name %s:\n%s", cmd, out.String())
		}
	}
}

// The MSI runs configure -installer on every install: without SERVER (an
// upgrade, a repair) it keeps the config and succeeds.
func TestConfigureInstallerWithoutServerKeepsConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	if code := Main([]string{"configure", "-installer", "-server", "", "-token", "", "-ca-hash", "", "-department", "", "-proxy", "", "--state-dir", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, uplink.FileConfig)); err == nil {
		t.Fatal("config written without SERVER")
	}
	hash := "sha256:" + strings.Repeat("cd", 32)
	if code := Main([]string{"configure", "-installer", "-server", "https://a:1", "-token", "tok", "-ca-hash", hash, "-department", "", "-proxy", "", "--state-dir", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if code := Main([]string{"configure", "-installer", "-server", "", "-token", "", "-ca-hash", "", "-department", "", "-proxy", "", "--state-dir", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if c, err := uplink.LoadConfig(dir); err != nil || c.Token != "tok" || c.Servers[0] != "https://a:1" {
		t.Fatalf("config after upgrade: %+v %v", c, err)
	}
}

// status on an unenrolled PC says how to enroll, or that the service will
// from its installed config, and names the log file.
func TestStatusUnenrolledSaysWhatToDo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	if code := Main([]string{"status", "--state-dir", dir}, nil, &out, &errb); code != exitError {
		t.Fatalf("exit %d, want %d", code, exitError)
	}
	if !strings.Contains(errb.String(), "mamori-agent enroll --server") || !strings.Contains(out.String(), `"log_file"`) || !strings.Contains(out.String(), `"system_log"`) {
		t.Fatalf("stderr %q stdout %s", errb.String(), out.String())
	}
	hash := "sha256:" + strings.Repeat("ab", 32)
	if err := uplink.SaveConfig(dir, uplink.Config{Servers: []string{"https://mamori.example:8443"}, Token: "t", CAHash: hash}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	Main([]string{"status", "--state-dir", dir}, nil, &out, &errb)
	if !strings.Contains(errb.String(), "enrolls itself") || !strings.Contains(errb.String(), "https://mamori.example:8443") ||
		!strings.Contains(errb.String(), LogPath(dir)) {
		t.Fatalf("stderr %q", errb.String())
	}
}

// run logs to the rotated file in the state dir too.
func TestRunLogsToFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	// A state dir that does not exist is a mistyped path or an agent never
	// installed: said at once, and nothing is made there.
	if code := Main([]string{"run", "--state-dir", dir}, nil, &out, &errb); code != exitError ||
		!strings.Contains(errb.String(), "does not exist") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("run made the state dir it was given: %v", err)
	}
	// Not enrolled and no config: run fails at once, and says so in the file.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := Main([]string{"run", "--state-dir", dir}, nil, &out, &errb); code != exitError {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(LogPath(dir))
	if err != nil || !strings.Contains(string(b), "no installed config") {
		t.Fatalf("log file: %v %q", err, b)
	}
	if fi, err := os.Stat(LogPath(dir)); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0) {
		t.Fatalf("log file mode %v %v", fi.Mode(), err)
	}
}

// install never registers the program where it happens to sit (Downloads,
// a share): it copies it into the program folder, or uses it in place when
// it is already in a trusted folder.
func TestPlaceExecutable(t *testing.T) {
	downloads := t.TempDir()
	exe := filepath.Join(downloads, "mamori-agent")
	os.WriteFile(exe, []byte("program v1"), 0o644)
	progDir := filepath.Join(t.TempDir(), "Mamori")
	got, copied, err := placeExecutable(exe, progDir, []string{progDir})
	if err != nil || !copied || got != filepath.Join(progDir, "mamori-agent") {
		t.Fatalf("placeExecutable = %q %v %v", got, copied, err)
	}
	if b, _ := os.ReadFile(got); string(b) != "program v1" {
		t.Fatalf("copy holds %q", b)
	}
	if fi, _ := os.Stat(got); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o755 {
		t.Fatalf("copy mode %v", fi.Mode())
	}
	os.WriteFile(exe, []byte("program v2"), 0o644) // a newer download replaces the copy
	if got, _, err = placeExecutable(exe, progDir, []string{progDir}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); string(b) != "program v2" {
		t.Fatalf("copy holds %q after an update", b)
	}
	if again, copied, err := placeExecutable(got, progDir, []string{progDir}); err != nil || copied || again != got {
		t.Fatalf("from the program folder: %q %v %v", again, copied, err)
	}
	entries, _ := os.ReadDir(progDir)
	if len(entries) != 1 {
		t.Fatalf("program folder holds %d entries (temp files left?)", len(entries))
	}
}

// enroll against a server that is down says what to check and leaves no
// state dir behind.
func TestEnrollServerDownSaysWhatToCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	code := Main([]string{"enroll", "--server", "https://" + addr, "--token", "s3cret-t0ken",
		"--ca-hash", "sha256:" + strings.Repeat("ab", 32), "--state-dir", dir}, nil, &out, &errb)
	if code != exitError {
		t.Fatalf("exit %d, want %d: %s", code, exitError, errb.String())
	}
	for _, w := range []string{addr, "is mamori-server running there", "host and port", "firewall or proxy"} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("message lacks %q: %s", w, errb.String())
		}
	}
	if strings.Contains(errb.String(), "s3cret-t0ken") {
		t.Errorf("message shows the token: %s", errb.String())
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed enroll left %s: %v", dir, err)
	}
}
