package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/shared/labels"

	"github.com/mamori/mamori/server/internal/witness"
	"github.com/mamori/mamori/shared/evidence"
)

// verifyHelp says what verify checks; it is the flag set's usage text.
const verifyHelp = `usage: mamori-server verify BUNDLE --pubkey FILE [--checkpoint OLD|WITNESS_DIR] [--lang en|ja]

Checks an evidence bundle (format ` + evidence.Format + ` or ` + evidence.FormatV2 + `) offline, with no server: the
signed checkpoint, each event's content hash and inclusion proof (which since v3 also covers the
time the server received it), each agent's seq and hash chain, that every event whose content
retention cleared is covered by a signed retention record, and the manifest the server signed
with the same key, which lists the export's query, the number of events and links, each agent's
seq range and a SHA-256 over every entry, so a dropped first or last entry, an emptied bundle,
an added, reordered or re-typed line, or edited filters fail.
--checkpoint takes a checkpoint kept before: the signed note (mamori-checkpoint.txt), the JSON
answer of GET /api/v1/checkpoint, an earlier bundle, or the state directory of
"mamori-server witness": the bundle must prove the log only grew since.
Prints the verifier's version, the key file used and its SHA-256 fingerprint (compare it with the
one the key holder gave you), the query, the counts, the time of the first and last event and each
agent's range, then OK (with a warning when the query matched no events) or every failure with its line.
Exit codes: 0 intact; 1 NOT intact; 2 could not check (bad flags, a file that cannot be read,
a key that is not a log key, a file that is not a bundle or not a checkpoint). Bundles of format ` + evidence.FormatV1 + ` (no manifest) are refused:
export them again.

`

