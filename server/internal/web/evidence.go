package web

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

// IntegrityChecker tells the 証跡 page whether the evidence log is intact.
// The server's implementation reports the start-up verification, the
// latest signed checkpoint, its consistency with the one checked before,
// and a recomputation of the stored log; richer checks (a background
// scrubber, witnesses) plug in by returning more Checks.
type IntegrityChecker interface {
	// Integrity reports; recheck asks for the slow checks to run again now
	// rather than on their cadence.
	Integrity(ctx context.Context, recheck bool) IntegrityReport
}

// Integrity states.
const (
	IntegrityIntact   = "intact"   // every check passed
	IntegrityTampered = "tampered" // a check found the log changed
	IntegrityUnknown  = "unknown"  // not checked (yet), or a check could not run
	// IntegrityLossAccepted is the page's own state, never a checker's:
	// the checks pass, but the log records that an admin accepted the loss
	// of events (lossAcceptedType), so what remains is not the whole record.
	IntegrityLossAccepted = "loss_accepted"
)

// lossAcceptedType is the server event of an admin accepting, at start,
// a store behind the last checkpoint (app.TypeEventLossAccepted; attrs
// lost_events, checkpoint_events, store_events, checkpoint_root).
const lossAcceptedType = "server.event_loss_accepted"

// maxLossPages bounds the walk for accepted losses (each an admin's start
// with --accept-event-loss, so rare).
const maxLossPages = 10

// IntegrityReport is the result of the checks, newest first.
type IntegrityReport struct {
	State    string
	Checked  time.Time
	TreeSize int64
	Checks   []IntegrityCheck
}

// IntegrityCheck is one check: Name is a code the page labels
// (startup, checkpoint, consistency, recompute, or the checker's own with
// NameJA/NameEN), State as the report's, Detail what was found (the
// checker's words, shown as they are).
type IntegrityCheck struct {
	Name, NameJA, NameEN string
	State                string
	Detail, DetailJA     string
	At                   time.Time
}

// findingsJA says in Japanese what a check's (English) detail found, for
// the details the server's checks give; the detail itself is shown too.
var findingsJA = []struct{ en, ja string }{
	{"content changed after it was stored", "保存後に内容が書き換えられたイベントがあります。"},
	{"the row was deleted", "削除されたイベントがあります。"},
	{"prev does not match", "端末の記録のつながり（ハッシュチェーン）が切れています。"},
	{"stored Merkle leaf does not match", "イベントと署名済みログのハッシュが一致しません。"},
	{"events were deleted or the store was replaced", "イベントが削除されたか、イベントストアが置き換えられています。"},
	{"lost its newest events or was replaced", "最新のイベントが失われたか、イベントストアが置き換えられています。"},
	{"stored events were rewritten", "保存されたイベントが書き換えられています。"},
	{"does not verify with", "チェックポイントの署名がログ公開鍵で検証できません。"},
	{"differs from its signed note", "チェックポイントが署名内容と一致しません。"},
	{"rolled back", "ログが以前の状態に巻き戻されています。"},
	{"forked", "同じ件数で内容の異なるチェックポイントがあります（ログの分岐）。"},
	{"does not extend", "最新のチェックポイントが前回のものを引き継いでいません。"},
	{"accepted the loss", "起動時に管理者がイベントの欠落を承認しました（ログに記録済み）。"},
	{"verified every stored event", "起動時にすべてのイベントを検証し、問題はありませんでした。"},
	{"recomputed", "保存されたすべてのイベントのハッシュ・チェーン・木を再計算し、一致しました。"},
	{"extends size", "前回確認したチェックポイントを正しく引き継いでいます。"},
	{"first checkpoint seen", "最初に確認したチェックポイントです。"},
	{"no signed checkpoint yet", "まだ署名済みチェックポイントがありません。"},
	{"size ", "署名・ルートハッシュともイベントストアと一致しています。"},
}

// FindingJA is the Japanese of a check's detail: DetailJA when the checker
// gave one, else from findingsJA, else the detail.
func (c IntegrityCheck) FindingJA() string {
	if c.DetailJA != "" {
		return c.DetailJA
	}
	for _, f := range findingsJA {
		if strings.Contains(c.Detail, f.en) {
			return f.ja
		}
	}
	return c.Detail
}

