package media

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/fswatch"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// writeWatcher reports files written under a directory tree until stop.
type writeWatcher interface {
	watch(ctx context.Context, dir string, onWrite func(path string, size int64)) (stop func(), err error)
}

// fsWatcher watches a mount with agent/internal/fswatch (recursive,
// debounced, rescans on overflow), one watcher per mounted medium.
type fsWatcher struct {
	clock controls.Clock
	log   zerolog.Logger
}

func (f fsWatcher) watch(ctx context.Context, dir string, onWrite func(path string, size int64)) (func(), error) {
	w, err := fswatch.New(fswatch.Options{Clock: f.clock, Log: f.log})
	if err != nil {
		return nil, fmt.Errorf("media: watch %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("media: watch %s: %w", dir, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range w.Changes() {
			switch c.Op {
			case fswatch.Created, fswatch.Modified, fswatch.Renamed:
				if !c.IsDir {
					onWrite(c.Path, c.Size)
				}
			}
		}
	}()
	return func() {
		_ = w.Close() // flushes what is pending, then closes Changes
		<-done
	}, nil
}

// syncWatch starts, restarts or stops the file-write watch on d's first
// mount so that it runs exactly while the policy asks for it and the device
// is usable (not blocked) and mounted.
func (c *Control) syncWatch(ctx context.Context, t *tracked, d Device, pol policy.Media) {
	if c.watch == nil {
		return
	}
	want := ""
	if pol.LogFileWrites && t.decision.Action != policy.MediaBlock && len(d.MountPoints) > 0 {
		want = d.MountPoints[0]
	}
	if t.stopW != nil && t.watching == want {
		return
	}
	if t.stopW != nil {
		t.stopW()
		t.stopW, t.watching = nil, ""
	}
	if want == "" {
		return
	}
	key := d.Key
	stop, err := c.watch.watch(ctx, want, func(path string, size int64) { c.fileWritten(ctx, key, path, size) })
	if err != nil {
		_ = c.emit(ctx, TypeEnforceFailed, event.Warning, d, t.decision,
			event.Attrs{"action": "watch_writes", "error": err.Error()})
		return
	}
	t.stopW, t.watching = stop, want
}

// fileWritten records one file written to a mounted medium: the carry-out
// record (持出し記録), linked to the approval and register entry in force.
func (c *Control) fileWritten(ctx context.Context, key, path string, size int64) {
	c.mu.Lock()
	t := c.seen[key]
	var d Device
	var dec Decision
	if t != nil {
		d, dec = t.dev, t.decision
	}
	c.mu.Unlock()
	if t == nil {
		return
	}
	a := event.Attrs{
		"file": path, "size": size,
		"serial": d.Serial, "vendor_id": d.VendorID, "product_id": d.ProductID,
	}
	if dec.ApprovalID != "" {
		a["approval_id"] = dec.ApprovalID
	}
	if dec.RegisterID != "" {
		a["register_id"] = dec.RegisterID
	}
	sev := event.Info
	if dec.Reason == ReasonDefault || dec.Reason == ReasonNoSerial {
		sev = event.Warning // written to a medium nobody registered or approved
	}
	e := event.Event{
		Time: c.env.Clock.Now(), Control: Name, Type: TypeFileWritten, Severity: sev,
		Object: path, RegisterID: dec.RegisterID, Attrs: a,
	}
	c.person(ctx, &e)
	if err := c.env.Emit.Emit(ctx, e); err != nil {
		c.env.Log.Error().Err(err).Msg("media: record file write")
	}
}
