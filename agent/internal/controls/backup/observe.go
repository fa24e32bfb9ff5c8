package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"time"
)

// maxObserveEntries bounds the walk of an external backup destination: a
// NAS share can hold millions of files and the answer only needs the newest.
const maxObserveEntries = 200_000

// fileHistoryRE matches the suffix Windows File History adds to each copy:
// "report (2024_05_01 09_30_12 UTC).xlsx".
var fileHistoryRE = regexp.MustCompile(` \((\d{4})_(\d{2})_(\d{2}) (\d{2})_(\d{2})_(\d{2}) UTC\)`)

// parseFileHistoryName returns the time File History wrote into a file
// name, if the name carries one.
func parseFileHistoryName(name string) (time.Time, bool) {
	ms := fileHistoryRE.FindAllStringSubmatch(name, -1)
	if len(ms) == 0 {
		return time.Time{}, false
	}
	m := ms[len(ms)-1] // a user's own file may already contain a similar suffix
	t, err := time.Parse("2006_01_02 15_04_05", fmt.Sprintf("%s_%s_%s %s_%s_%s", m[1], m[2], m[3], m[4], m[5], m[6]))
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// observed is what a walk of an external backup found.
type observed struct {
	Newest    time.Time
	Path      string // the file that gave Newest
	Files     int
	Truncated bool // the walk hit maxObserveEntries
}

// observeNewest walks root and returns the newest backup time under it:
// for File History copies the time in the name (they keep the source's
// mtime, which says nothing about when the backup ran), else the mtime.
func observeNewest(ctx context.Context, root string, limit int) (observed, error) {
	var o observed
	seen := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil // an unreadable subfolder does not hide the rest
		}
		if seen++; seen > limit {
			o.Truncated = true
			return fs.SkipAll
		}
		if seen%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if !d.Type().IsRegular() {
			return nil
		}
		t, ok := parseFileHistoryName(d.Name())
		if !ok {
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			t = fi.ModTime()
		}
		o.Files++
		if t.After(o.Newest) {
			o.Newest, o.Path = t, p
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.SkipAll) {
		return o, fmt.Errorf("backup: observe %s: %w", root, err)
	}
	return o, nil
}
