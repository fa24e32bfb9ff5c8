package compliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mamori/mamori/server/internal/eventlog"
)

// snapshotVersion is the format of the snapshot file; another version is
// ignored (the tracker then replays the log).
const snapshotVersion = 1

// snapshot is the tracker's state on disk: a cache that spares a restart
// the replay of every status event ever stored. The log stays the truth:
// each cursor carries the hash of the event it points at, and a snapshot
// that does not match the store is dropped.
type snapshot struct {
	Version int                          `json:"version"`
	Cursors map[string]snapCursor        `json:"cursors"` // by stream (event type)
	Latest  map[string]map[string]Latest `json:"latest"`
	Alerted []string                     `json:"alerted"`
	// Running and Tampered: the policy each agent runs, from agent.* events.
	Running  map[string]Running  `json:"running,omitempty"`
	Tampered map[string]Tampered `json:"tampered,omitempty"`
}

type snapCursor struct {
	Index int64  `json:"index"`
	Hash  string `json:"hash"` // of the event at Index
}

// loadSnapshot reads the snapshot file, if configured and present, and
// adopts it when it matches the store. It runs once, before the first
// catch-up; any problem only costs a replay.
func (t *Tracker) loadSnapshot(ctx context.Context) {
	if t.cfg.SnapshotPath == "" {
		return
	}
	b, err := os.ReadFile(t.cfg.SnapshotPath)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var s snapshot
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err == nil && s.Version != snapshotVersion {
		err = fmt.Errorf("version %d, want %d", s.Version, snapshotVersion)
	}
	if err == nil {
		err = t.matches(ctx, &s)
	}
	if err != nil {
		t.log.Warn().Err(err).Str("path", t.cfg.SnapshotPath).Msg("compliance: snapshot not used; replaying status events")
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, c := range s.Cursors {
		t.cursors[k] = strconv.FormatInt(c.Index, 10)
		t.cursorHashes[k] = c
	}
	for agent, m := range s.Latest {
		t.latest[agent] = m
	}
	for _, k := range s.Alerted {
		t.alerted[k] = true
	}
	for a, r := range s.Running {
		t.running[a] = r
	}
	for a, tp := range s.Tampered {
		t.tampered[a] = tp
	}
	t.log.Info().Int("agents", len(s.Latest)).Msg("compliance: state loaded from snapshot")
}

// matches checks every cursor of s against the store: the event at that
// index must exist in that stream with that hash.
func (t *Tracker) matches(ctx context.Context, s *snapshot) error {
	byType := map[string]eventlog.Filter{}
	for _, f := range streams() {
		byType[f.Type] = f
	}
	for typ, c := range s.Cursors {
		f, ok := byType[typ]
		if !ok || c.Index < 0 {
			return fmt.Errorf("compliance: snapshot: bad cursor %q", typ)
		}
		if c.Index > 0 {
			f.Cursor = strconv.FormatInt(c.Index-1, 10)
		}
		f.Limit = 1
		p, err := t.cfg.Events.Query(ctx, f)
		if err != nil {
			return fmt.Errorf("compliance: snapshot check: %w", err)
		}
		if len(p.Events) == 0 || p.Events[0].Index != c.Index || p.Events[0].Hash != c.Hash {
			return fmt.Errorf("compliance: snapshot: %s at index %d does not match the event store", typ, c.Index)
		}
	}
	return nil
}

// SaveSnapshot writes the tracker's state to Config.SnapshotPath (temp
// file, fsync, rename), if set. Run calls it periodically and on exit.
func (t *Tracker) SaveSnapshot() error {
	if t.cfg.SnapshotPath == "" {
		return nil
	}
	t.mu.RLock()
	s := snapshot{Version: snapshotVersion, Cursors: make(map[string]snapCursor, len(t.cursors)),
		Latest: t.latest, Alerted: make([]string, 0, len(t.alerted)), Running: t.running, Tampered: t.tampered}
	for k, c := range t.cursorHashes {
		s.Cursors[k] = c
	}
	for k := range t.alerted {
		s.Alerted = append(s.Alerted, k)
	}
	b, err := json.Marshal(s)
	t.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("compliance: snapshot: %w", err)
	}
	dir := filepath.Dir(t.cfg.SnapshotPath)
	f, err := os.CreateTemp(dir, ".compliance-*.tmp")
	if err != nil {
		return fmt.Errorf("compliance: snapshot: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, t.cfg.SnapshotPath)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compliance: snapshot: %w", err)
	}
	return nil
}