// verifyText is the verify command's own wording, per --lang. A problem
// found in a bundle is worded by its kind (problemJA) with the evidence
// package's English detail.
var verifyText = map[string]map[string]string{
	"en": {
		"version": "verifier:   mamori-server %s\n",
		"bundle":  "bundle:     ", "log": "log:        %s, tree size %d, root %s\n", "query": "query:      ",
		"key":      "key:        %s: %s\n            fingerprint %s\n",
		"events":   "events:     %s .. %s (%s .. %s)\n",
		"empty":    "warning:    the export's query matched no events: check agent/control/time range\n",
		"okempty":  "result:     OK, but empty — the bundle is intact but holds no events: it shows nothing about the PCs or the period asked for",
		"kept":     "checkpoint: checked against your checkpoint of size %d (%s, %s)\n",
		"dir":      "it is a directory; give the bundle file (.jsonl)",
		"cannot":   "verify: cannot check: %w",
		"privkey":  "verify: cannot check: %s is the log's PRIVATE signing key (the server's DATA/log-key), not its public key: give log-key.pub; the private key must not leave the server, so if this copy was handed over, treat it as compromised",
		"notkey":   "verify: cannot check: %s is not a log public key: %w",
		"notcp":    "verify: cannot check: %s is not a checkpoint (a signed note, the JSON of GET /api/v1/checkpoint, or an earlier bundle)",
		"notbykey": "verify: cannot check: %s is a checkpoint not signed by the key in %s (%s)%s; give the log key you were handed, or a checkpoint of this log",
		"signedby": ": it is signed by %s",
		"every":    "(none: every event)", "manifest": "manifest:   signed %s (%s), lists %d events and %d links\n",
		"entries": "entries:    %d events in full, %d chain links\n", "agent": "agent:      %s seq %d..%d (%d entries)\n",
		"witness": "witness:    checked against the witness's checkpoint of size %d (%s)\n",
		"ok":      "result:     OK — signatures, inclusion proofs, seq and hash chains, retention records and the manifest (nothing missing, added or re-typed) all hold",
		"fail":    "FAIL: ", "more": "FAIL: ... and %d more problems\n", "notintact": "verify: %d problem(s): the bundle is NOT intact",
		"witnessolder": "witness:    the bundle (made %s) is older than the first checkpoint the witness kept (size %d, kept %s, %s): " +
			"it cannot be held to the witness; export it again, and the new bundle's checkpoint proves it extends the witness's\n",
		"notwitnessed": "verify: the bundle is intact in itself, but it could not be checked against your checkpoint (see above)",
		"noproof":      "checkpoint: not checked: %s\n",
	},
	"ja": {
		"version": "検証ツール:   mamori-server %s\n",
		"bundle":  "証跡ファイル: ", "log": "ログ:         %s、ツリーサイズ %d、ルート %s\n", "query": "抽出条件:     ",
		"key":      "公開鍵:       %s: %s\n              フィンガープリント %s\n",
		"events":   "イベント日時: %s .. %s (%s .. %s)\n",
		"empty":    "警告:         抽出条件に一致するイベントが 0 件です: エージェント・管理策・期間の指定を確認してください\n",
		"okempty":  "結果:         OK (ただし空) — 証跡は完全ですが、イベントを 1 件も含みません。対象の PC や期間について何も示していません",
		"kept":     "照合:         手元のチェックポイント (サイズ %d、%s、%s) と照合\n",
		"dir":      "ディレクトリです。証跡ファイル (.jsonl) を指定してください",
		"cannot":   "verify: 確認できません: %w",
		"privkey":  "verify: 確認できません: %s はログの秘密署名鍵 (サーバーの DATA/log-key) で、公開鍵ではありません。log-key.pub を指定してください。秘密鍵はサーバーの外に出してはいけません。渡されたものであれば漏えいしたものとして扱ってください",
		"notkey":   "verify: 確認できません: %s はログ公開鍵ではありません: %w",
		"notcp":    "verify: 確認できません: %s はチェックポイントではありません (署名付きノート、GET /api/v1/checkpoint の JSON、以前の証跡ファイルのいずれでもありません)",
		"notbykey": "verify: 確認できません: %s は %s の公開鍵 (%s) で署名されたチェックポイントではありません%s。受け取ったログ公開鍵か、このログのチェックポイントを指定してください",
		"signedby": " (署名: %s)",
		"every":    "(なし: 全イベント)", "manifest": "マニフェスト: %s (%s) 署名、イベント %d 件・リンク %d 件\n",
		"entries": "エントリ:     イベント %d 件 (全内容)、チェーンリンク %d 件\n", "agent": "エージェント: %s seq %d..%d (%d 件)\n",
		"witness": "ウィットネス: サイズ %d のチェックポイント (%s) と照合\n",
		"ok":      "結果:         OK — 署名、包含証明、seq とハッシュチェーン、保存期間の記録、マニフェスト (欠落・追加・種別変更なし) はすべて正しい",
		"fail":    "不正: ", "more": "不正: ... ほか %d 件\n", "notintact": "verify: %d 件の問題: 証跡は完全ではありません (改ざん・欠落の可能性)",
		"witnessolder": "ウィットネス: この証跡 (作成 %s) は、ウィットネスが最初に保存したチェックポイント (サイズ %d、保存 %s、%s) より古く、" +
			"照合できません。エクスポートし直すと、新しい証跡のチェックポイントでウィットネスと照合できます\n",
		"notwitnessed": "verify: 証跡自体は完全ですが、手元のチェックポイントとは照合できませんでした (上記)",
		"noproof":      "照合:         できません: 手元のチェックポイントからの整合性証明が証跡にありません。since を付けてエクスポートし直してください (%s)\n",
	},
}

