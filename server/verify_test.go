package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/shared/evidence"
)

// The verify command on a real export: exit 0 for the intact bundle, 1 with
// the place named for a changed or cut one or another key, 2 for bad usage.
func TestVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	call := adminCaller(t, srv)
	// The server's record of its start, then three admin actions: events of
	// the server stream.
	for i := 0; i < 3; i++ {
		call("POST", "/api/v1/tokens", `{"ttl":"1h","uses":1}`)
	}
	bundle := filepath.Join(dir, "bundle.jsonl")
	os.WriteFile(bundle, call("GET", "/api/v1/export?format=bundle&agent=server", ""), 0o600)
	pub := filepath.Join(dir, app.FileLogKeyPub)

	var out, errb bytes.Buffer
	if code := run([]string{"verify", bundle, "--pubkey", pub}, &out, &errb); code != 0 || !strings.Contains(out.String(), "result:     OK") {
		t.Fatalf("intact bundle: exit %d\n%s%s", code, out.String(), errb.String())
	}
	t.Log("\n" + out.String())
	if !strings.Contains(out.String(), "agent:      server seq 1..4") || !strings.Contains(out.String(), "query:      agent=server\n") ||
		!strings.Contains(out.String(), "lists 4 events and 0 links") {
		t.Fatalf("summary:\n%s", out.String())
	}

	b, _ := os.ReadFile(bundle)
	changed := filepath.Join(dir, "changed.jsonl")
	os.WriteFile(changed, bytes.Replace(b, []byte(`"uses":1`), []byte(`"uses":9`), 1), 0o600)
	out.Reset()
	if code := run([]string{"verify", "--pubkey", pub, changed}, &out, &errb); code != 1 || !strings.Contains(out.String(), "FAIL: line 3 (log index 1, agent server, seq 2): event content") {
		t.Fatalf("changed bundle: exit %d\n%s", code, out.String())
	}

	// The first or the last entry dropped: the signed manifest names it.
	ls := bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if len(ls) != 6 {
		t.Fatalf("bundle of %d lines, want header, 4 entries, manifest", len(ls))
	}
	for name, c := range map[string]struct {
		lines [][]byte
		want  string
	}{
		"first": {append([][]byte{ls[0]}, ls[2:]...), "FAIL: line 5: agent server: the manifest lists seq 1..4 (4 entries), the bundle holds seq 2..4 (3 entries): entries changed at its start"},
		"last":  {append(append([][]byte{}, ls[:4]...), ls[5]), "FAIL: line 5: agent server: the manifest lists seq 1..4 (4 entries), the bundle holds seq 1..3 (3 entries): entries changed at its end"},
		"all":   {[][]byte{ls[0], ls[5]}, "FAIL: line 2: the manifest lists 4 entries (4 events, 0 links), the bundle holds 0 (0 events, 0 links): every entry removed"},
	} {
		cut := filepath.Join(dir, "cut-"+name+".jsonl")
		os.WriteFile(cut, bytes.Join(c.lines, nil), 0o600)
		out.Reset()
		if code := run([]string{"verify", cut, "--pubkey", pub}, &out, &errb); code != 1 || !strings.Contains(out.String(), c.want) {
			t.Fatalf("%s entry dropped: exit %d\n%s", name, code, out.String())
		}
	}

	_, otherPub, _ := note.GenerateKey(rand.Reader, "mamori/other")
	other := filepath.Join(dir, "other.pub")
	os.WriteFile(other, []byte(otherPub), 0o644)
	out.Reset()
	if code := run([]string{"verify", bundle, "--pubkey", other}, &out, &errb); code != 1 || !strings.Contains(out.String(), "signature") {
		t.Fatalf("other key: exit %d\n%s", code, out.String())
	}
	if code := run([]string{"verify", bundle}, &out, &errb); code != 2 {
		t.Fatalf("no --pubkey: exit %d", code)
	}
	// Could not check: exit 2, not 1.
	for name, args := range map[string][]string{
		"missing bundle": {"verify", filepath.Join(dir, "missing.jsonl"), "--pubkey", pub},
		"missing key":    {"verify", bundle, "--pubkey", filepath.Join(dir, "missing.pub")},
		"not a key":      {"verify", bundle, "--pubkey", bundle},
		"bad --lang":     {"verify", bundle, "--pubkey", pub, "--lang", "fr"},
		"missing old":    {"verify", bundle, "--pubkey", pub, "--checkpoint", filepath.Join(dir, "missing.note")},
	} {
		if code := run(args, &out, &errb); code != 2 {
			t.Fatalf("%s: exit %d", name, code)
		}
	}
	// What curl saves when the export was refused, or a page saved in its
	// place, is not a bundle: nothing to check (exit 2, saying what it is),
	// not tampering (exit 1) in words about JSON fields.
	for name, c := range map[string]struct{ body, want string }{
		"server's refusal": {`{"error":"unauthorized: missing or invalid token"}` + "\n", "the server's error reply"},
		"web page":         {"<!doctype html>\n<html><title>ログイン</title></html>\n", "a web page"},
		"empty":            {"", "empty"},
		"CSV export":       {"\ufeffindex,received,agent,seq\r\n0,2026-12-07T12:00:00Z,server,1\r\n", "CSV"},
		"gzip'd bundle":    {"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xfe\n", "gzip archive"},
		"executable":       {"\x7fELF\x02\x01\x01\x00\x00\x00\n", "binary file"},
	} {
		f := filepath.Join(dir, "not-a-bundle.jsonl")
		os.WriteFile(f, []byte(c.body), 0o600)
		errb.Reset()
		if code := run([]string{"verify", f, "--pubkey", pub}, &out, &errb); code != 2 ||
			!strings.Contains(errb.String(), "not an evidence bundle") || !strings.Contains(errb.String(), c.want) {
			t.Fatalf("%s: exit %d: %s", name, code, errb.String())
		}
	}
	errb.Reset()
	if code := run([]string{"verify", pub, "--pubkey", pub, "--lang", "ja"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "証跡ではありません") {
		t.Errorf("the key given as the bundle, in Japanese: exit %d: %s", code, errb.String())
	}
	// Japanese, and the query as given (not percent-encoded).
	q := filepath.Join(dir, "q.jsonl")
	os.WriteFile(q, call("GET", "/api/v1/export?format=bundle&agent=server&object_prefix="+url.QueryEscape(`D:\顧客 2026`), ""), 0o600)
	out.Reset()
	if code := run([]string{"verify", q, "--pubkey", pub, "--lang", "ja"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "抽出条件:     agent=server object_prefix=\"D:\\\\顧客 2026\"\n") || !strings.Contains(out.String(), "結果:         OK") {
		t.Fatalf("ja: exit %d\n%s", code, out.String())
	}
	// Japanese labels for controls and types, from shared/labels, after the code.
	out.Reset()
	os.WriteFile(q, call("GET", "/api/v1/export?format=bundle&control=fileaccess&type=file.read", ""), 0o600)
	if code := run([]string{"verify", q, "--pubkey", pub, "--lang", "ja"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "抽出条件:     control=fileaccess（ファイルアクセス） type=file.read（ファイル閲覧）\n") {
		t.Fatalf("ja labels: exit %d\n%s", code, out.String())
	}
	out.Reset()
	os.WriteFile(q, call("GET", "/api/v1/export?format=bundle&object_prefix="+url.QueryEscape(`D:\顧客`), ""), 0o600)
	if code := run([]string{"verify", q, "--pubkey", pub}, &out, &errb); code != 0 || !strings.Contains(out.String(), "query:      object_prefix=D:\\顧客\n") {
		t.Fatalf("decoded query: exit %d\n%s", code, out.String())
	}
	out.Reset()
	// In Japanese the place and what was found are Japanese; the exact
	// detail stays as the evidence package words it.
	if code := run([]string{"verify", changed, "--pubkey", pub, "--lang", "ja"}, &out, &errb); code != 1 ||
		!strings.Contains(out.String(), "不正: 3 行目 (ログ位置 1、エージェント server、seq 2): イベントの内容がハッシュと一致しないか、形式が不正です (内容の改ざん)\n      詳細: event content: seq 2: hash does not match content\n") {
		t.Fatalf("ja, changed: exit %d\n%s", code, out.String())
	}
	out.Reset()
	cut := filepath.Join(dir, "cut-ja.jsonl")
	os.WriteFile(cut, bytes.Join([][]byte{ls[0], ls[1], ls[3], ls[4], ls[5]}, nil), 0o600)
	if code := run([]string{"verify", cut, "--pubkey", pub, "--lang", "ja"}, &out, &errb); code != 1 ||
		!strings.Contains(out.String(), "不正: 3 行目 (ログ位置 2、エージェント server、seq 3): seq が飛んでいます: イベントが証跡から抜けています") {
		t.Fatalf("ja, dropped: exit %d\n%s", code, out.String())
	}
}

// Every kind of problem the evidence package reports has its Japanese
// wording in verify.
func TestVerifyWordsEveryProblemInJapanese(t *testing.T) {
	for _, k := range evidence.ProblemKinds {
		if problemJA[k] == "" {
			t.Errorf("no Japanese for problem kind %q", k)
		}
	}
}

// What an external auditor's run found: verify says which key file it
// used and the key's full fingerprint (not that it came out of band,
// which it cannot know), names both keys when they differ, warns of a
// bundle whose query matched nothing, takes the checkpoint files the docs
// tell auditors to keep and says it held the bundle to one, gives the
// events' times, and tells "not a bundle" (exit 2) from tampering (exit 1).
func TestVerifyAuditorFindings(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	call := adminCaller(t, srv)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	verify := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := run(append([]string{"verify"}, args...), &out, &out)
		return code, out.String()
	}
	mustHave := func(what string, code, want int, out string, subs ...string) {
		t.Helper()
		if code != want {
			t.Errorf("%s: exit %d, want %d\n%s", what, code, want, out)
			return
		}
		for _, s := range subs {
			if !strings.Contains(out, s) {
				t.Errorf("%s: no %q in\n%s", what, s, out)
			}
		}
	}
	for i := 0; i < 2; i++ {
		call("POST", "/api/v1/tokens", `{"ttl":"1h","uses":1}`)
	}
	pub := filepath.Join(dir, app.FileLogKeyPub)
	kb, _ := os.ReadFile(pub)
	fp := evidence.KeyFingerprint(string(kb))
	earlier := write("earlier.jsonl", call("GET", "/api/v1/export?format=bundle&agent=server", ""))
	cpJSON := write("checkpoint.json", call("GET", "/api/v1/checkpoint", ""))
	var cpv struct {
		Size int64 `json:"size"`
	}
	if err := json.Unmarshal(mustRead(t, cpJSON), &cpv); err != nil || cpv.Size == 0 {
		t.Fatalf("checkpoint JSON: %v", err)
	}
	call("POST", "/api/v1/tokens", `{"ttl":"1h","uses":1}`)
	from := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	bundle := write("bundle.jsonl", call("GET", "/api/v1/export?format=bundle&agent=server&from="+from.Format(time.RFC3339)+
		"&since="+strconv.FormatInt(cpv.Size, 10), ""))

	// 1, 2, 6: the key file and its fingerprint; the events' times in JST
	// and UTC, the query's times in JST, the verifier's version.
	code, out := verify(bundle, "--pubkey", pub)
	mustHave("intact", code, 0, out, "key:        "+pub+": mamori/", "fingerprint "+fp, "verifier:   mamori-server ", "(commit ",
		" JST (", "Z .. ", "from="+from.Format(time.RFC3339)+" ("+from.In(jst).Format("2006-01-02 15:04:05")+" JST)", "result:     OK —")
	if strings.Contains(out, "out of band") || !regexp.MustCompile(`events:     \d{4}-\d\d-\d\d \d\d:\d\d:\d\d JST \.\. \d{4}-\d\d-\d\d \d\d:\d\d:\d\d JST \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \.\. \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)\n`).MatchString(out) {
		t.Errorf("key or events line:\n%s", out)
	}
	t.Log("\n" + out)
	code, out = verify(bundle, "--pubkey", pub, "--lang", "ja")
	mustHave("intact, ja", code, 0, out, "フィンガープリント "+fp, "検証ツール:", " JST (")
	if strings.Contains(out, "別経路") {
		t.Errorf("ja key line:\n%s", out)
	}
	// The wrong key: both keys named with their IDs.
	_, otherPub, _ := note.GenerateKey(rand.Reader, "mamori/other")
	other := write("other.pub", []byte(otherPub+"\n"))
	ov, _ := note.NewVerifier(otherPub)
	code, out = verify(bundle, "--pubkey", other)
	mustHave("other key", code, 1, out, evidence.KeyID(ov), strings.TrimSpace(strings.Join(strings.SplitN(string(kb), "+", 3)[:2], "+")))

	// 3: a query that matched no events is OK, but empty, with a warning.
	empty := write("empty.jsonl", call("GET", "/api/v1/export?format=bundle&agent=server&from=2099-01-01T00:00:00Z", ""))
	code, out = verify(empty, "--pubkey", pub)
	mustHave("empty", code, 0, out, "warning:    the export's query matched no events: check agent/control/time range", "result:     OK, but empty")
	code, out = verify(empty, "--pubkey", pub, "--lang", "ja")
	mustHave("empty, ja", code, 0, out, "警告:", "0 件", "結果:         OK (ただし空)")

	// 4, 5: the checkpoint files the docs tell auditors to keep.
	for name, f := range map[string]string{"note": "", "JSON": cpJSON, "earlier bundle": earlier} {
		if name == "note" {
			var v struct {
				Checkpoint string `json:"checkpoint"`
			}
			json.Unmarshal(mustRead(t, cpJSON), &v)
			f = write("checkpoint.note", []byte(v.Checkpoint))
		}
		if name == "earlier bundle" {
			n, _ := bundleSizes(earlier)
			b := write("later.jsonl", call("GET", "/api/v1/export?format=bundle&agent=server&since="+strconv.FormatInt(n, 10), ""))
			code, out = verify(b, "--pubkey", pub, "--checkpoint", f)
			mustHave(name, code, 0, out, "checkpoint: checked against your checkpoint of size "+strconv.FormatInt(n, 10)+" ("+f)
			continue
		}
		code, out = verify(bundle, "--pubkey", pub, "--checkpoint", f)
		mustHave(name, code, 0, out, "checkpoint: checked against your checkpoint of size "+strconv.FormatInt(cpv.Size, 10)+" ("+f)
	}
	notCP := write("not-a-checkpoint.txt", []byte("hello\n"))
	code, out = verify(bundle, "--pubkey", pub, "--checkpoint", notCP)
	mustHave("not a checkpoint", code, 2, out, notCP+" is not a checkpoint (a signed note, the JSON of GET /api/v1/checkpoint, or an earlier bundle)")
	if strings.Contains(out, "malformed note") || strings.Contains(out, "signed by the key") {
		t.Errorf("not a checkpoint:\n%s", out)
	}
	otherSigner, _, _ := note.GenerateKey(rand.Reader, "mamori/other")
	os_, _ := note.NewSigner(otherSigner)
	foreign, _ := note.Sign(&note.Note{Text: "mamori/other\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, os_)
	code, out = verify(bundle, "--pubkey", pub, "--checkpoint", write("foreign.note", foreign))
	mustHave("another key's checkpoint", code, 2, out, "not signed by the key", "mamori/other+")

	// 7: not a bundle is exit 2; what an editor does to a bundle is no
	// tampering.
	b := mustRead(t, bundle)
	for name, c := range map[string]struct {
		file string
		code int
		want []string
	}{
		"directory":       {dir, 2, []string{"not an evidence bundle", "directory"}},
		"foo":             {write("foo.json", []byte(`{"foo":1}`+"\n")), 2, []string{"not an evidence bundle", "not a bundle header"}},
		"checkpoint JSON": {cpJSON, 2, []string{"not an evidence bundle", "--checkpoint"}},
		"BOM":             {write("bom.jsonl", append([]byte("\xef\xbb\xbf"), b...)), 0, []string{"result:     OK"}},
		"trailing blanks": {write("blanks.jsonl", append(bytes.Clone(b), "\n\n \r\n"...)), 0, []string{"result:     OK"}},
	} {
		code, out = verify(c.file, "--pubkey", pub)
		mustHave(name, code, c.code, out, c.want...)
	}
	for name, c := range map[string]struct {
		file string
		want string
	}{
		"directory, ja": {dir, "証跡ファイルではありません"},
		"foo, ja":       {filepath.Join(dir, "foo.json"), "証跡ファイルではありません"},
	} {
		code, out = verify(c.file, "--pubkey", pub, "--lang", "ja")
		mustHave(name, code, 2, out, c.want)
	}
	code, out = verify(bundle, "--pubkey", pub, "--checkpoint", notCP, "--lang", "ja")
	mustHave("not a checkpoint, ja", code, 2, out, "チェックポイントではありません")

	// The nitpick: a bundle whose checkpoint was removed.
	ls := bytes.SplitN(b, []byte("\n"), 2)
	var h evidence.Header
	json.Unmarshal(ls[0], &h)
	h.Checkpoint = ""
	hb, _ := json.Marshal(h)
	code, out = verify(write("nocp.jsonl", append(append(hb, '\n'), ls[1]...)), "--pubkey", pub)
	mustHave("checkpoint removed", code, 1, out, "the bundle's signed checkpoint is missing or damaged")
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Built with plain go build in a git checkout, the version names the
// commit from the toolchain's VCS stamp, and says when the tree was
// modified.
func TestVersionFromBuildInfo(t *testing.T) {
	info := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-12-07T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	if got := versionFrom("", "", "", info); !strings.HasPrefix(got, "devel (commit 0123456789abcdef, modified, built 2026-12-07T10:00:00Z,") {
		t.Errorf("vcs stamp: %s", got)
	}
	if got := versionFrom("v1.2.0", "abc", "2026-12-01", info); !strings.HasPrefix(got, "v1.2.0 (commit abc, built 2026-12-01,") {
		t.Errorf("ldflags: %s", got)
	}
	if got := versionFrom("", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}}); !strings.HasPrefix(got, "v1.3.0 (commit unknown, built unknown,") {
		t.Errorf("go install: %s", got)
	}
}

// The private signing key given as --pubkey is named for what it is, not
// "malformed verifier id".
func TestVerifyRefusesThePrivateKey(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "log-key")
	if err := os.WriteFile(priv, []byte("PRIVATE+KEY+mamori/127.0.0.1+ca586d94+ATxyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "b.jsonl")
	os.WriteFile(b, []byte("{}\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"verify", b, "--pubkey", priv}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "PRIVATE signing key") {
		t.Errorf("private key as --pubkey: %d %q", code, errb.String())
	}
	// With --lang ja, what cannot be checked is said in Japanese too.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", b, "--pubkey", priv, "--lang", "ja"}, "秘密署名鍵"},
		{[]string{"verify", b, "--pubkey", filepath.Join(dir, "none.pub"), "--lang", "ja"}, "確認できません"},
		{[]string{"verify", b, "--pubkey", b, "--lang", "ja"}, "ログ公開鍵ではありません"},
	} {
		errb.Reset()
		if code := run(tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: %d %q, want %q", tc.args, code, errb.String(), tc.want)
		}
	}
}

// adminCaller sends admin API requests to srv with its admin token and
// fails the test on an answer other than 200 or 201.
func adminCaller(t *testing.T, srv *app.Server) func(method, path, body string) []byte {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return func(method, path, body string) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 && resp.StatusCode != 201 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return b
	}
}
