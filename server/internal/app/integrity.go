package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/audit"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/server/internal/web"
	"github.com/mamori/mamori/shared/evidence"
)

// Integrity check cadence for the 証跡 page: the cheap checks (checkpoint
// signature and root, consistency) run on every view; the recomputation
// of the whole stored log at most every recomputeEvery, in the background,
// and the page waits for it at most pageWait.
const (
	recomputeEvery = 10 * time.Minute
	pageWait       = 3 * time.Second
)

// integrity implements web.IntegrityChecker with what the server has
// today: the start-up verification's result, the latest signed checkpoint
// checked against the store's tree, its consistency with the checkpoint
// seen at the previous check, and audit.VerifyLogAgainst over the store.
type integrity struct {
	store  audit.Log
	v      note.Verifier
	state  *state.State
	log    zerolog.Logger
	now    func() time.Time
	booted web.IntegrityCheck

	mu        sync.Mutex
	prev      *evidence.Checkpoint // the checkpoint the last check accepted
	full      web.IntegrityCheck   // the last recomputation's result
	fullSize  int64
	running   chan struct{} // closed when the running recomputation ends; nil when none
	lastStart time.Time
}

func newIntegrity(store audit.Log, v note.Verifier, st *state.State, log zerolog.Logger, now func() time.Time, lost *evidence.Checkpoint, from int64) *integrity {
	if now == nil {
		now = time.Now
	}
	i := &integrity{store: store, v: v, state: st, log: log, now: now,
		full: web.IntegrityCheck{Name: "recompute", State: web.IntegrityUnknown}}
	i.booted = startupCheck(now(), lost, from)
	if cp, err := store.LatestCheckpoint(context.Background()); err == nil {
		if c, err := evidence.Open([]byte(cp.Note), v); err == nil {
			i.prev = &c
		}
	}
	return i
}

// startupCheck says what the start-up verification did: every event, or,
// from a signed mark of an earlier full check, the events after it in
// full and the ones before it only as far as the mark's root (the scrubber
// re-reads those); or that the admin accepted a loss.
func startupCheck(at time.Time, lost *evidence.Checkpoint, from int64) web.IntegrityCheck {
	c := web.IntegrityCheck{Name: "startup", State: web.IntegrityIntact, At: at,
		Detail: "verified every stored event before serving"}
	switch {
	case lost != nil:
		c.Detail = fmt.Sprintf("the administrator accepted the loss of events after checkpoint size %d at start-up (recorded in the log)", lost.Size)
	case from > 0:
		c.Detail = fmt.Sprintf("verified in full the events from log index %d on (after the signed mark of an earlier full check) and that the %d before them still give the mark's root; the background re-check reads those again", from, from)
		c.DetailJA = fmt.Sprintf("起動時に、以前の全件検証の署名済みマークより後のイベント (ログ番号 %d 以降) をすべて検証し、それより前の %d 件が署名済みのルートと一致することを確認しました。それより前のイベントの内容は、バックグラウンドの再検証が順に読み直します。", from, from)
	}
	return c
}

// Integrity implements web.IntegrityChecker.
func (i *integrity) Integrity(ctx context.Context, recheck bool) web.IntegrityReport {
	rep := web.IntegrityReport{Checked: i.now(), State: web.IntegrityIntact}
	rep.TreeSize, _ = i.store.TreeSize(ctx)
	cpCheck, consCheck := i.checkpoint(ctx)
	done := i.startRecompute(recheck)
	if done != nil {
		select {
		case <-done:
		case <-time.After(pageWait):
		case <-ctx.Done():
		}
	}
	i.mu.Lock()
	full := i.full
	i.mu.Unlock()
	rep.Checks = []web.IntegrityCheck{i.booted, cpCheck, consCheck, full}
	for _, c := range rep.Checks {
		switch {
		case c.State == web.IntegrityTampered:
			rep.State = web.IntegrityTampered
		case c.State == web.IntegrityUnknown && rep.State == web.IntegrityIntact:
			rep.State = web.IntegrityUnknown
		}
	}
	return rep
}

