// Package witness keeps, on a machine apart from the server, the signed
// checkpoints of a Mamori log and checks that each new one is a consistent
// extension of the last one kept (an RFC 6962 consistency proof, via
// golang.org/x/mod/sumdb/tlog), as Certificate Transparency's gossip does:
// a log rolled back, rewritten or forked, even by the server's own admin,
// shows as a checkpoint that does not extend what the witness holds.
//
// The state directory holds latest.note (the newest checkpoint verified),
// checkpoints/SIZE.note (each one kept) and, once a fork or rollback was
// seen, alarm.json, which makes every later check fail until an auditor
// has looked and removed it.
package witness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/shared/evidence"
)

// Files in the state directory.
const (
	FileLatest = "latest.note"
	DirKept    = "checkpoints"
	FileAlarm  = "alarm.json"
)

// Errors; test with errors.Is. ErrFork means the log is not what the
// witness saw before (exit 1); anything else means it could not check
// (exit 2).
var (
	ErrFork = errors.New("witness: the server's log is not an extension of the checkpoint kept: rolled back or forked")
)

// Witness checks one server's log.
type Witness struct {
	Server   string        // base URL, https://host:8443
	Token    string        // read-only API token (auditor)
	Verifier note.Verifier // the log's public key
	StateDir string
	Client   *http.Client // nil: http.DefaultClient
	Webhook  string       // POSTed a JSON alarm on a fork; "" for none
	Log      zerolog.Logger
	// SilentAfter is how long Watch's checks may fail in a row before it
	// reports the witness silenced (log line and webhook); 0: 30 minutes.
	SilentAfter time.Duration
}

// Result says what one check saw.
type Result struct {
	Kept, Seen int64 // sizes of the checkpoint kept before and of the server's
	Grown      bool  // a new checkpoint was verified and kept
}

// Kinds of Alarm.
const (
	KindFork          = "fork"           // rolled back, forked or re-keyed: alarm.json, exit 1
	KindCannotCheck   = "cannot_check"   // every check failed for SilentAfter
	KindCheckingAgain = "checking_again" // a check succeeded after KindCannotCheck
)

// Alarm is what alarm.json and the webhook hold.
type Alarm struct {
	Kind   string    `json:"kind"`
	Time   time.Time `json:"time"`
	Server string    `json:"server"`
	Reason string    `json:"reason"`
	Kept   string    `json:"kept"` // the signed checkpoint the witness held
	Seen   string    `json:"seen"` // the signed checkpoint the server gave
}

// checkpointAnswer is GET /api/v1/checkpoint's body.
type checkpointAnswer struct {
	Checkpoint string   `json:"checkpoint"`
	Since      int64    `json:"since"`
	Proof      []string `json:"proof"`
}

// Check fetches the server's latest signed checkpoint with a consistency
// proof from the one kept, verifies both, and keeps the new one. It returns
// an error wrapping ErrFork when the server's log does not extend the kept
// checkpoint (and records the alarm), any other error when it cannot check.
func (w *Witness) Check(ctx context.Context) (Result, error) {
	if b, err := os.ReadFile(filepath.Join(w.StateDir, FileAlarm)); err == nil {
		var a Alarm
		json.Unmarshal(b, &a)
		return Result{}, fmt.Errorf("%w: alarm raised %s and not cleared (%s): %s", ErrFork,
			a.Time.Format(time.RFC3339), filepath.Join(w.StateDir, FileAlarm), a.Reason)
	}
	kept, keptNote, err := w.latest()
	if err != nil {
		return Result{}, err
	}
	ans, err := w.fetch(ctx, kept.Size)
	if err != nil {
		return Result{Kept: kept.Size}, err
	}
	res := Result{Kept: kept.Size}
	fork := func(format string, a ...any) (Result, error) {
		reason := fmt.Sprintf(format, a...)
		w.alarm(ctx, Alarm{Kind: KindFork, Time: time.Now().UTC(), Server: w.Server, Reason: reason, Kept: string(keptNote), Seen: ans.Checkpoint})
		return res, fmt.Errorf("%w: %s", ErrFork, reason)
	}
	seen, err := evidence.Open([]byte(ans.Checkpoint), w.Verifier)
	var other *note.UnverifiedNoteError
	switch {
	case err != nil && keptNote != nil && errors.As(err, &other):
		// The server that signed what was kept now signs with another key:
		// its log key or the server itself was replaced, and nothing it
		// signs can be held to what was kept.
		var keys []string
		for _, sg := range other.Note.UnverifiedSigs {
			keys = append(keys, fmt.Sprintf("%s+%08x", sg.Name, sg.Hash))
		}
		return fork("the server's checkpoint is signed by another key (%v), not the log key %s+%08x that signed the checkpoint kept at %d: the server's log key or the server was replaced",
			keys, w.Verifier.Name(), w.Verifier.KeyHash(), kept.Size)
	case err != nil:
		return res, fmt.Errorf("witness: the server's checkpoint does not verify with the log key: %w", err)
	}
	res.Seen = seen.Size
	switch {
	case keptNote == nil:
	case seen.Size < kept.Size:
		return fork("the server's checkpoint covers %d events, one it signed before covers %d: the log was rolled back", seen.Size, kept.Size)
	case seen.Size == kept.Size:
		if seen.Root != kept.Root {
			return fork("two checkpoints of size %d with different roots (%s kept, %s now): the log forked", seen.Size, kept.Root, seen.Root)
		}
		return res, nil
	default:
		if ans.Since != kept.Size {
			return res, fmt.Errorf("witness: the server gave no consistency proof from size %d", kept.Size)
		}
		proof := make(tlog.TreeProof, len(ans.Proof))
		for i, s := range ans.Proof {
			if proof[i], err = tlog.ParseHash(s); err != nil {
				return res, fmt.Errorf("witness: proof hash %d: %w", i, err)
			}
		}
		if err := tlog.CheckTree(proof, seen.Size, seen.Root, kept.Size, kept.Root); err != nil {
			return fork("the log at %d events does not extend the checkpoint kept at %d (%v): the log was rewritten or forked", seen.Size, kept.Size, err)
		}
	}
	if err := w.keep(seen.Size, []byte(ans.Checkpoint)); err != nil {
		return res, err
	}
	res.Grown = true
	w.Log.Info().Int64("kept", kept.Size).Int64("size", seen.Size).Msg("witness: checkpoint is a consistent extension; kept")
	return res, nil
}

