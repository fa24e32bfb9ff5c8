package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/transform"
)

// TestRegisterAndPolicyCLI drives register import/export and policy apply
// against a real server, reading the token and CA from its data dir.
func TestRegisterAndPolicyCLI(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
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
	if !bytes.HasPrefix(b, []byte(`"id","status","name"`)) || bytes.Contains(b, []byte("顧客")) {
		t.Fatalf("export is not English-headed Shift_JIS: %q", b)
	}
	// Re-importing the Shift_JIS export changes nothing.
	if code, out, errs := cli("register", "import", sjisPath); code != 0 || !strings.Contains(out, "0 changed") {
		t.Fatalf("re-import: %d %q %q", code, out, errs)
	}
	badPath := filepath.Join(work, "bad.csv")
	os.WriteFile(badPath, []byte("id,name,purpose,medium,locations,owner,department,retention\r\n"+
		"PI-0002,社員名簿,人事,electronic,PC-01:D:\\人事,鈴木,総務部,forever\r\n"), 0o644)
	// A 400 (bad rows) is bad input: exit 2.
	if code, _, errs := cli("register", "import", badPath); code != 2 || !strings.Contains(errs, "row 2: retention") {
		t.Fatalf("bad import: %d %q", code, errs)
	}
	// A file with Japanese headers is answered in Japanese, each column by
	// its header, with the exact detail.
	os.WriteFile(badPath, []byte("管理番号,個人情報の名称,利用目的,媒体,保管場所,管理責任者,部署,保管期間\r\n"+
		"PI-0002,社員名簿,人事,紙,キャビネットA,鈴木,総務部,ずっと\r\n"), 0o644)
	if code, _, errs := cli("register", "import", badPath); code != 2 ||
		!strings.Contains(errs, "何も変更していません") ||
		!strings.Contains(errs, "2 行目「保管場所」: 「端末名:フォルダー」の形で入力してください。書庫やキャビネットなど紙の保管場所は「紙の保管場所」に入力してください。（\"キャビネットA\" is not HOST:FOLDER") ||
		!strings.Contains(errs, "2 行目「保管期間」: 5年（5y）") {
		t.Fatalf("bad import, Japanese headers: %d %q", code, errs)
	}

	// A character Shift_JIS lacks: the export says which and where, and
	// writes nothing.
	os.WriteFile(badPath, []byte("管理番号,個人情報の名称,利用目的,媒体,管理責任者,部署,保管期間,廃棄方法\r\n"+
		"PI-0003,𠮷野様 顧客,発送,紙,鈴木,総務部,5年,溶解\r\n"), 0o644)
	if code, _, errs := cli("register", "import", badPath); code != 0 {
		t.Fatalf("import of 𠮷: %d %q", code, errs)
	}
	outPath := filepath.Join(work, "out.csv")
	if code, _, errs := cli("register", "export", "--encoding", "sjis", "--out", outPath); code != 2 ||
		!strings.Contains(errs, "何も書き出していません") || !strings.Contains(errs, "「個人情報の名称」: Shift_JIS（CP932）にない文字です") ||
		!strings.Contains(errs, `"𠮷" (PI-0003)`) {
		t.Fatalf("sjis export of 𠮷: %d %q", code, errs)
	}
	if _, err := os.Stat(outPath); err == nil {
		t.Error("a refused export wrote its file")
	}

	polPath := filepath.Join(work, "default.yaml")
	os.WriteFile(polPath, []byte("apiVersion: mamori/v1\nkind: Policy\nname: default\ncontrols:\n  screenlock: {mode: audit, max_idle: 5m}\n"), 0o644)
	if code, out, errs := cli("policy", "apply", polPath); code != 0 || !strings.Contains(out, "policy default applied") {
		t.Fatalf("policy apply: %d %q %q", code, out, errs)
	}
	// The same file again writes nothing and says so.
	if code, out, errs := cli("policy", "apply", polPath); code != 0 || !strings.Contains(out, "policy default unchanged") {
		t.Fatalf("second policy apply: %d %q %q", code, out, errs)
	}
	// A policy that turns every control off is applied, with a warning:
	// as default it would stop every PC checking and recording anything.
	offPath := filepath.Join(work, "off.yaml")
	os.WriteFile(offPath, []byte("apiVersion: mamori/v1\nkind: Policy\nname: quiet\n"), 0o644)
	if code, out, errs := cli("policy", "apply", offPath); code != 0 || !strings.Contains(out, "policy quiet applied") ||
		!strings.Contains(errs, "warning: policy quiet turns every control off") {
		t.Fatalf("policy apply of an all-off policy: %d %q %q", code, out, errs)
	}
	os.WriteFile(polPath, []byte("apiVersion: mamori/v1\nkind: Policy\nname: default\ncontrols:\n  screenlock: {mode: sometimes}\n"), 0o644)
	if code, _, errs := cli("policy", "apply", polPath); code != 2 || !strings.Contains(errs, "line 5: controls.screenlock.mode") {
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

// TestRegisterCLIOtherKinds: --kind media|approvals|disposals imports a
// CP932 file, exports it again, and names the row and field of a bad file.
func TestRegisterCLIOtherKinds(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append(args, "--server", srv.URL(), "--data-dir", dir), &out, &errb)
		return code, out.String(), errb.String()
	}
	work := t.TempDir()
	write := func(name, text string, sjis bool) string {
		b := []byte(text)
		if sjis {
			var err error
			if b, _, err = transform.Bytes(japanese.ShiftJIS.NewEncoder(), b); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pi := write("pi.csv", "\ufeff管理番号,個人情報の名称,利用目的,媒体,管理責任者,部署,保管期間,廃棄方法\r\n"+
		"PI-0001,顧客名簿,商品発送,紙,山田,営業部,5y,シュレッダー\r\n", false)
	if code, _, errs := cli("register", "import", pi); code != 0 {
		t.Fatalf("PI import (default kind): %d %q", code, errs)
	}
	for _, tc := range []struct{ kind, good, bad, wantErr, wantJA string }{
		{"media", "管理番号,登録日,製品名,シリアル番号,管理責任者,暗号化\r\nMD-0001,2026-01-10,USBメモリ,AA00123456,山田,有\r\n",
			"id,registered,product,serial,owner\r\nMD-0002,2026-01-10,USB,x,山田\r\n", "row 2: serial", "USBメモリ"},
		{"approvals", "管理番号,状態,申請者,媒体シリアル番号,端末,持出し目的,持出し開始,持出し終了,承認者,承認日時\r\n" +
			"AP-0001,返却済,山田,AA00123456,PC-01,展示会,2026-10-01T09:00:00+09:00,2026-10-01T18:00:00+09:00,部長,2026-09-30T17:00:00+09:00\r\n",
			"id,requester,serial,host,purpose,from,to\r\nAP-0002,山田,AA00123456,PC-01,展示会,2026-10-02T09:00:00Z,2026-10-01T09:00:00Z\r\n", "row 2: to", "返却済"},
		{"disposals", "管理番号,廃棄日,廃棄対象,台帳番号,廃棄方法,廃棄責任者\r\nDS-0001,2026-10-01,顧客名簿(紙),PI-0001,溶解,鈴木\r\n",
			"id,date,item,register_id,method,responsible\r\nDS-0002,2026-10-01,名簿,PI-9999,溶解,鈴木\r\n", "row 2: register_id", "溶解"},
	} {
		good := write(tc.kind+".csv", tc.good, true)
		if code, out, errs := cli("register", "import", good, "--kind", tc.kind); code != 0 || !strings.Contains(out, "1 changed") {
			t.Fatalf("%s import: %d %q %q", tc.kind, code, out, errs)
		}
		exp := filepath.Join(work, tc.kind+"-export.csv")
		if code, _, errs := cli("register", "export", "--kind", tc.kind, "--out", exp); code != 0 {
			t.Fatalf("%s export: %d %q", tc.kind, code, errs)
		}
		b, _ := os.ReadFile(exp)
		if !bytes.HasPrefix(b, []byte("\ufeff\"管理番号\",\"状態\"")) || !bytes.Contains(b, []byte(tc.wantJA)) {
			t.Fatalf("%s export: %q", tc.kind, b)
		}
		// The export re-imports as is: nothing changes.
		if code, out, errs := cli("register", "import", exp, "--kind", tc.kind); code != 0 || !strings.Contains(out, "0 changed") {
			t.Fatalf("%s re-import: %d %q %q", tc.kind, code, out, errs)
		}
		bad := write(tc.kind+"-bad.csv", tc.bad, false)
		if code, _, errs := cli("register", "import", bad, "--kind", tc.kind); code != 2 || !strings.Contains(errs, tc.wantErr) || !strings.Contains(errs, "nothing was changed") {
			t.Fatalf("%s bad import: %d %q", tc.kind, code, errs)
		}
	}
	if code, _, _ := cli("register", "export", "--kind", "shoes"); code != 2 {
		t.Fatalf("unknown kind: exit %d", code)
	}
}

// policy apply against a server that is down says what to check.
func TestAdminCLIServerDown(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "admin-token"), []byte("tok\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(testCAPEM(t)), 0o600)
	pol := filepath.Join(dir, "p.yaml")
	os.WriteFile(pol, []byte("apiVersion: mamori/v1\nkind: Policy\nname: default\ncontrols: {}\n"), 0o600)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	var out, errb bytes.Buffer
	code := run([]string{"policy", "apply", pol, "--server", "https://" + addr, "--data-dir", dir}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "cannot reach the server at https://"+addr) ||
		!strings.Contains(errb.String(), "mamori-server serve runs") {
		t.Fatalf("exit %d: %q", code, errb.String())
	}
}

func testCAPEM(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// The admin commands given only --data-dir reach the server of that data
// dir where it listens (its lock file says), not localhost:8443.
func TestAdminCLIFindsTheServerOfItsDataDir(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	lock, err := lockDataDir(dir, u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	var out, errb bytes.Buffer
	if code := run([]string{"register", "export", "--data-dir", dir}, &out, &errb); code != 0 || !strings.Contains(out.String(), "管理番号") {
		t.Fatalf("export without --server: %d %q", code, errb.String())
	}
	// A second server on the data dir is refused naming the first, in one line.
	if _, err := lockDataDir(dir, ":9999"); err == nil || strings.Contains(err.Error(), "listen") {
		t.Errorf("second lock: %v", err)
	}
	for listen, want := range map[string]string{"127.0.0.1:38443": "https://127.0.0.1:38443", ":38443": "https://localhost:38443",
		"0.0.0.0:9443": "https://localhost:9443", "[::]:9443": "https://localhost:9443", "mamori.example.jp:8443": "https://mamori.example.jp:8443"} {
		d := t.TempDir()
		l, err := lockDataDir(d, listen)
		if err != nil {
			t.Fatal(err)
		}
		if got := serverOf(d); got != want {
			t.Errorf("listen %q: %q, want %q", listen, got, want)
		}
		l.Release()
	}
	if got := serverOf(t.TempDir()); got != "" {
		t.Errorf("no lock file: %q", got)
	}
}

// An empty file's import is answered in one language, not an English
// prefix before the server's Japanese.
func TestRegisterImportEmptyFileInJapanese(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	empty := filepath.Join(t.TempDir(), "empty.csv")
	os.WriteFile(empty, nil, 0o644)
	var out, errb bytes.Buffer
	code := run([]string{"register", "import", empty, "--server", srv.URL(), "--data-dir", dir}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "何も変更していません") || strings.Contains(errb.String(), "nothing was changed") {
		t.Errorf("empty file: %d %q", code, errb.String())
	}
}
