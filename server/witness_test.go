package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	_ "modernc.org/sqlite"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/witness"
)

// The witness against a real server: ten rounds of growth are accepted;
// then the server's store is restored from an older copy and started with
// --accept-event-loss (as an insider would) and new events appended: the
// next round reports the fork (exit 1), and keeps reporting it. verify
// --checkpoint takes the witness's state directory.
func TestWitnessDetectsFork(t *testing.T) {
	dir, wdir := t.TempDir(), filepath.Join(t.TempDir(), "witness")
	cfg := app.Config{DataDir: dir, Listen: "127.0.0.1:0", Hostnames: []string{"127.0.0.1"}, Log: zerolog.Nop()}
	srv, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Close() }()
	pub, ca := filepath.Join(dir, app.FileLogKeyPub), filepath.Join(dir, app.FileCA)
	do := func(method, path, body string) (int, []byte) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(srv.CAPEM())
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		req, _ := http.NewRequest(method, srv.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	call := func(method, path, body string) []byte {
		st, b := do(method, path, body)
		if st != 200 && st != 201 {
			t.Fatalf("%s %s: %d %s", method, path, st, b)
		}
		return b
	}
	grow := func(n int) { // n admin actions (events), then a signed checkpoint (an export signs one)
		for range n {
			call("POST", "/api/v1/tokens", `{"ttl":"1h","uses":1}`)
		}
		call("GET", "/api/v1/export?format=bundle&agent=server&type=none.none", "")
	}
	// The auditor's alarm receiver, on loopback.
	alarms := make(chan witness.Alarm, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a witness.Alarm
		if err := json.NewDecoder(r.Body).Decode(&a); err == nil {
			alarms <- a
		}
	}))
	defer hook.Close()
	// The auditor's read-only API token.
	var tok struct{ Token string }
	if err := json.Unmarshal(call("POST", "/api/v1/tokens", `{"kind":"api","name":"witness","role":"auditor","ttl":"720h"}`), &tok); err != nil || tok.Token == "" {
		t.Fatalf("auditor token: %v", err)
	}
	round := func() (int, string) {
		var out, errb bytes.Buffer
		code := run([]string{"witness", "--server", srv.URL(), "--token", tok.Token, "--pubkey", pub, "--ca", ca,
			"--state", wdir, "--once", "--webhook", hook.URL}, &out, &errb)
		return code, out.String() + errb.String()
	}
	kept := func() int64 {
		k, err := witness.Pick(wdir, 1<<62, nil)
		if err != nil {
			t.Fatal(err)
		}
		return k.Size
	}
	backup := filepath.Join(t.TempDir(), "events-old.db")
	// A bundle made before the witness first ran.
	early := filepath.Join(t.TempDir(), "early.jsonl")
	os.WriteFile(early, call("GET", "/api/v1/export?format=bundle&agent=server", ""), 0o600)
	var last int64
	for i := range 10 {
		grow(3)
		if code, out := round(); code != 0 {
			t.Fatalf("round %d: exit %d\n%s", i, code, out)
		}
		if k := kept(); k <= last {
			t.Fatalf("round %d: kept size %d after %d", i, k, last)
		} else {
			last = k
		}
		if i == 4 { // an older copy of the store, taken live
			db, err := sql.Open("sqlite", filepath.Join(dir, app.FileEvents))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`VACUUM INTO '` + backup + `'`); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}
	}
	// A bundle proving growth from the witness's latest checkpoint verifies
	// against the witness's state directory.
	bundle := filepath.Join(t.TempDir(), "b.jsonl")
	os.WriteFile(bundle, call("GET", "/api/v1/export?format=bundle&agent=server&since="+strconv.FormatInt(last, 10), ""), 0o600)
	var out bytes.Buffer
	if code := run([]string{"verify", bundle, "--pubkey", pub, "--checkpoint", wdir}, &out, &out); code != 0 ||
		!strings.Contains(out.String(), "witness:    checked against the witness's checkpoint of size "+strconv.FormatInt(last, 10)) {
		t.Fatalf("verify against the witness: exit %d\n%s", code, out.String())
	}
	// The same checkpoint as a file that went through Notepad or a mail
	// (CRLF, a blank line more) is the same checkpoint, not tampering; one
	// that is not a checkpoint of this log cannot be used (exit 2).
	k, _ := witness.Pick(wdir, last, nil)
	crlf := filepath.Join(t.TempDir(), "kept.note")
	os.WriteFile(crlf, append(bytes.ReplaceAll(k.Note, []byte("\n"), []byte("\r\n")), "\r\n"...), 0o600)
	out.Reset()
	if code := run([]string{"verify", bundle, "--pubkey", pub, "--checkpoint", crlf}, &out, &out); code != 0 {
		t.Fatalf("verify against the kept checkpoint with CRLF: exit %d\n%s", code, out.String())
	}
	os.WriteFile(crlf, []byte("not a checkpoint\n"), 0o600)
	out.Reset()
	if code := run([]string{"verify", bundle, "--pubkey", pub, "--checkpoint", crlf}, &out, &out); code != 2 ||
		strings.Contains(out.String(), "NOT intact") {
		t.Fatalf("verify against a file that is not a checkpoint: exit %d\n%s", code, out.String())
	}

	// A bundle older than every checkpoint the witness kept cannot be held
	// to them: it is checked by itself and verify says the witness could not
	// be used (exit 2), not that the bundle was tampered with.
	out.Reset()
	if code := run([]string{"verify", early, "--pubkey", pub, "--checkpoint", wdir}, &out, &out); code != 2 ||
		!strings.Contains(out.String(), "result:     OK") ||
		!strings.Contains(out.String(), "is older than the first checkpoint the witness kept") ||
		!strings.Contains(out.String(), "export it again") {
		t.Fatalf("verify of a bundle older than the witness: exit %d\n%s", code, out.String())
	}
	// Held to one kept checkpoint file (no time with it), a smaller log is
	// named for what it may be: rolled back, unless the bundle is older.
	out.Reset()
	if code := run([]string{"verify", early, "--pubkey", pub, "--checkpoint", filepath.Join(wdir, witness.FileLatest), "--lang", "ja"}, &out, &out); code != 1 ||
		!strings.Contains(out.String(), "ログが巻き戻されています") || !strings.Contains(out.String(), "rolled back after you kept it") {
		t.Fatalf("verify of a smaller bundle against one kept checkpoint: exit %d\n%s", code, out.String())
	}
	// Had the server made that bundle after showing the witness a larger
	// log, its smaller log is a rollback: exit 1.
	ents, _ := os.ReadDir(filepath.Join(wdir, witness.DirKept))
	for _, e := range ents {
		then := time.Now().Add(-24 * time.Hour)
		os.Chtimes(filepath.Join(wdir, witness.DirKept, e.Name()), then, then)
	}
	out.Reset()
	if code := run([]string{"verify", early, "--pubkey", pub, "--checkpoint", wdir, "--lang", "ja"}, &out, &out); code != 1 ||
		!strings.Contains(out.String(), "ログが巻き戻されています") {
		t.Fatalf("verify of a smaller bundle made after the witness saw more: exit %d\n%s", code, out.String())
	}

	// A bundle exported without since= carries no proof from the witness's
	// checkpoint: verify cannot hold it to the witness and says how to
	// export (exit 2), not that it was tampered with.
	plain := filepath.Join(t.TempDir(), "plain.jsonl")
	grow(1)
	os.WriteFile(plain, call("GET", "/api/v1/export?format=bundle&agent=server", ""), 0o600)
	out.Reset()
	if code := run([]string{"verify", plain, "--pubkey", pub, "--checkpoint", wdir}, &out, &out); code != 2 ||
		!strings.Contains(out.String(), "since="+strconv.FormatInt(last, 10)) || strings.Contains(out.String(), "NOT intact") {
		t.Fatalf("verify of a bundle without since= against the witness: exit %d\n%s", code, out.String())
	}
	// A bundle that proves growth from a checkpoint the witness kept before
	// its latest is held to that one.
	if code, out := round(); code != 0 {
		t.Fatalf("round: exit %d\n%s", code, out)
	}
	if k := kept(); k <= last {
		t.Fatalf("kept %d after %d", k, last)
	}
	grow(2)
	os.WriteFile(bundle, call("GET", "/api/v1/export?format=bundle&agent=server&since="+strconv.FormatInt(last, 10), ""), 0o600)
	out.Reset()
	if code := run([]string{"verify", bundle, "--pubkey", pub, "--checkpoint", wdir}, &out, &out); code != 0 ||
		!strings.Contains(out.String(), "witness:    checked against the witness's checkpoint of size "+strconv.FormatInt(last, 10)) {
		t.Fatalf("verify against an earlier kept checkpoint: exit %d\n%s", code, out.String())
	}

	// The fork: the store restored from the older copy, the loss accepted,
	// new events appended past the witness's size.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	var covered int64
	db, _ := sql.Open("sqlite", filepath.Join(dir, app.FileEvents))
	if err := db.QueryRow(`SELECT max(size) FROM checkpoints`).Scan(&covered); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, f := range []string{"-wal", "-shm"} {
		os.Remove(filepath.Join(dir, app.FileEvents+f))
	}
	b, _ := os.ReadFile(backup)
	if err := os.WriteFile(filepath.Join(dir, app.FileEvents), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.AcceptEventLoss = covered
	if srv, err = app.Start(context.Background(), cfg); err != nil {
		t.Fatalf("forked server: %v", err)
	}
	// The rolled-back log is smaller than the witness's latest checkpoint
	// and larger than one it kept before: a bundle made now is a rollback,
	// whether or not it proves growth from that earlier one (which it can).
	rolled := filepath.Join(t.TempDir(), "rolled.jsonl")
	os.WriteFile(rolled, call("GET", "/api/v1/export?format=bundle&agent=server", ""), 0o600)
	n, _ := bundleSizes(rolled)
	earlier, err := witness.Pick(wdir, n, nil)
	if err != nil || earlier.Size > n || n >= kept() {
		t.Fatalf("rolled-back log of %d entries, kept %d and %d: %v", n, earlier.Size, kept(), err)
	}
	for _, since := range []string{"", "&since=" + strconv.FormatInt(earlier.Size, 10)} {
		os.WriteFile(rolled, call("GET", "/api/v1/export?format=bundle&agent=server"+since, ""), 0o600)
		out.Reset()
		if code := run([]string{"verify", rolled, "--pubkey", pub, "--checkpoint", wdir, "--lang", "ja"}, &out, &out); code != 1 ||
			!strings.Contains(out.String(), "ログが巻き戻されています") {
			t.Fatalf("verify of a rolled-back log (%q) against the witness: exit %d\n%s", since, code, out.String())
		}
	}
	grow(40)
	code, msg := round()
	if code != 1 || !strings.Contains(msg, "does not extend the checkpoint kept") {
		t.Fatalf("fork round: exit %d\n%s", code, msg)
	}
	if _, err := os.Stat(filepath.Join(wdir, witness.FileAlarm)); err != nil {
		t.Fatalf("no alarm file: %v", err)
	}
	select {
	case a := <-alarms:
		if !strings.Contains(a.Reason, "forked") || a.Kept == "" || a.Seen == "" {
			t.Fatalf("webhook alarm %+v", a)
		}
	default:
		t.Fatal("no webhook alarm")
	}
	if code, msg := round(); code != 1 || !strings.Contains(msg, "alarm raised") {
		t.Fatalf("round after the fork: exit %d\n%s", code, msg)
	}
	// A bundle from the forked server cannot show it extends the witness's
	// checkpoint: without since= it is not checked against it (exit 2, as
	// for any bundle), with since= the proof fails (exit 1).
	os.WriteFile(bundle, call("GET", "/api/v1/export?format=bundle&agent=server", ""), 0o600)
	out.Reset()
	if code := run([]string{"verify", bundle, "--pubkey", pub, "--checkpoint", wdir}, &out, &out); code != 2 {
		t.Fatalf("verify of the forked server's bundle against the witness, no since=: exit %d\n%s", code, out.String())
	}
	// Asked for the proof verify names, the forked server has no checkpoint
	// of the witness's size to prove from, and says what that means. Its
	// checkpointer may by chance have signed its own log at that very size
	// (it signs whatever size a tick finds): then the proof is from that
	// checkpoint, and verify names the fork.
	switch st, body := do("GET", "/api/v1/export?format=bundle&agent=server&since="+strconv.FormatInt(kept(), 10), ""); {
	case st == http.StatusOK:
		os.WriteFile(bundle, body, 0o600)
		out.Reset()
		if code := run([]string{"verify", bundle, "--pubkey", pub, "--checkpoint", wdir}, &out, &out); code != 1 {
			t.Fatalf("verify of the forked server's bundle from its own checkpoint of the witness's size: exit %d\n%s", code, out.String())
		}
	case st != http.StatusBadRequest || !strings.Contains(string(body), "rolled back or replaced"):
		t.Fatalf("export from the forked server with since=: %d %s", st, body)
	}
	// Cannot check: exit 2.
	srv.Close()
	os.Remove(filepath.Join(wdir, witness.FileAlarm))
	if code, msg := round(); code != 2 {
		t.Fatalf("server down: exit %d\n%s", code, msg)
	}
}

