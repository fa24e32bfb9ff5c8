package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	_ "modernc.org/sqlite"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

type rig struct {
	path  string
	log   *eventlog.SQLite
	cp    *Checkpointer
	x     *Exporter
	vkey  string
	verif note.Verifier
	skey  string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "mamori/test")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{path: filepath.Join(t.TempDir(), "events.db"), vkey: vkey, skey: skey}
	r.verif, _ = note.NewVerifier(vkey)
	r.open(t)
	return r
}

func (r *rig) open(t *testing.T) {
	t.Helper()
	l, err := eventlog.OpenSQLite(context.Background(), r.path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(r.skey)
	r.log = l
	r.cp = &Checkpointer{Log: l, Signer: signer}
	r.x = &Exporter{Log: l, Checkpointer: r.cp, PublicKey: r.vkey}
	t.Cleanup(func() { l.Close() })
}

// fill appends n events per agent, interleaved, controls alternating.
func (r *rig) fill(t *testing.T, agents, n int) {
	t.Helper()
	prev := map[string]string{}
	seq := map[string]uint64{}
	for a := 0; a < agents; a++ {
		id := fmt.Sprintf("ag-%d", a)
		if h, err := r.log.Head(context.Background(), id); err == nil {
			prev[id], seq[id] = h.Hash, h.Seq
		}
	}
	for i := 0; i < n; i++ {
		for a := 0; a < agents; a++ {
			id := fmt.Sprintf("ag-%d", a)
			seq[id]++
			control := []string{"fileaccess", "media"}[i%2]
			e := event.Event{Agent: id, Seq: seq[id], Time: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(seq[id]) * time.Second),
				Control: control, Type: control + ".x", Severity: event.Info, User: "CORP\\佐藤", Object: fmt.Sprintf(`D:\顧客\%d.xlsx`, i)}
			if err := e.Seal(prev[id]); err != nil {
				t.Fatal(err)
			}
			prev[id] = e.Hash
			if _, err := r.log.Append(context.Background(), id, []event.Event{e}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func (r *rig) verifyBundle(t *testing.T, b []byte, old []byte) *evidence.Report {
	t.Helper()
	rep, err := evidence.Verify(bytes.NewReader(b), r.verif, evidence.VerifyOptions{Old: old})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestExportVerifies(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.fill(t, 3, 10)
	old, err := r.cp.SignNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.fill(t, 3, 10)

	var buf bytes.Buffer
	sum, err := r.x.Bundle(ctx, &buf, eventlog.Filter{}, old.Size, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep := r.verifyBundle(t, buf.Bytes(), []byte(old.Note))
	if !rep.OK() || sum.Events != 60 || rep.Events != 60 {
		t.Fatalf("sum %+v report %+v", sum, rep.Problems)
	}

	// One agent's file events: the media events between them are links.
	buf.Reset()
	sum, err = r.x.Bundle(ctx, &buf, eventlog.Filter{Agent: "ag-1", Control: "fileaccess"}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep = r.verifyBundle(t, buf.Bytes(), nil)
	if !rep.OK() || sum.Events != 10 || sum.Links != 9 || len(rep.Agents) != 1 {
		t.Fatalf("sum %+v report %+v %+v", sum, rep, rep.Problems)
	}
}

// tamper runs stmt, written against the events table, on the store at
// path, whether it holds rows or records (eventlog.TamperSQL).
func tamper(t *testing.T, path, stmt string, args ...any) {
	t.Helper()
	n, err := eventlog.TamperSQL(context.Background(), path, stmt, args...)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%s: %d rows", stmt, n)
	}
}

// TestTamperedRowIsCaught: a store of rows altered by hand; the audit
// names the event, and the next export does not verify either.
func TestTamperedRowIsCaught(t *testing.T) {
	for name, c := range map[string]struct{ stmt, want string }{
		"content": {`UPDATE events SET object = 'D:\顧客\other.xlsx' WHERE idx = 7`, "log index 7 (agent ag-1, seq 3): content changed"},
		"deleted": {`DELETE FROM events WHERE idx = 4`, "log index 4 missing"},
		"hash":    {`UPDATE events SET hash = zeroblob(32) WHERE idx = 2`, "log index 2"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Cleanup(eventlog.SetWriteRecords(false))
			r := checkCaught(t, func(t *testing.T, path string) { tamper(t, path, c.stmt) }, c.want)
			if name != "content" {
				return
			}
			var buf bytes.Buffer
			if _, err := r.x.Bundle(context.Background(), &buf, eventlog.Filter{}, 0, nil); err != nil {
				t.Fatal(err)
			}
			rep := r.verifyBundle(t, buf.Bytes(), nil)
			if rep.OK() || !strings.Contains(rep.Problems[0].String(), "agent ag-1, seq 3") {
				t.Fatalf("problems %v", rep.Problems)
			}
		})
	}
}

// checkCaught fills a store, signs it, alters it with tamper while it is
// closed, and checks that the audit then fails naming want.
func checkCaught(t *testing.T, tamper func(t *testing.T, path string), want string) *rig {
	t.Helper()
	r := newRig(t)
	ctx := context.Background()
	r.fill(t, 3, 5)
	if _, err := r.cp.SignNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := VerifyLog(ctx, r.log, r.verif, zerolog.Nop()); err != nil {
		t.Fatalf("intact log: %v", err)
	}
	r.log.Close()
	tamper(t, r.path)
	r.open(t)
	err := VerifyLog(ctx, r.log, r.verif, zerolog.Nop())
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	return r
}

func TestCheckpointCadence(t *testing.T) {
	r := newRig(t)
	r.cp.MaxEvents, r.cp.Interval = 10, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.cp.Run(ctx); close(done) }()
	r.fill(t, 1, 25)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, err := r.log.LatestCheckpoint(context.Background())
		if err == nil && cp.Size >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint after 20 events: %v %+v", err, cp)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	cp, _ := r.log.LatestCheckpoint(context.Background())
	if cp.Size != 25 {
		t.Fatalf("final checkpoint size %d, want 25", cp.Size)
	}
}

func TestCSV(t *testing.T) {
	r := newRig(t)
	r.fill(t, 1, 3)
	r.x.HostNames = func(context.Context) (map[string]string, error) { return map[string]string{"ag-0": "PC-SOUMU-01"}, nil }
	var buf bytes.Buffer
	n, err := r.x.CSV(context.Background(), &buf, eventlog.Filter{}, "ja", time.FixedZone("JST", 9*3600))
	if err != nil || n != 3 {
		t.Fatal(n, err)
	}
	s := buf.String()
	if !strings.HasPrefix(s, "\ufeff\"ログ番号\",\"日時 (JST)\",") || !strings.Contains(s, `"2026-11-01 18:00:01.000"`) || !strings.Contains(s, `D:\顧客\0.xlsx`) {
		t.Fatalf("csv:\n%s", s)
	}
	// The agent's seq and when the server received it, for an auditor
	// matching the CSV with the bundle.
	if !strings.Contains(s, `"ハッシュ","連番","受信日時 (JST)","エージェントID"`) || !regexp.MustCompile(`,"1","\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}","ag-0"\r\n`).MatchString(s) {
		t.Fatalf("csv without seq or received:\n%s", s)
	}
	// PC names and Japanese labels, the agent id kept in the last column.
	if !strings.Contains(s, `,"PC-SOUMU-01","ファイルアクセス",`) || !strings.Contains(s, `,"外部媒体",`) || !strings.Contains(s, ",\"ag-0\"\r\n") {
		t.Fatalf("csv without PC names or labels:\n%s", s)
	}
	if _, err := r.x.CSV(context.Background(), &buf, eventlog.Filter{}, "fr", time.UTC); err == nil {
		t.Fatal("unknown lang accepted")
	}
}

// The 属性 cell reads in Excel: a rename's old path, a size and a time as
// labelled lines in the file's language and zone, not JSON.
func TestCSVAttributesReadAsLines(t *testing.T) {
	r := newRig(t)
	e := event.Event{Agent: "ag-0", Seq: 1, Time: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), Control: "fileaccess",
		Type: "file.renamed", Severity: event.Info, Object: `D:\顧客\新.xlsx`,
		Attrs: event.Attrs{"old_path": `D:\顧客\旧.xlsx`, "size": 1234, "from": "2026-11-01T00:00:00Z", "bulk": true}}
	if err := e.Seal(""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.log.Append(context.Background(), "ag-0", []event.Event{e}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := r.x.CSV(context.Background(), &buf, eventlog.Filter{}, "ja", time.FixedZone("JST", 9*3600)); err != nil {
		t.Fatal(err)
	}
	want := `"` + strings.Join([]string{"bulk: 有", "開始: 2026-11-01 09:00:00.000", "変更前のパス: D:\\顧客\\旧.xlsx", "サイズ: 1234"}, "\r\n") + `"`
	if s := buf.String(); !strings.Contains(s, want) || strings.Contains(s, "{") {
		t.Errorf("attributes cell, want %s in:\n%s", want, s)
	}
}

// Retention clears payloads; the log, the chains, old checkpoints and new
// exports all still verify.
func TestRetentionKeepsProofs(t *testing.T) {
	r, ret, _ := retentionRig(t) // 20 events, the first 10 due
	ctx := context.Background()
	old, err := r.cp.SignNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ret.RunOnce(ctx); err != nil || n != 10 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	if n, _ := ret.RunOnce(ctx); n != 0 {
		t.Fatalf("pruned again: %d", n)
	}
	p, _ := r.log.Query(ctx, eventlog.Filter{Type: evidence.RetentionType})
	if len(p.Events) != 1 || p.Events[0].Attrs["events"] == nil {
		t.Fatalf("retention not recorded: %+v", p.Events)
	}
	if err := VerifyLog(ctx, r.log, r.verif, zerolog.Nop()); err != nil {
		t.Fatalf("log after retention: %v", err)
	}
	r.fill(t, 2, 2)
	var buf bytes.Buffer
	sum, err := r.x.Bundle(ctx, &buf, eventlog.Filter{}, old.Size, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep := r.verifyBundle(t, buf.Bytes(), []byte(old.Note))
	// 10 pruned links, 14 events and the retention record.
	if !rep.OK() || sum.Links != 10 || sum.Events != 15 || rep.Agents["ag-0"].Entries != 12 {
		t.Fatalf("sum %+v report %+v %v", sum, rep, rep.Problems)
	}
	if !bytes.Contains(buf.Bytes(), []byte(`"pruned":true`)) {
		t.Fatal("bundle does not mark pruned entries")
	}
	p, _ = r.log.Query(ctx, eventlog.Filter{Agent: "ag-0", Limit: 1})
	if !p.Events[0].Pruned || p.Events[0].Object != "" || p.Events[0].Hash == "" {
		t.Fatalf("pruned event reads back as %+v", p.Events[0])
	}
	if _, err := (&Retainer{Log: r.log, Keep: 365 * 24 * time.Hour}).RunOnce(ctx); err == nil {
		t.Fatal("one-year retention accepted")
	}
}

// Hole 1 in bundles: a row cleared by hand under a running server is
// exported as a pruned link, and verify names it.
func TestBundleHandPrunedRefused(t *testing.T) {
	ctx := context.Background()
	clear := `UPDATE events SET control = NULL, type = NULL, severity = NULL, user = NULL, process = NULL,
		object = NULL, register_id = NULL, attrs = NULL WHERE idx = 13`
	for name, retain := range map[string]bool{"no retention record": false, "newer than the cutoff": true} {
		t.Run(name, func(t *testing.T) {
			r, ret, _ := retentionRig(t)
			if retain {
				if _, err := ret.RunOnce(ctx); err != nil {
					t.Fatal(err)
				}
			}
			tamper(t, r.path, clear) // the server (store) is running
			var buf bytes.Buffer
			if _, err := r.x.Bundle(ctx, &buf, eventlog.Filter{Agent: "ag-1"}, 0, nil); err != nil {
				t.Fatal(err)
			}
			rep := r.verifyBundle(t, buf.Bytes(), nil)
			if rep.OK() || !strings.Contains(rep.Problems[0].String(), "agent ag-1, seq 7") || !strings.Contains(rep.Problems[0].Msg, "cleared by hand") {
				t.Fatalf("problems %v", rep.Problems)
			}
			// Taking the "pruned" mark off to pass it as a plain link
			// breaks the signed manifest.
			b := bytes.Replace(buf.Bytes(), []byte(`,"pruned":true`), nil, 1)
			if rep := r.verifyBundle(t, b, nil); rep.OK() {
				t.Fatal("bundle with the pruned mark removed verifies")
			}
		})
	}
}

// A checkpoint kept outside the store (etcd's copy) catches what the
// store's own checkpoints cannot: a store that lost its newest events
// together with the checkpoints over them, or another store in its place.
func TestVerifyLogAgainstExternal(t *testing.T) {
	ctx := context.Background()
	a := newRig(t)
	a.fill(t, 3, 5)
	ext, err := a.cp.SignNow(ctx)
	if err != nil || ext.Size != 15 {
		t.Fatal(ext.Size, err)
	}
	sameKey := func() *rig {
		r := &rig{path: filepath.Join(t.TempDir(), "events.db"), vkey: a.vkey, skey: a.skey, verif: a.verif}
		r.open(t)
		return r
	}

	// The same store, grown since: it extends the external checkpoint.
	a.fill(t, 3, 2)
	if err := VerifyLogAgainst(ctx, a.log, a.verif, []byte(ext.Note), zerolog.Nop()); err != nil {
		t.Fatalf("grown store: %v", err)
	}

	// A smaller store that agrees with itself (its own checkpoint at 9).
	small := sameKey()
	small.fill(t, 3, 3)
	if _, err := small.cp.SignNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := VerifyLog(ctx, small.log, small.verif, zerolog.Nop()); err != nil {
		t.Fatalf("the store alone should look intact: %v", err)
	}
	err = VerifyLogAgainst(ctx, small.log, small.verif, []byte(ext.Note), zerolog.Nop())
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "the event store has 9 events, the latest signed checkpoint in etcd covers 15 (root "+ext.Root.String()+")") {
		t.Fatalf("smaller store: %v", err)
	}

	// Another history of the same length and more, signed by the same key.
	other := sameKey()
	other.fill(t, 4, 5)
	if _, err := other.cp.SignNow(ctx); err != nil {
		t.Fatal(err)
	}
	err = VerifyLogAgainst(ctx, other.log, other.verif, []byte(ext.Note), zerolog.Nop())
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "tree at size 15 has root ") ||
		!strings.Contains(err.Error(), "the latest signed checkpoint in etcd says "+ext.Root.String()) {
		t.Fatalf("other history: %v", err)
	}

	// A changed note is refused, and so is one signed by another key (the
	// log key was replaced, say with the store deleted too).
	forged := strings.Replace(ext.Note, "\n15\n", "\n3\n", 1)
	if err := VerifyLogAgainst(ctx, small.log, small.verif, []byte(forged), zerolog.Nop()); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("forged etcd checkpoint: %v", err)
	}
	foreign := newRig(t)
	foreign.fill(t, 1, 20)
	fcp, err := foreign.cp.SignNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyLogAgainst(ctx, small.log, small.verif, []byte(fcp.Note), zerolog.Nop()); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "restore the log-key file") {
		t.Fatalf("another key's checkpoint: %v", err)
	}
}

// Verification split into segments checked in parallel gives the same
// verdicts, and names the same (earliest) problem, as one sequential pass:
// anchors inside and at the end of segments, a row deleted at a segment
// boundary, two rows changed in different segments, a chain link across a
// boundary.
func TestVerifyLogSegments(t *testing.T) {
	ctx := context.Background()
	defer func(s int64) { segmentSize = s }(segmentSize)
	sizes := []int64{1, 2, 4, 8, 16, 1 << 20}
	build := func(t *testing.T) (*rig, []byte) {
		r := newRig(t)
		r.fill(t, 3, 17) // 51 events
		ext, err := r.cp.SignNow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r.fill(t, 3, 20) // 111 events; the store's own checkpoint at 111
		if _, err := r.cp.SignNow(ctx); err != nil {
			t.Fatal(err)
		}
		return r, []byte(ext.Note)
	}
	r, ext := build(t)
	for _, s := range sizes {
		segmentSize = s
		if err := VerifyLogAgainst(ctx, r.log, r.verif, ext, zerolog.Nop()); err != nil {
			t.Fatalf("segments of %d: intact log refused: %v", s, err)
		}
	}
	for name, c := range map[string]struct {
		stmts []string
		want  string
	}{
		"deleted at a boundary": {[]string{`DELETE FROM events WHERE idx = 32`}, "log index 32 missing"},
		"row deleted mid-log":   {[]string{`DELETE FROM events WHERE idx = 77`}, "log index 77 missing"},
		"two rows changed": {[]string{`UPDATE events SET object = 'x' WHERE idx = 90`, `UPDATE events SET object = 'y' WHERE idx = 33`},
			"log index 33 (agent ag-0, seq 12): content changed"},
		"content and hash rewritten": {[]string{`UPDATE events SET prev = (SELECT prev FROM events WHERE idx = 5) WHERE idx = 64`},
			"log index 64"},
		// idx 64 re-linked to another prev with its hash and Merkle leaf
		// made consistent: only the chain (across a boundary for every
		// segment size up to 64) shows it.
		"chain across a boundary": {nil, "log index 64 (agent ag-1, seq 22): prev does not match the hash of seq 21"},
	} {
		t.Run(name, func(t *testing.T) {
			r, ext := build(t)
			var relinked eventlog.Stored
			if c.stmts == nil {
				p, err := r.log.Query(ctx, eventlog.Filter{Limit: 1, Cursor: eventlog.CursorAfter(63)})
				if err != nil || len(p.Events) != 1 || p.Events[0].Index != 64 {
					t.Fatalf("read idx 64: %v %+v", err, p.Events)
				}
				relinked = p.Events[0]
				relinked.Prev = strings.Repeat("ab", 32)
				if err := relinked.Seal(relinked.Prev); err != nil {
					t.Fatal(err)
				}
			}
			r.log.Close()
			for _, st := range c.stmts {
				tamper(t, r.path, st)
			}
			if c.stmts == nil {
				prev, _ := hex.DecodeString(relinked.Prev)
				h, _ := hex.DecodeString(relinked.Hash)
				leaf, _ := evidence.LeafHash(relinked.Hash)
				tamper(t, r.path, `UPDATE events SET prev = ?, hash = ?, merkle = ? || substr(merkle, 33) WHERE idx = 64`,
					prev, h, leaf[:])
			}
			r.open(t)
			for _, s := range sizes {
				segmentSize = s
				err := VerifyLogAgainst(ctx, r.log, r.verif, ext, zerolog.Nop())
				if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("segments of %d: got %v, want %q", s, err, c.want)
				}
			}
		})
	}
}

// tamperRecord rewrites the payload of the record at log index lo of the
// store at path with edit, as an insider with the database file could.
func tamperRecord(t *testing.T, path string, lo int64, edit func([]byte) []byte) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var p []byte
	if err := db.QueryRow(`SELECT payload FROM records WHERE lo = ?`, lo).Scan(&p); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE records SET payload = ? WHERE lo = ?`, edit(p), lo); err != nil {
		t.Fatal(err)
	}
}

// TestTamperedRecordIsCaught is TestTamperedRowIsCaught on a store of
// records (one event each here, as fill appends them one by one), altered
// in its records' bytes: the audit names the event whose record was
// altered, deleted or destroyed.
func TestTamperedRecordIsCaught(t *testing.T) {
	for name, c := range map[string]struct {
		tamper func(t *testing.T, path string)
		want   string
	}{
		"content": {func(t *testing.T, path string) {
			tamperRecord(t, path, 7, func(p []byte) []byte { return bytes.Replace(p, []byte(`\2.xlsx`), []byte(`\9.xlsx`), 1) })
		}, "log index 7 (agent ag-1, seq 3): content changed"},
		"deleted": {func(t *testing.T, path string) {
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if res, err := db.Exec(`DELETE FROM records WHERE lo = 4`); err != nil {
				t.Fatal(err)
			} else if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("%d records deleted", n)
			}
		}, "log index 4 missing"},
		"hash": {func(t *testing.T, path string) {
			tamperRecord(t, path, 2, func(p []byte) []byte { return append(p[:len(p)-32], make([]byte, 32)...) })
		}, "log index 2"},
		"destroyed": {func(t *testing.T, path string) {
			tamperRecord(t, path, 5, func(p []byte) []byte { return p[:len(p)/2] })
		}, "log index 5"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Cleanup(eventlog.SetWriteRecords(true))
			checkCaught(t, c.tamper, c.want)
		})
	}
}

// A PC's export (agent=ID, no other filter) holds what the server found
// about that PC too: its outages, gaps and alerts live in the server
// stream, and an auditor reading one PC's evidence must see them. Other
// PCs' findings and the server's unrelated events stay out (as links).
func TestAgentExportHoldsServerFindings(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.fill(t, 2, 3)
	at := time.Date(2026, 11, 1, 9, 0, 30, 0, time.UTC)
	for _, e := range []event.Event{
		{Control: "server", Type: "agent.outage", Object: "ag-1", Attrs: event.Attrs{"agent": "ag-1"}},
		{Control: "server", Type: "login", Object: "user/admin"},
		{Control: "agent", Type: eventlog.GapType, Attrs: event.Attrs{"agent": "ag-1", "from_seq": 2, "to_seq": 3}},
		{Control: "server", Type: "agent.outage", Object: "ag-0", Attrs: event.Attrs{"agent": "ag-0"}},
		{Control: "server", Type: "agent.department", Object: "agent/ag-1"},
	} {
		e.Time, e.Severity = at, event.Warning
		if _, err := r.log.AppendServer(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	r.fill(t, 2, 1)
	var buf bytes.Buffer
	sum, err := r.x.Bundle(ctx, &buf, eventlog.Filter{Agent: "ag-1"}, 0, map[string]string{"agent": "ag-1"})
	if err != nil {
		t.Fatal(err)
	}
	rep := r.verifyBundle(t, buf.Bytes(), nil)
	if !rep.OK() || sum.Events != 4+3 || rep.Agents[event.ServerStream].Last == 0 {
		t.Fatalf("sum %+v report %+v %+v", sum, rep.Agents, rep.Problems)
	}
	if strings.Contains(buf.String(), `"object":"ag-0"`) || strings.Contains(buf.String(), `"user/admin"`) {
		t.Fatal("another PC's finding or an unrelated server event in the PC's export")
	}
	buf.Reset()
	n, err := r.x.CSV(ctx, &buf, eventlog.Filter{Agent: "ag-1"}, "en", time.UTC)
	if err != nil || n != 7 || !strings.Contains(buf.String(), "agent/ag-1") || strings.Contains(buf.String(), "user/admin") {
		t.Fatalf("csv %d %v:\n%s", n, err, buf.String())
	}
	// A narrower filter (a control) is that filter only.
	buf.Reset()
	if sum, err = r.x.Bundle(ctx, &buf, eventlog.Filter{Agent: "ag-1", Control: "fileaccess"}, 0, nil); err != nil || sum.Events != 3 {
		t.Fatalf("control filter: %+v %v", sum, err)
	}
}