// evidenceText is the 証跡 page's wording of how the auditor gets the
// log key and the verifier: the key comes out of band, never from the
// server being audited; the page's copy and its fingerprint are to compare.
var evidenceText = map[string]map[string]string{
	"ja": {
		"key_hint": "監査人は、このページから保存した鍵ではなく、管理者から別経路（紙、手渡しの USB メモリ、電話での読み上げなど）で受け取った log-key.pub を検証に使ってください。" +
			"ここに表示する鍵とフィンガープリントは、受け取ったものと照合するためのものです。",
		"fingerprint": "フィンガープリント（SHA-256）",
		"fp_hint": "受け取った鍵について mamori-server verify が表示する fingerprint（サーバーでは sha256sum DATA/log-key.pub）と、全桁を比べてください。" +
			"鍵名の後の 8 桁の ID（32 ビット）だけでは、偽造された鍵を見分けられません。",
		"verifier_hint": "検証ツールのダウンロードは便宜のためのものです（監査対象のサーバーから配布されます）。" +
			"リリースで公開されたチェックサム（sha256sum）と照合するか、タグ付きのソースからビルド（go build ./server）したものを使ってください。",
		"step2": "管理者から別経路で受け取った log-key.pub を用意し、そのフィンガープリントがこのページの表示と一致することを確かめます（このページから保存した鍵は使わないでください）。",
	},
	"en": {
		"key_hint": "Auditors: verify with the log-key.pub the admin handed you out of band (on paper, a USB stick handed over in person, read out by phone), not with a copy saved from this page. " +
			"The key and the fingerprint shown here are only to compare with what you were given.",
		"fingerprint": "Fingerprint (SHA-256)",
		"fp_hint": "Compare every digit with the fingerprint mamori-server verify prints for the key you were given (on the server: sha256sum DATA/log-key.pub). " +
			"The 8-digit key ID after the key's name (32 bits) alone does not tell a forged key apart.",
		"verifier_hint": "The verifier download is for convenience (it comes from the server being audited): " +
			"check it against the release's published checksum (sha256sum), or build it from the tagged source (go build ./server).",
		"step2": "Take the log-key.pub the admin handed you out of band, and check that its fingerprint matches the one on this page (do not use a key saved from this page).",
	},
}

type evidenceData struct {
	T           map[string]string // evidenceText in the page's language
	PublicKey   string
	Fingerprint string // evidence.KeyFingerprint of PublicKey
	Checkpoint  *api.CheckpointView
	Report      IntegrityReport
	Losses      []api.Stored // accepted losses of events, ever, oldest first
	Verifiers   map[string]bool
	Command     string
	CommandWin  string
}

func (u *UI) handleEvidence(w http.ResponseWriter, r *http.Request) {
	d := evidenceData{PublicKey: u.cfg.PublicKey, Report: IntegrityReport{State: IntegrityUnknown},
		Command:    "./mamori-server verify mamori-evidence-20261201-090000.jsonl --pubkey log-key.pub",
		CommandWin: `mamori-server.exe verify mamori-evidence-20261201-090000.jsonl --pubkey log-key.pub`,
		Verifiers:  map[string]bool{}}
	if u.cfg.Evidence != nil {
		cp, err := u.cfg.Evidence.Checkpoint(r.Context())
		if err != nil {
			u.log.Warn().Err(err).Msg("web: no checkpoint to show")
		} else if cp.Size > 0 {
			d.Checkpoint = &cp
			if d.PublicKey == "" {
				d.PublicKey = cp.PublicKey
			}
		}
	}
	if u.cfg.Integrity != nil {
		d.Report = u.cfg.Integrity.Integrity(r.Context(), r.URL.Query().Get("recheck") == "1")
	}
	losses, err := u.acceptedLosses(r.Context())
	if err != nil {
		// Not knowing whether events were lost is not "intact".
		u.log.Warn().Err(err).Msg("web: reading accepted event losses")
		if d.Report.State == IntegrityIntact {
			d.Report.State = IntegrityUnknown
		}
	}
	d.Losses = losses
	if len(losses) > 0 {
		if d.Report.State == IntegrityIntact {
			d.Report.State = IntegrityLossAccepted
		}
		checks := slices.Clone(d.Report.Checks)
		for i, c := range checks {
			if c.State == IntegrityIntact && strings.Contains(c.Detail, "accepted the loss") {
				checks[i].State = IntegrityLossAccepted
			}
		}
		d.Report.Checks = checks
	}
	for _, o := range []string{"linux", "windows"} {
		_, d.Verifiers[o] = u.verifierPath(o)
	}
	if d.PublicKey != "" {
		d.Fingerprint = evidence.KeyFingerprint(d.PublicKey)
	}
	p := u.newPage(r, "evidence", "nav_evidence")
	d.T = evidenceText[p.Lang]
	p.Data = d
	u.render(w, r, http.StatusOK, "evidence", p)
}