// problemJA says in Japanese what each kind of problem means for the
// evidence; the evidence package's English detail follows it.
var problemJA = map[evidence.ProblemKind]string{
	evidence.ProblemKey:              "証跡が、指定された公開鍵とは別の鍵を名乗っています",
	evidence.ProblemCheckpoint:       "チェックポイントの署名を指定の公開鍵で検証できません (別のログの証跡か、改ざん)",
	evidence.ProblemOlderCheckpoint:  "証跡に含まれる過去のチェックポイントが正しくありません",
	evidence.ProblemYourCheckpoint:   "手元のチェックポイントと照合できません。手元の方が大きい場合は、保存した後にログが巻き戻されています (証跡がそれより前に作られたものでなければ)",
	evidence.ProblemNoProof:          "手元のチェックポイントからの整合性証明が証跡にありません (since を付けてエクスポートし直してください)",
	evidence.ProblemRewritten:        "ログが書き換えられています: 手元のチェックポイントと矛盾します",
	evidence.ProblemUnreadable:       "読めない行があります",
	evidence.ProblemJoined:           "マニフェストが 2 つあります: 証跡が連結されています",
	evidence.ProblemAppended:         "マニフェストの後に行が追加されています",
	evidence.ProblemContent:          "イベントの内容がハッシュと一致しないか、形式が不正です (内容の改ざん)",
	evidence.ProblemEntryShape:       "エントリの形式が不正です (イベントかリンクのどちらか一方を持つはずです)",
	evidence.ProblemOrder:            "順序が乱れています: エントリの並べ替えまたは重複",
	evidence.ProblemNotInLog:         "署名済みのログに含まれていません (包含証明が合いません)",
	evidence.ProblemPrunedShape:      "保存期間切れと記されたエントリの形式が不正です",
	evidence.ProblemMissing:          "seq が飛んでいます: イベントが証跡から抜けています",
	evidence.ProblemChain:            "ハッシュチェーンが切れています: 直前のイベントのハッシュと一致しません",
	evidence.ProblemClearedByHand:    "保存期間の記録なしに内容が消されています (手作業による消去)",
	evidence.ProblemCutShort:         "最後に署名付きマニフェストがありません: 末尾の行が削除され、証跡が完全である証明がありません",
	evidence.ProblemManifestSigned:   "マニフェストの署名が合いません: 署名の後に変更されたか、別の鍵で署名されています",
	evidence.ProblemManifestMismatch: "証跡がサーバーの署名したマニフェストと一致しません: エントリの欠落・追加・種別の変更、または抽出条件の変更",
	evidence.ProblemRolledBack:       "ログが巻き戻されています: ウィットネスは、この証跡が作られる前に、より大きいログを見ています",
}

// problemText is a problem in Japanese: its place, what it means, and
// the exact detail on a line of its own.
func problemText(p evidence.Problem) string {
	place := "手元のチェックポイント"
	if p.Line > 0 {
		place = fmt.Sprintf("%d 行目", p.Line)
	}
	if p.Agent != "" {
		place += fmt.Sprintf(" (ログ位置 %d、エージェント %s、seq %d)", p.Index, p.Agent, p.Seq)
	}
	what := problemJA[p.Kind]
	if what == "" {
		what = "検証に失敗しました"
	}
	return place + ": " + what + "\n      詳細: " + p.Msg
}

