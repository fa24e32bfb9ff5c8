package fileaccess

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/mamori/mamori/agent/internal/fswatch"
	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/shared/event"
)

// Saved state of the watched folders, in the spool's database: the snapshot
// (path -> size, mtime, kind, inode, change time) is committed in the same transaction
// as the event that reflects each change, so after a crash the saved
// snapshot is exactly what the stored events describe, and diffing it
// against the disk at the next start finds every change no event recorded.
const (
	bucketSnapshot = "fileaccess.snapshot" // path -> encoded entry
	bucketRoots    = "fileaccess.roots"    // root -> time its baseline was taken
)

// sourceWhileStopped marks a change found at start by comparing the saved
// snapshot with the disk: it happened while no agent watched, between
// window_from (the agent's last event before it stopped, or the folder's
// baseline if later) and window_to (the comparison), by an unknown user and
// process. A fileaccess.bulk summarising such changes carries the same.
const sourceWhileStopped = "while_agent_stopped"

// sourceNotRecorded marks a change found by the same comparison while the
// agent ran, after the spool refused the events that recorded it (disk
// full): the agent saw it but could not store it. window_from is the
// earliest change in the first refused event, window_to the comparison.
const sourceNotRecorded = "not_recorded"

// sourceWhileUnwatched is the attribution_source of changes found when a
// watched folder that had been moved away or replaced (a symbolic link,
// junction or another folder at its path) is a folder at its path again:
// compared with what it held when it was lost, window_from the time the
// loss was noticed, window_to the comparison. The agent was running.
const sourceWhileUnwatched = "while_unwatched"

// stateStore is what the spool offers for saving the snapshot with events.
type stateStore interface {
	EmitState(ctx context.Context, e event.Event, st *spool.State) error
	SaveState(st spool.State) error
	LoadState(bucket string, fn func(k, v []byte) error) error
	Previous() spool.Previous
}

// An entry is size, mtime (Unix ns), inode, dir flag (25 bytes, as the
// previous version saved it), then the change time (Unix ns, 0: unknown).
// A 25-byte entry still decodes, with the change time unknown, so an
// upgrade neither discards the saved snapshot nor reports every file.
const (
	entryLenV1 = 25
	entryLen   = 33
)

func encodeEntry(e *fswatch.Entry) []byte {
	if e == nil {
		return nil
	}
	b := make([]byte, entryLen)
	binary.BigEndian.PutUint64(b[0:], uint64(e.Size))
	binary.BigEndian.PutUint64(b[8:], uint64(e.MTime.UnixNano()))
	binary.BigEndian.PutUint64(b[16:], e.ID)
	if e.Dir {
		b[24] = 1
	}
	if !e.CTime.IsZero() {
		binary.BigEndian.PutUint64(b[25:], uint64(e.CTime.UnixNano()))
	}
	return b
}

func decodeEntry(b []byte) (fswatch.Entry, error) {
	if len(b) != entryLen && len(b) != entryLenV1 || b[24] > 1 {
		return fswatch.Entry{}, fmt.Errorf("fileaccess: saved snapshot entry of %d bytes", len(b))
	}
	e := fswatch.Entry{
		Size:  int64(binary.BigEndian.Uint64(b[0:])),
		MTime: time.Unix(0, int64(binary.BigEndian.Uint64(b[8:]))),
		ID:    binary.BigEndian.Uint64(b[16:]),
		Dir:   b[24] == 1,
	}
	if len(b) == entryLen {
		if ns := int64(binary.BigEndian.Uint64(b[25:])); ns != 0 {
			e.CTime = time.Unix(0, ns)
		}
	}
	return e, nil
}

// snapState turns a change's snapshot edits into a spool state change.
func snapState(edits map[string]*fswatch.Entry) *spool.State {
	if len(edits) == 0 {
		return nil
	}
	st := &spool.State{Bucket: bucketSnapshot, Puts: make(map[string][]byte, len(edits))}
	for p, e := range edits {
		st.Puts[p] = encodeEntry(e)
	}
	return st
}

// loadPrior returns the saved snapshot of root, or nil when root has no
// saved baseline (first watched now), and when that baseline was taken
// (zero if unreadable). An unreadable entry makes the whole saved snapshot
// unusable: better a new baseline than invented changes.
func loadPrior(st stateStore, root string) (map[string]fswatch.Entry, time.Time, error) {
	known := false
	var since time.Time
	if err := st.LoadState(bucketRoots, func(k, v []byte) error {
		if string(k) == root {
			known = true
			since, _ = time.Parse(time.RFC3339Nano, string(v))
		}
		return nil
	}); err != nil {
		return nil, time.Time{}, err
	}
	if !known {
		return nil, time.Time{}, nil
	}
	prior := map[string]fswatch.Entry{}
	err := st.LoadState(bucketSnapshot, func(k, v []byte) error {
		p := string(k)
		if !fswatch.Within(p, root) {
			return nil
		}
		e, err := decodeEntry(v)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		prior[p] = e
		return nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	return prior, since, nil
}

// saveBaseline replaces the saved snapshot of root with snap (a root just
// added without a saved one); what lies in other roots is left alone.
func saveBaseline(st stateStore, root string, others []string, snap map[string]fswatch.Entry, now time.Time) error {
	if err := forgetRoot(st, root, others); err != nil {
		return err
	}
	puts := make(map[string][]byte, len(snap))
	for p, e := range snap {
		puts[p] = encodeEntry(&e)
	}
	if err := st.SaveState(spool.State{Bucket: bucketSnapshot, Puts: puts}); err != nil {
		return err
	}
	return st.SaveState(spool.State{Bucket: bucketRoots, Puts: map[string][]byte{
		root: []byte(now.UTC().Format(time.RFC3339Nano))}})
}

// forgetRoot deletes the saved snapshot of root, except what lies in one of
// keep (other roots still watched).
func forgetRoot(st stateStore, root string, keep []string) error {
	puts := map[string][]byte{}
	err := st.LoadState(bucketSnapshot, func(k, _ []byte) error {
		p := string(k)
		if !fswatch.Within(p, root) {
			return nil
		}
		for _, r := range keep {
			if fswatch.Within(p, r) {
				return nil
			}
		}
		puts[p] = nil
		return nil
	})
	if err != nil {
		return err
	}
	if len(puts) > 0 {
		if err := st.SaveState(spool.State{Bucket: bucketSnapshot, Puts: puts}); err != nil {
			return err
		}
	}
	return st.SaveState(spool.State{Bucket: bucketRoots, Puts: map[string][]byte{root: nil}})
}