// Bad input to the witness is exit 2 with a message, and leaves no state.
func TestWitnessBadInput(t *testing.T) {
	dir := t.TempDir()
	notKey := filepath.Join(dir, "not-a-key")
	os.WriteFile(notKey, []byte("hello\n"), 0o600)
	const state = "STATE" // a new directory per case
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"no --state":       {[]string{"--server", "https://127.0.0.1:1", "--token", "t", "--pubkey", notKey}, "usage"},
		"short interval":   {[]string{"--server", "https://127.0.0.1:1", "--token", "t", "--pubkey", notKey, "--state", state, "--interval", "10ms"}, "at least 1s"},
		"missing pubkey":   {[]string{"--server", "https://127.0.0.1:1", "--token", "t", "--pubkey", filepath.Join(dir, "none"), "--state", state}, "none"},
		"not a log key":    {[]string{"--server", "https://127.0.0.1:1", "--token", "t", "--pubkey", notKey, "--state", state}, "not a log public key"},
		"unknown flag":     {[]string{"--server", "https://127.0.0.1:1", "--frobnicate"}, "frobnicate"},
		"server not https": {[]string{"--server", "ftp://127.0.0.1:1", "--token", "t", "--pubkey", pubFile(t, dir), "--state", state, "--once"}, "want https://host:port"},
		"stray argument":   {[]string{"--server", "https://127.0.0.1:1", "--token", "t", "--pubkey", notKey, "--state", state, "extra"}, "usage"},
	} {
		t.Run(name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state")
			args := []string{"witness"}
			for _, a := range c.args {
				args = append(args, strings.Replace(a, "STATE", state, 1))
			}
			var out, errb bytes.Buffer
			if code := run(args, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("exit %d, want 2 and %q\n%s%s", code, c.want, out.String(), errb.String())
			}
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Fatalf("state directory made on bad input: %v", err)
			}
		})
	}
}

// pubFile writes a log public key into dir and returns its path.
func pubFile(t *testing.T, dir string) string {
	t.Helper()
	_, vkey, err := note.GenerateKey(rand.Reader, "mamori/test")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "log-key.pub")
	if err := os.WriteFile(p, []byte(vkey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A server whose CA this machine does not trust is answered with what to
// do (--ca with the site's ca.pem), not x509's words alone.
func TestUnknownAuthorityHint(t *testing.T) {
	raw := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	err, ok := hostnameHint("https://mamori.example.jp:8443", fmt.Errorf("Get: %w", raw))
	if !ok || !strings.Contains(err.Error(), "--ca") || !strings.Contains(err.Error(), "ca.pem") || !errors.Is(err, raw) {
		t.Errorf("hint: %v %v", ok, err)
	}
}