// cmdVerify checks an evidence bundle offline:
//
//	mamori-server verify BUNDLE --pubkey FILE [--checkpoint OLD]
//
// It needs no server, prints what holds and every failure with its place,
// and returns an error (exit 1) unless everything holds.
func cmdVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, verifyHelp)
		fs.PrintDefaults()
	}
	pubkey := fs.String("pubkey", "", "the log's public key file (log-key.pub, as the key holder handed it to you out of band)")
	old := fs.String("checkpoint", "", "a checkpoint kept before (a signed note, the JSON of GET /api/v1/checkpoint, or an earlier bundle), or a witness state directory: prove the log only grew since")
	lang := fs.String("lang", "en", "language of the report: en or ja")
	// The bundle may come before or after the flags.
	var bundle string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		bundle, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if bundle == "" && fs.NArg() == 1 {
		bundle = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usageError{fmt.Errorf("verify: unexpected arguments %q", fs.Args())}
	}
	if bundle == "" || *pubkey == "" {
		return usageError{fmt.Errorf("verify: usage: mamori-server verify BUNDLE --pubkey FILE [--checkpoint OLD|WITNESS_DIR] [--lang en|ja]")}
	}
	txt, ok := verifyText[*lang]
	if !ok {
		return usageError{fmt.Errorf("verify: --lang %q: want en or ja", *lang)}
	}
	kb, err := os.ReadFile(*pubkey)
	if err != nil {
		return usageError{fmt.Errorf(txt["cannot"], err)}
	}
	vkey := strings.TrimSpace(strings.TrimPrefix(string(kb), "\ufeff"))
	if strings.HasPrefix(vkey, "PRIVATE+KEY+") {
		// Whoever holds this can sign checkpoints: it must never have left
		// the server, and it proves nothing to an auditor.
		return usageError{fmt.Errorf(txt["privkey"], *pubkey)}
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return usageError{fmt.Errorf(txt["notkey"], *pubkey, err)}
	}
	if st, err := os.Stat(bundle); err == nil && st.IsDir() {
		return usageError{notBundleError(*lang, bundle, fmt.Errorf("%w: %s", evidence.ErrNotBundle, verifyText["en"]["dir"]), txt["dir"])}
	}
	f, err := os.Open(bundle)
	if err != nil {
		return usageError{fmt.Errorf(txt["cannot"], err)}
	}
	defer f.Close()
	var (
		opt      evidence.VerifyOptions
		kept     witness.Kept
		useKept  bool   // a witness dir was given
		keptWhat string // what the checkpoint file given was, else ""
	)
	if *old != "" {
		if st, err := os.Stat(*old); err == nil && st.IsDir() {
			n, proven := bundleSizes(bundle)
			if kept, err = witness.Pick(*old, n, proven); err != nil {
				return usageError{fmt.Errorf(txt["cannot"], err)}
			}
			useKept, opt.Old = true, kept.Note
			if kept.Size > n {
				opt.Old = nil // the bundle cannot prove it extends a larger log; decided below
			}
		} else {
			b, err := os.ReadFile(*old)
			if err != nil {
				return usageError{fmt.Errorf(txt["cannot"], err)}
			}
			// A signed note (mamori-checkpoint.txt), the JSON answer of
			// GET /api/v1/checkpoint, or an earlier bundle: each holds a
			// checkpoint the auditor kept.
			if opt.Old, keptWhat = keptCheckpoint(b); opt.Old == nil {
				return usageError{fmt.Errorf(txt["notcp"], *old)}
			}
		}
		// The auditor's own file: a file that is not a checkpoint of this
		// log cannot be used (exit 2), which is not tampering.
		if opt.Old != nil {
			opt.Old = noteText(opt.Old)
			if _, err := note.Open(opt.Old, note.VerifierList(v)); err != nil {
				by := ""
				if unv, ok := errors.AsType[*note.UnverifiedNoteError](err); ok {
					var names []string
					for _, sig := range unv.Note.UnverifiedSigs {
						names = append(names, fmt.Sprintf("%s+%08x", sig.Name, sig.Hash))
					}
					by = fmt.Sprintf(txt["signedby"], strings.Join(names, ", "))
				}
				return usageError{fmt.Errorf(txt["notbykey"]+": %w", *old, *pubkey, evidence.KeyID(v), by, err)}
			}
		}
	}
	rep, err := evidence.Verify(bufio.NewReaderSize(f, 1<<20), v, opt)
	if errors.Is(err, evidence.ErrNotBundle) {
		return usageError{notBundleError(*lang, bundle, err, "")}
	}
	if err != nil {
		// Not a bundle, or cut inside a line: what was handed over is not
		// intact evidence (exit 1), unless the file could not be read.
		return fmt.Errorf("verify: %s: %w", bundle, err)
	}
	fmt.Fprintf(stdout, txt["version"], versionString())
	fmt.Fprintf(stdout, txt["bundle"]+"%s\n", bundle)
	// Which key file was used, and its fingerprint, for the auditor to
	// compare with what was handed over: verify cannot know where it came from.
	fmt.Fprintf(stdout, txt["key"], *pubkey, evidence.KeyID(v), evidence.KeyFingerprint(vkey))
	if rep.Checkpoint.Origin != "" { // else the checkpoint did not verify: the problems say why
		fmt.Fprintf(stdout, txt["log"], rep.Checkpoint.Origin, rep.Checkpoint.Size, rep.Checkpoint.Root)
	}
	if m := rep.Manifest; m != nil {
		query := decodedQuery(m.Query, *lang)
		if query == "" {
			query = txt["every"]
		}
		fmt.Fprintf(stdout, txt["query"]+"%s\n"+txt["manifest"], query, m.Created.UTC().Format(time.RFC3339), m.Created.In(jst).Format("2006-01-02 15:04:05 MST"), m.Events, m.Links)
	}
	// A bundle made after the witness kept a larger checkpoint of the same
	// log shows a log smaller than one already signed: rolled back, even if
	// it proves growth from a smaller checkpoint the witness kept before.
	// Every checkpoint the witness kept being larger, a bundle made before
	// the witness first saw that log cannot be held to it.
	var latest witness.Kept
	if useKept {
		latest, _ = witness.Pick(*old, math.MaxInt64, nil)
	}
	notHeld := false // the bundle holds by itself but could not be held to the checkpoint given
	switch {
	case !useKept:
	case rep.Manifest != nil && latest.Size > rep.Checkpoint.Size && !rep.Manifest.Created.Before(latest.Seen) &&
		sameLog(latest.Note, v, rep.Checkpoint.Origin):
		rep.Problems = slices.DeleteFunc(rep.Problems, func(p evidence.Problem) bool { return p.Kind == evidence.ProblemNoProof })
		rep.Problems = append(rep.Problems, evidence.Problem{Line: 1, Kind: evidence.ProblemRolledBack,
			Msg: fmt.Sprintf("the bundle, made %s, shows a log of %d entries; the witness kept one of %d at %s (%s): the log was rolled back",
				rep.Manifest.Created.UTC().Format(time.RFC3339), rep.Checkpoint.Size, latest.Size, latest.Seen.UTC().Format(time.RFC3339), latest.Path)})
	case opt.Old != nil:
		fmt.Fprintf(stdout, txt["witness"], kept.Size, kept.Path)
	case rep.Manifest == nil: // the bundle's own problems say why
	case rep.Manifest.Created.Before(kept.Seen):
		notHeld = true
		fmt.Fprintf(stdout, txt["witnessolder"], rep.Manifest.Created.UTC().Format(time.RFC3339), kept.Size, kept.Seen.UTC().Format(time.RFC3339), kept.Path)
	default:
		rep.Problems = append(rep.Problems, evidence.Problem{Line: 1, Kind: evidence.ProblemRolledBack,
			Msg: fmt.Sprintf("the bundle, made %s, shows a log of %d entries; the witness kept one of %d at %s (%s): the log was rolled back",
				rep.Manifest.Created.UTC().Format(time.RFC3339), rep.Checkpoint.Size, kept.Size, kept.Seen.UTC().Format(time.RFC3339), kept.Path)})
	}
	if keptWhat != "" && !slices.ContainsFunc(rep.Problems, func(p evidence.Problem) bool { return p.Kind == evidence.ProblemNoProof }) {
		if oc, err := evidence.Open(opt.Old, v); err == nil {
			fmt.Fprintf(stdout, txt["kept"], oc.Size, *old, keptWhat)
		}
	}
	fmt.Fprintf(stdout, txt["entries"], rep.Events, rep.Links)
	if rep.Events > 0 {
		const layout = "2006-01-02 15:04:05 MST"
		fmt.Fprintf(stdout, txt["events"], rep.EventsFrom.In(jst).Format(layout), rep.EventsTo.In(jst).Format(layout),
			rep.EventsFrom.UTC().Format(time.RFC3339), rep.EventsTo.UTC().Format(time.RFC3339))
	}
	agents := make([]string, 0, len(rep.Agents))
	for a := range rep.Agents {
		agents = append(agents, a)
	}
	sort.Strings(agents)
	for _, a := range agents {
		r := rep.Agents[a]
		fmt.Fprintf(stdout, txt["agent"], a, r.First, r.Last, r.Entries)
	}
	// A bundle whose only problem is that it carries no proof from the
	// auditor's checkpoint could not be held to it: export again, nothing
	// found wrong.
	if len(rep.Problems) == 1 && rep.Problems[0].Kind == evidence.ProblemNoProof && rep.Truncated == 0 {
		notHeld = true
		fmt.Fprintf(stdout, txt["noproof"], rep.Problems[0].Msg)
		rep.Problems = nil
	}
	if rep.OK() {
		// Intact, but holding nothing: a query that matched no events (a
		// host name or a typo for an agent, a control that does not exist,
		// a period with nothing in it) must not be signed off as evidence.
		if rep.Events == 0 {
			fmt.Fprint(stdout, txt["empty"])
			fmt.Fprintln(stdout, txt["okempty"])
		} else {
			fmt.Fprintln(stdout, txt["ok"])
		}
		if notHeld {
			return usageError{errors.New(txt["notwitnessed"])}
		}
		return nil
	}
	for _, p := range rep.Problems {
		if *lang == labels.JA {
			fmt.Fprintln(stdout, txt["fail"]+problemText(p))
		} else {
			fmt.Fprintln(stdout, txt["fail"]+p.String())
		}
	}
	if rep.Truncated > 0 {
		fmt.Fprintf(stdout, txt["more"], rep.Truncated)
	}
	return fmt.Errorf(txt["notintact"], len(rep.Problems)+rep.Truncated)
}