// latest reads the newest kept checkpoint; a nil note when there is none.
func (w *Witness) latest() (evidence.Checkpoint, []byte, error) {
	b, err := os.ReadFile(filepath.Join(w.StateDir, FileLatest))
	if errors.Is(err, os.ErrNotExist) {
		return evidence.Checkpoint{}, nil, nil
	}
	if err != nil {
		return evidence.Checkpoint{}, nil, fmt.Errorf("witness: %w", err)
	}
	cp, err := evidence.Open(b, w.Verifier)
	if err != nil {
		return evidence.Checkpoint{}, nil, fmt.Errorf("witness: the kept checkpoint %s: %w", filepath.Join(w.StateDir, FileLatest), err)
	}
	return cp, b, nil
}

// keep stores a verified checkpoint: its own file first, then latest.note
// replaced atomically.
func (w *Witness) keep(size int64, msg []byte) error {
	dir := filepath.Join(w.StateDir, DirKept)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, fmt.Sprintf("%020d.note", size)), msg); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(w.StateDir, FileLatest), msg)
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("witness: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("witness: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	return nil
}

// fetch asks the server for its latest checkpoint and a proof from since.
func (w *Witness) fetch(ctx context.Context, since int64) (checkpointAnswer, error) {
	u, err := url.Parse(w.Server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return checkpointAnswer{}, fmt.Errorf("witness: server URL %q: want https://host:port", w.Server)
	}
	u = u.JoinPath("/api/v1/checkpoint")
	if since > 0 {
		u.RawQuery = "since=" + strconv.FormatInt(since, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return checkpointAnswer{}, fmt.Errorf("witness: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+w.Token)
	c := w.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return checkpointAnswer{}, fmt.Errorf("witness: fetch checkpoint: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return checkpointAnswer{}, fmt.Errorf("witness: fetch checkpoint: %w", err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		if _, kept, _ := w.latest(); kept != nil {
			// The server accepted this token before: it was revoked, or the
			// server's etcd (which holds the tokens) was replaced.
			return checkpointAnswer{}, fmt.Errorf("witness: fetch checkpoint: %s: %s: the server refuses the token it accepted before: revoked, or the server's configuration store was replaced", resp.Status, bytes.TrimSpace(b))
		}
	}
	if resp.StatusCode != http.StatusOK {
		return checkpointAnswer{}, fmt.Errorf("witness: fetch checkpoint: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var ans checkpointAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return checkpointAnswer{}, fmt.Errorf("witness: checkpoint answer: %w", err)
	}
	return ans, nil
}

// Watch checks every interval until ctx ends (nil) or a fork is found (the
// error wrapping ErrFork), calling each with every check's outcome. Checks
// that keep failing are reported once they have failed for SilentAfter, and
// again when one succeeds: an insider who stops the witness from checking
// (revokes its token, replaces the etcd that holds it, blocks its address)
// would otherwise silence it with no more than a warning in its log.
func (w *Witness) Watch(ctx context.Context, interval time.Duration, each func(Result, error)) error {
	silentAfter := w.SilentAfter
	if silentAfter <= 0 {
		silentAfter = 30 * time.Minute
	}
	var (
		failingSince time.Time
		reported     bool
		attempts     int
	)
	for {
		res, err := w.Check(ctx)
		if errors.Is(err, ErrFork) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		each(res, err)
		switch {
		case err == nil && reported:
			w.notify(ctx, Alarm{Kind: KindCheckingAgain, Time: time.Now().UTC(), Server: w.Server,
				Reason: fmt.Sprintf("checking again after failing from %s (%d checks)", failingSince.Format(time.RFC3339), attempts)})
			fallthrough
		case err == nil:
			failingSince, reported, attempts = time.Time{}, false, 0
		default:
			if failingSince.IsZero() {
				failingSince = time.Now().UTC()
			}
			attempts++
			if !reported && time.Since(failingSince) >= silentAfter {
				reported = true
				w.notify(ctx, Alarm{Kind: KindCannotCheck, Time: time.Now().UTC(), Server: w.Server,
					Reason: fmt.Sprintf("no check has succeeded since %s (%d checks): %v", failingSince.Format(time.RFC3339), attempts, err)})
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// alarm records a fork: alarm.json (sticky), an error log line and the
// webhook if set.
func (w *Witness) alarm(ctx context.Context, a Alarm) {
	w.Log.Error().Str("server", a.Server).Str("reason", a.Reason).Msg("witness: FORK OR ROLLBACK of the evidence log")
	b, _ := json.MarshalIndent(a, "", "  ")
	if err := os.MkdirAll(w.StateDir, 0o700); err == nil {
		if err := writeAtomic(filepath.Join(w.StateDir, FileAlarm), b); err != nil {
			w.Log.Error().Err(err).Msg("witness: record the alarm")
		}
	}
	w.post(ctx, b)
}

// notify reports that the witness stopped or started checking again: a log
// line and the webhook, nothing sticky.
func (w *Witness) notify(ctx context.Context, a Alarm) {
	if a.Kind == KindCannotCheck {
		w.Log.Error().Str("server", a.Server).Str("reason", a.Reason).Msg("witness: CANNOT CHECK the evidence log")
	} else {
		w.Log.Info().Str("server", a.Server).Str("reason", a.Reason).Msg("witness: checking again")
	}
	b, _ := json.MarshalIndent(a, "", "  ")
	w.post(ctx, b)
}

// post sends b to the webhook if set.
func (w *Witness) post(ctx context.Context, b []byte) {
	if w.Webhook == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.Webhook, bytes.NewReader(b))
	if err != nil {
		w.Log.Error().Err(err).Msg("witness: webhook")
		return
	}
	req.Header.Set("Content-Type", "application/json")
	c := w.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		w.Log.Error().Err(err).Msg("witness: webhook")
		return
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		w.Log.Error().Int("status", resp.StatusCode).Msg("witness: webhook refused the alarm")
	}
}

// Kept is a checkpoint a witness kept.
type Kept struct {
	Path string
	Size int64
	Note []byte
	// Seen is when the witness first saw the log at Size: the file's time
	// (each size is written once). A copy of the directory that does not
	// keep file times shows later times, never earlier ones.
	Seen time.Time
}

// Pick returns, from a witness state directory, the kept checkpoint to
// check a bundle of tree size n against: the largest kept of size n or of
// a size in proven (those the bundle carries consistency proofs from);
// else the largest kept of size <= n (which the bundle then cannot prove
// it extends: it needs exporting again with since=); else, all being
// larger, the smallest (which the bundle cannot be held to: it is older
// than the witness, or the server showed the witness a larger log before
// it).
func Pick(stateDir string, n int64, proven []int64) (Kept, error) {
	ents, err := os.ReadDir(filepath.Join(stateDir, DirKept))
	if err != nil {
		return Kept{}, fmt.Errorf("witness: %s is not a witness state directory: %w", stateDir, err)
	}
	best, provable, smallest := int64(-1), int64(-1), int64(-1)
	for _, e := range ents {
		var s int64
		if _, err := fmt.Sscanf(e.Name(), "%d.note", &s); err != nil {
			continue
		}
		if (s == n || slices.Contains(proven, s)) && s > provable {
			provable = s
		}
		if s <= n && s > best {
			best = s
		}
		if smallest < 0 || s < smallest {
			smallest = s
		}
	}
	if provable >= 0 {
		best = provable
	}
	if best < 0 {
		best = smallest
	}
	if best < 0 {
		return Kept{}, fmt.Errorf("witness: %s holds no checkpoint yet", stateDir)
	}
	k := Kept{Path: filepath.Join(stateDir, DirKept, fmt.Sprintf("%020d.note", best)), Size: best}
	st, err := os.Stat(k.Path)
	if err != nil {
		return Kept{}, fmt.Errorf("witness: %w", err)
	}
	k.Seen = st.ModTime()
	if k.Note, err = os.ReadFile(k.Path); err != nil {
		return Kept{}, fmt.Errorf("witness: %w", err)
	}
	return k, nil
}
