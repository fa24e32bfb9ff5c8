package app_test

import (
	"bytes"
	"context"
	gocsv "encoding/csv"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/evidence"
)

func adminDownload(t *testing.T, srv *app.Server, path string, q url.Values) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL()+path+"?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	resp, err := httpsClient(srv.CAPEM(), nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func verifyBundle(t *testing.T, dir string, b []byte, old []byte) *evidence.Report {
	t.Helper()
	v, err := note.NewVerifier(strings.TrimSpace(string(readFile(t, filepath.Join(dir, app.FileLogKeyPub)))))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := evidence.Verify(bytes.NewReader(b), v, evidence.VerifyOptions{Old: old})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// The evidence path end to end: ingest over mTLS, a signed checkpoint, a
// bundle that verifies offline, a CSV for Excel; then a row edited in the
// SQLite file: the next export fails to verify and a restart is refused.
func TestEvidenceExportAndTamper(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir)
	a := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-a")
	b := enroll(t, srv.URL(), srv.EnrollToken(), srv.CAFingerprint(), srv.CAPEM(), "pc-b")
	for i := 0; i < 3; i++ {
		for _, c := range []*agentClient{a, b} {
			if _, err := c.send(c.events(50)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var cp struct {
		Size       int64  `json:"size"`
		Checkpoint string `json:"checkpoint"`
	}
	// Checkpoints are signed on a cadence; a busy machine may not have
	// signed the last batches yet.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st := adminGet(t, srv.URL(), srv.AdminToken(), srv.CAPEM(), "/api/v1/checkpoint", nil, &cp)
		if st == 200 && cp.Size >= 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint: %d %+v", st, cp)
		}
	}
	st, bundle := adminDownload(t, srv, "/api/v1/export", url.Values{"format": {"bundle"}, "agent": {a.id}})
	if st != 200 {
		t.Fatalf("export: %d %s", st, bundle)
	}
	rep := verifyBundle(t, dir, bundle, []byte(cp.Checkpoint))
	// The PC's 150 events and what the server recorded about it: its enrollment.
	if !rep.OK() || rep.Events != 151 || len(rep.Agents) != 2 || rep.Agents[a.id].Entries != 150 {
		t.Fatalf("report %+v %v", rep, rep.Problems)
	}
	st, csv := adminDownload(t, srv, "/api/v1/export", url.Values{"format": {"csv"}, "lang": {"ja"}, "agent": {b.id}})
	// 150 records, the PC's enrollment and the header; an attributes cell
	// holds line breaks.
	recs, rerr := gocsv.NewReader(bytes.NewReader(bytes.TrimPrefix(csv, []byte("\ufeff")))).ReadAll()
	if st != 200 || !bytes.HasPrefix(csv, []byte("\ufeff\"ログ番号\",\"日時 (JST)\"")) || rerr != nil || len(recs) != 152 {
		t.Fatalf("csv: %d %d records %v %.200s", st, len(recs), rerr, csv)
	}
	if st, body := adminDownload(t, srv, "/api/v1/export", url.Values{"format": {"pdf"}}); st != 400 {
		t.Fatalf("bad format: %d %s", st, body)
	}

	// Someone edits a stored event in the SQLite file.
	n, err := eventlog.TamperSQL(context.Background(), filepath.Join(dir, app.FileEvents),
		`UPDATE events SET object = 'D:\改ざん' WHERE agent = ? AND seq = 7`, a.id)
	if err != nil || n != 1 {
		t.Fatalf("tamper: %v %d", err, n)
	}
	st, bundle = adminDownload(t, srv, "/api/v1/export", url.Values{"format": {"bundle"}, "agent": {a.id}})
	if st != 200 {
		t.Fatalf("export: %d", st)
	}
	rep = verifyBundle(t, dir, bundle, nil)
	if rep.OK() || !strings.Contains(rep.Problems[0].String(), "agent "+a.id+", seq 7") {
		t.Fatalf("tampered export verified or unnamed: %v", rep.Problems)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1", "localhost"}, Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "seq 7") {
		t.Fatalf("restart over a tampered store: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, app.FileEvents)); err != nil {
		t.Fatal(err)
	}
}