// decodedQuery shows the export's filters as key=value pairs, keys sorted,
// values as they were given (not percent-encoded), quoted only when they
// hold spaces, quotes or control characters. In Japanese a control or
// event type also shows its label from the catalog the UI and the CSV
// use, after the code (the code is what the export was asked for).
func decodedQuery(q map[string]string, lang string) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := q[k]
		if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == '"' || r == 0x7f }) {
			v = strconv.Quote(v)
		}
		parts[i] = k + "=" + v
		if set, ok := queryLabels[k]; ok && lang == labels.JA && labels.Known(set, q[k]) {
			parts[i] += "（" + labels.Of(set, lang, q[k]) + "）"
		}
		// The period asked for, also in Japan's time.
		if t, err := time.Parse(time.RFC3339Nano, q[k]); err == nil && (k == "from" || k == "to") {
			if lang == labels.JA {
				parts[i] += "（" + t.In(jst).Format("2006-01-02 15:04:05.999999999 MST") + "）"
			} else {
				parts[i] += " (" + t.In(jst).Format("2006-01-02 15:04:05.999999999 MST") + ")"
			}
		}
	}
	return strings.Join(parts, " ")
}

// queryLabels are the query keys whose values the catalog labels.
var queryLabels = map[string]labels.Set{"control": labels.Control, "type": labels.EventType}