// acceptedLosses reads every accepted loss of events the log records (on
// the server's own stream: an agent cannot forge one), whenever it was:
// the loss stays in the record for good, not only since this start.
func (u *UI) acceptedLosses(ctx context.Context) ([]api.Stored, error) {
	var out []api.Stored
	f := api.Filter{Agent: event.ServerStream, Type: lossAcceptedType, Limit: api.MaxQueryLimit}
	for range maxLossPages {
		pg, err := u.cfg.Events.Query(ctx, f)
		if err != nil {
			return out, err
		}
		out = append(out, pg.Events...)
		if pg.Next == "" {
			break
		}
		f.Cursor = pg.Next
	}
	return out, nil
}

func (u *UI) handleLogKey(w http.ResponseWriter, r *http.Request) {
	key := u.cfg.PublicKey
	if key == "" && u.cfg.Evidence != nil {
		if cp, err := u.cfg.Evidence.Checkpoint(r.Context()); err == nil {
			key = cp.PublicKey
		}
	}
	if key == "" {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	download(w, "log-key.pub", "text/plain; charset=utf-8", []byte(key+"\n"))
}

func (u *UI) handleCheckpointFile(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Evidence == nil {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	cp, err := u.cfg.Evidence.Checkpoint(r.Context())
	if err != nil || cp.Size == 0 {
		u.fail(w, r, http.StatusNotFound, "err_not_found", "")
		return
	}
	download(w, "mamori-checkpoint.txt", "text/plain; charset=utf-8", []byte(cp.Note))
}

// verifierPath finds the verifier build for goos in VerifierDir, checking
// the file really is one (ELF or PE), so a host build of another OS is not
// handed out under the wrong name.
func (u *UI) verifierPath(goos string) (string, bool) {
	if u.cfg.VerifierDir == "" {
		return "", false
	}
	var cands []string
	var magic []byte
	switch goos {
	case "linux":
		cands, magic = []string{"linux-amd64/mamori-server", "mamori-server"}, []byte("\x7fELF")
	case "windows":
		cands, magic = []string{"windows-amd64/mamori-server.exe", "mamori-server.exe"}, []byte("MZ")
	default:
		return "", false
	}
	for _, c := range cands {
		p := filepath.Join(u.cfg.VerifierDir, filepath.FromSlash(c))
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		head := make([]byte, len(magic))
		_, err = io.ReadFull(f, head)
		f.Close()
		if err == nil && bytes.Equal(head, magic) {
			return p, true
		}
	}
	return "", false
}

func (u *UI) handleVerifier(w http.ResponseWriter, r *http.Request) {
	goos := r.PathValue("os")
	p, ok := u.verifierPath(goos)
	if !ok {
		u.fail(w, r, http.StatusNotFound, "err_no_verifier", "")
		return
	}
	f, err := os.Open(p)
	if err != nil {
		u.internal(w, r, "opening verifier", err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		u.internal(w, r, "opening verifier", err)
		return
	}
	name := "mamori-server"
	if goos == "windows" {
		name += ".exe"
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, st.ModTime(), f)
	u.record(r, sessionFrom(r.Context()).Name, event.Event{Type: "export.made", Object: "verifier/" + goos,
		Attrs: event.Attrs{"format": "verifier", "os": goos}})
}

func download(w http.ResponseWriter, name, ctype string, b []byte) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
