package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
)

// TestRegisterAndPolicyCLI drives register import/export and policy apply
// against a real server, reading the token and CA from its data dir.
func TestRegisterAndPolicyCLI(t *testing.T) {
	dir := t.TempDir()
	srv, err := app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1"}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append(args, "--server", srv.URL(), "--data-dir", dir), &out, &errb)
		return code, out.String(), errb.String()
	}
	work := t.TempDir()
	csvPath := filepath.Join(work, "register.csv")
	os.WriteFile(csvPath, []byte("\ufeff管理番号,個人情報の名称,利用目的,媒体,保管場所,管理責任者,部署,保管期間,廃棄方法\r\n"+
		"PI-0001,顧客名簿,商品発送,電子,PC-01:D:\\顧客,山田,営業部,5y,データ消去\r\n"), 0o644)
	if code, out, errs := cli("register", "import", csvPath); code != 0 || !strings.Contains(out, "1 changed") {
		t.Fatalf("import: %d %q %q", code, out, errs)
	}
	sjisPath := filepath.Join(work, "export.csv")
	if code, _, errs := cli("register", "export", "--encoding", "sjis", "--lang", "en", "--out", sjisPath); code != 0 {
		t.Fatalf("export: %d %q", code, errs)
	}
	b, _ := os.ReadFile(sjisPath)
	if !bytes.HasPrefix(b, []byte("id,status,name")) || bytes.Contains(b, []byte("顧客")) {
		t.Fatalf("export is not English-headed Shift_JIS: %q", b)
	}
	// Re-importing the Shift_JIS export changes nothing.
	if code, out, errs := cli("register", "import", sjisPath); code != 0 || !strings.Contains(out, "0 changed") {
		t.Fatalf("re-import: %d %q %q", code, out, errs)
	}
	badPath := filepath.Join(work, "bad.csv")
	os.WriteFile(badPath, []byte("id,name,purpose,medium,locations,owner,department,retention\r\n"+
		"PI-0002,社員名簿,人事,electronic,PC-01:D:\\人事,鈴木,総務部,forever\r\n"), 0o644)
	if code, _, errs := cli("register", "import", badPath); code != 1 || !strings.Contains(errs, "row 2: retention") {
		t.Fatalf("bad import: %d %q", code, errs)
	}

	polPath := filepath.Join(work, "default.yaml")
	os.WriteFile(polPath, []byte("apiVersion: mamori/v1\nkind: Policy\nname: default\ncontrols:\n  screenlock: {mode: audit, max_idle: 5m}\n"), 0o644)
	if code, out, errs := cli("policy", "apply", polPath); code != 0 || !strings.Contains(out, "policy default applied") {
		t.Fatalf("policy apply: %d %q %q", code, out, errs)
	}
	os.WriteFile(polPath, []byte("apiVersion: mamori/v1\nkind: Policy\nname: default\ncontrols:\n  screenlock: {mode: sometimes}\n"), 0o644)
	if code, _, errs := cli("policy", "apply", polPath); code != 1 || !strings.Contains(errs, "line 5: controls.screenlock.mode") {
		t.Fatalf("bad policy: %d %q", code, errs)
	}
	if code, _, _ := cli("register", "frobnicate"); code != 2 {
		t.Fatalf("unknown subcommand: exit %d", code)
	}
}

// Without --data-dir the admin commands read ./mamori-data, or the
// installed service's data dir where there is none, and say which.
func TestAdminCLIDefaultDataDir(t *testing.T) {
	t.Chdir(t.TempDir())
	var out, errb bytes.Buffer
	if code := run([]string{"register", "export", "--server", "https://127.0.0.1:1"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), filepath.Join(defaultServiceDataDir(), "admin-token")) {
		t.Fatalf("no ./mamori-data: %d %q", code, errb.String())
	}
	os.Mkdir("mamori-data", 0o700)
	errb.Reset()
	if code := run([]string{"register", "export", "--server", "https://127.0.0.1:1"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), filepath.Join("mamori-data", "admin-token")) {
		t.Fatalf("./mamori-data: %d %q", code, errb.String())
	}
}