// bundleSizes reads from a bundle's header, not yet verified, its tree
// size and the sizes of the older checkpoints it proves growth from, to
// pick the witness's checkpoint to hold it to; 0 if unreadable. Verify
// then checks what was picked by.
func bundleSizes(bundle string) (n int64, older []int64) {
	f, err := os.Open(bundle)
	if err != nil {
		return 0, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), evidence.MaxLine)
	var h evidence.Header
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &h) != nil {
		return 0, nil
	}
	for _, o := range h.Older {
		older = append(older, unverifiedSize(o.Checkpoint))
	}
	return unverifiedSize(h.Checkpoint), older
}

// noteText undoes what editors and mail do to a signed note kept as a
// file: CRLF line ends, and blank lines or spaces after its last line.
func noteText(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return append(bytes.TrimRight(b, " \t\r\n"), '\n')
}

// sameLog says whether a kept checkpoint is signed by the log key and is
// of the log named origin.
func sameLog(kept []byte, v note.Verifier, origin string) bool {
	nn, err := note.Open(kept, note.VerifierList(v))
	if err != nil {
		return false
	}
	cp, err := evidence.ParseCheckpoint(nn.Text)
	return err == nil && cp.Origin == origin
}

func unverifiedSize(msg string) int64 {
	nn, err := note.Open([]byte(msg), note.VerifierList())
	if err != nil {
		var unv *note.UnverifiedNoteError
		if !errors.As(err, &unv) {
			return 0
		}
		nn = unv.Note
	}
	cp, err := evidence.ParseCheckpoint(nn.Text)
	if err != nil {
		return 0
	}
	return cp.Size
}