// checkpoint checks the latest signed checkpoint (signature, the store's
// root at its size, etcd's copy not ahead of it) and that it extends the
// checkpoint accepted before (a tlog consistency proof from the store).
func (i *integrity) checkpoint(ctx context.Context) (cpc, cons web.IntegrityCheck) {
	now := i.now()
	cpc = web.IntegrityCheck{Name: "checkpoint", State: web.IntegrityIntact, At: now}
	cons = web.IntegrityCheck{Name: "consistency", State: web.IntegrityIntact, At: now}
	bad := func(c *web.IntegrityCheck, format string, args ...any) {
		c.State, c.Detail = web.IntegrityTampered, fmt.Sprintf(format, args...)
	}
	row, err := i.store.LatestCheckpoint(ctx)
	if errors.Is(err, eventlog.ErrNoCheckpoint) {
		cpc.State, cpc.Detail = web.IntegrityUnknown, "no signed checkpoint yet"
		cons.State = web.IntegrityUnknown
		return cpc, cons
	}
	if err != nil {
		cpc.State, cpc.Detail = web.IntegrityUnknown, err.Error()
		cons.State = web.IntegrityUnknown
		return cpc, cons
	}
	cp, err := evidence.Open([]byte(row.Note), i.v)
	switch {
	case err != nil:
		bad(&cpc, "the latest checkpoint (size %d) does not verify with the log key: %v", row.Size, err)
	case cp.Size != row.Size || cp.Root != row.Root:
		bad(&cpc, "the checkpoint row (size %d) differs from its signed note (size %d)", row.Size, cp.Size)
	default:
		root, err := i.store.TreeHash(ctx, cp.Size)
		switch {
		case err != nil:
			bad(&cpc, "the store cannot give its tree at size %d: %v (events deleted?)", cp.Size, err)
		case root != cp.Root:
			bad(&cpc, "the store's tree at size %d has root %s, the signed checkpoint says %s: stored events were rewritten", cp.Size, root, cp.Root)
		default:
			cpc.Detail = fmt.Sprintf("size %d, root %s", cp.Size, cp.Root)
		}
	}
	if i.state != nil {
		if ext, err := i.state.LatestCheckpoint(ctx); err == nil {
			if e, err := evidence.Open(ext, i.v); err == nil && e.Size > row.Size {
				bad(&cpc, "etcd's copy of the latest checkpoint covers %d events, the store's only %d: the store lost its newest events or was replaced", e.Size, row.Size)
			}
		}
	}
	if cpc.State != web.IntegrityIntact {
		cons.State = web.IntegrityUnknown
		return cpc, cons
	}
	i.mu.Lock()
	prev := i.prev
	i.mu.Unlock()
	switch {
	case prev == nil:
		cons.Detail = fmt.Sprintf("first checkpoint seen: size %d", cp.Size)
	case cp.Size < prev.Size:
		bad(&cons, "the latest checkpoint (size %d) is older than one seen before (size %d): the log was rolled back", cp.Size, prev.Size)
	case cp.Size == prev.Size && cp.Root != prev.Root:
		bad(&cons, "two different checkpoints of size %d: the log was forked", cp.Size)
	default:
		proof, err := tlog.ProveTree(cp.Size, prev.Size, i.store)
		if err == nil {
			err = tlog.CheckTree(proof, cp.Size, cp.Root, prev.Size, prev.Root)
		}
		if err != nil {
			bad(&cons, "the checkpoint of size %d does not extend the one of size %d seen before: %v", cp.Size, prev.Size, err)
		} else {
			cons.Detail = fmt.Sprintf("size %d extends size %d", cp.Size, prev.Size)
		}
	}
	if cons.State == web.IntegrityIntact {
		i.mu.Lock()
		i.prev = &cp
		i.mu.Unlock()
	}
	return cpc, cons
}

// startRecompute starts the full recomputation when none runs and the
// last is older than recomputeEvery (or now is set); it returns the running one's done
// channel, or nil.
func (i *integrity) startRecompute(now bool) chan struct{} {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.running != nil {
		return i.running
	}
	if !now && !i.lastStart.IsZero() && i.now().Sub(i.lastStart) < recomputeEvery {
		return nil
	}
	i.lastStart = i.now()
	done := make(chan struct{})
	i.running = done
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		var ext []byte
		if i.state != nil {
			if b, err := i.state.LatestCheckpoint(ctx); err == nil {
				ext = b
			}
		}
		n, _ := i.store.TreeSize(ctx)
		err := audit.VerifyLogAgainst(ctx, i.store, i.v, ext, i.log)
		c := web.IntegrityCheck{Name: "recompute", State: web.IntegrityIntact, At: i.now(),
			Detail: fmt.Sprintf("%d events recomputed: hashes, chains and tree match", n)}
		switch {
		case errors.Is(err, audit.ErrTampered):
			c.State, c.Detail = web.IntegrityTampered, err.Error()
			i.log.Error().Err(err).Msg("app: evidence log check found tampering")
		case err != nil:
			c.State, c.Detail = web.IntegrityUnknown, err.Error()
		}
		i.mu.Lock()
		i.full, i.fullSize, i.running = c, n, nil
		i.mu.Unlock()
	}()
	return done
}

// verifierDir is dir, or the folder of the running program, where `make
// build` puts mamori-server and windows-amd64/mamori-server.exe.
func verifierDir(dir string) string {
	if dir != "" {
		return dir
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return filepath.Dir(exe)
}
