package eventlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a signed statement of the log's size and root hash.
type Checkpoint struct {
	Size    int64
	Root    tlog.Hash
	Note    string // signed note text (golang.org/x/mod/sumdb/note)
	Created time.Time
}

// ErrNoCheckpoint is returned by LatestCheckpoint before the first PutCheckpoint.
var ErrNoCheckpoint = errors.New("eventlog: no checkpoint stored")

// PutCheckpoint stores c after checking that Root is the stored tree's hash at
// Size, so that no checkpoint can disagree with the log it signs.
func (s *core) PutCheckpoint(ctx context.Context, c Checkpoint) error {
	root, err := s.TreeHash(ctx, c.Size)
	if err != nil {
		return fmt.Errorf("eventlog: checkpoint: %w", err)
	}
	if root != c.Root {
		return fmt.Errorf("eventlog: checkpoint root %s is not the tree hash %s at size %d", c.Root, root, c.Size)
	}
	if c.Note == "" {
		return errors.New("eventlog: checkpoint without note text")
	}
	if c.Created.IsZero() {
		c.Created = s.now()
	}
	r := &request{cp: &c, done: make(chan struct{})}
	if err := s.submit(ctx, r); err != nil {
		return err
	}
	return r.err
}

// LatestCheckpoint returns the checkpoint with the largest size.
func (s *core) LatestCheckpoint(ctx context.Context) (Checkpoint, error) {
	return s.checkpoint(ctx, `SELECT size, root, note, created FROM checkpoints ORDER BY size DESC LIMIT 1`)
}

// CheckpointAt returns the stored checkpoint of the given tree size, or
// ErrNoCheckpoint.
func (s *core) CheckpointAt(ctx context.Context, size int64) (Checkpoint, error) {
	return s.checkpoint(ctx, s.bind(`SELECT size, root, note, created FROM checkpoints WHERE size = ?`), size)
}

// checkpoint reads the one checkpoint row q selects, or ErrNoCheckpoint.
func (s *core) checkpoint(ctx context.Context, q string, args ...any) (Checkpoint, error) {
	var (
		c       Checkpoint
		root    []byte
		created int64
	)
	err := s.rdb.QueryRowContext(ctx, q, args...).Scan(&c.Size, &root, &c.Note, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Checkpoint{}, ErrNoCheckpoint
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("eventlog: checkpoint: %w", err)
	}
	if len(root) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("eventlog: checkpoint %d: root is %d bytes", c.Size, len(root))
	}
	copy(c.Root[:], root)
	c.Created = time.Unix(0, created).UTC()
	return c, nil
}

// CursorAfter returns the Query cursor that starts right after log index i
// (-1 starts at the beginning), for readers that walk the log by index.
func CursorAfter(i int64) string {
	if i < 0 {
		return ""
	}
	return strconv.FormatInt(i, 10)
}