// jst is the time zone the summary gives times in besides UTC: the
// auditors and the PCs are in Japan.
var jst = time.FixedZone("JST", 9*3600)

// keptCheckpoint reads the signed checkpoint out of a file an auditor kept:
// a signed note (mamori-checkpoint.txt from the 証跡 page, a witness's
// file), the JSON answer of GET /api/v1/checkpoint, or an earlier bundle
// (its header's checkpoint, whose signature and proof Verify checks). what
// says which it was; msg is nil when the file holds no checkpoint note.
// Whose key signed it is the caller's to check.
func keptCheckpoint(b []byte) (msg []byte, what string) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	if t := bytes.TrimSpace(b); bytes.HasPrefix(t, []byte("{")) {
		var v struct {
			Format     string `json:"format"`
			Checkpoint string `json:"checkpoint"`
		}
		first, _, _ := bytes.Cut(t, []byte("\n"))
		switch {
		case json.Unmarshal(first, &v) == nil && v.Format != "":
			what = "the signed checkpoint of an earlier bundle"
		case json.Unmarshal(t, &v) == nil && v.Format == "":
			what = "the JSON of GET /api/v1/checkpoint"
		default:
			return nil, ""
		}
		b = []byte(v.Checkpoint)
	} else {
		what = "a signed note"
	}
	b = noteText(b)
	_, err := note.Open(b, note.VerifierList())
	unv, ok := errors.AsType[*note.UnverifiedNoteError](err)
	if !ok {
		return nil, ""
	}
	if _, err := evidence.ParseCheckpoint(unv.Note.Text); err != nil {
		return nil, ""
	}
	return b, what
}

// notBundleJA says in Japanese what a file given as a bundle is instead.
var notBundleJA = map[evidence.NotBundleReason]string{
	evidence.NotBundleEmpty:      "空のファイルです",
	evidence.NotBundleHTML:       "Web ページ (HTML) です。エクスポートの応答ではありません。API トークンを付けてエクスポートし直してください",
	evidence.NotBundleCSV:        "CSV エクスポート (閲覧用) です。検証には format=bundle でエクスポートしてください",
	evidence.NotBundleText:       "テキストですが証跡ではありません (証跡の 1 行目は JSON ヘッダーです)。format=bundle でエクスポートしてください",
	evidence.NotBundleArchive:    "圧縮ファイル (gzip または ZIP) です。展開して中の証跡を指定してください",
	evidence.NotBundleBinary:     "バイナリファイルです。証跡ではありません (証跡は 1 行目が JSON ヘッダーの UTF-8 テキストです)",
	evidence.NotBundleReply:      "サーバーのエラー応答が保存されています。原因を解消してからエクスポートし直してください",
	evidence.NotBundleCheckpoint: "GET /api/v1/checkpoint の JSON (チェックポイント) です。--checkpoint に指定するファイルです",
	evidence.NotBundleJSON:       "JSON ですが、証跡のヘッダーではありません (format がありません)。format=bundle でエクスポートしてください",
}

// notBundleError is verify's error for a file given as a bundle that is
// none (exit 2: nothing to check, not tampering): err in English, and in
// Japanese what it is (ja, else from err) with err below.
func notBundleError(lang, file string, err error, ja string) error {
	if lang != labels.JA {
		return fmt.Errorf("verify: cannot check %s: %w", file, err)
	}
	if nb, ok := errors.AsType[*evidence.NotBundleError](err); ok && ja == "" {
		ja = notBundleJA[nb.Reason]
	}
	return fmt.Errorf("verify: 確認できません: %s は証跡ファイルではありません: %s\n      詳細: %w", file, ja, err)
}
