package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/shared/evidence"
)

// The verify command on a real export: exit 0 for the intact bundle, 1 with
// the place named for a changed or cut one or another key, 2 for bad usage.
func TestVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	call := func(method, path, body string) []byte {
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
	} {
		f := filepath.Join(dir, "not-a-bundle.jsonl")
		os.WriteFile(f, []byte(c.body), 0o600)
		errb.Reset()
		if code := run([]string{"verify", f, "--pubkey", pub}, &out, &errb); code != 2 ||
			!strings.Contains(errb.String(), "not an evidence bundle") || !strings.Contains(errb.String(), c.want) {
			t.Fatalf("%s: exit %d: %s", name, code, errb.String())
		}
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
