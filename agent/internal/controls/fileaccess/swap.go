package fileaccess

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"github.com/mamori/mamori/agent/internal/fswatch"
	"github.com/mamori/mamori/shared/event"
)

// A watched folder moved away, removed, or replaced at its path by a
// symbolic link, a junction, a file or another folder is lost: the watcher
// reports it (at once from the folder's own notification, else from the
// periodic comparison of the path with the folder that was added,
// rootCheckInterval), the status is not pass while the path is not a
// folder, and once a folder is at the path again it is watched at once and
// compared with what the lost folder held; the differences are reported
// with attribution_source while_unwatched and the window from the loss to
// the comparison.

// checkRoots compares the watched folders' paths with the folders added
// (lost ones are recorded now) and says whether a folder not watched has
// something else at its path since it was last tried (sync adds it, or
// says what it is).
func (r *runner) checkRoots(ctx context.Context) bool {
	if r.w == nil || !r.cfg.mode.Enabled() {
		return false
	}
	r.drain(ctx)
	if r.w == nil {
		return true
	}
	for _, ch := range r.w.CheckRoots() {
		r.change(ctx, ch)
	}
	again := false
	for p, rs := range r.roots {
		if rs.watched {
			continue
		}
		if id, _ := fswatch.Identify(p); id != rs.tried {
			again = true
		}
	}
	return again
}

// rootTried follows an attempt to add a folder: watched again after it was
// lost, the comparison's window is set; not a folder (a link, a junction,
// a file at its path), that is said once per thing found there.
func (r *runner) rootTried(ctx context.Context, rs *rootState) {
	now := r.c.env.Clock.Now()
	if rs.watched {
		rs.told = fswatch.Identity{}
		if since, ok := r.lost[rs.path]; ok {
			delete(r.lost, rs.path)
			r.unwatched[rs.path] = window{from: since, to: now}
		}
		return
	}
	var nf *fswatch.NotFolderError
	if !errors.As(rs.err, &nf) || nf.Now == rs.told {
		return
	}
	rs.told = nf.Now
	a := event.Attrs{"error": errString(rs.err)}
	was := r.w.RootIdentity(rs.path)
	if was.Kind == "" {
		was = fswatch.Identity{}
	}
	lostAttrs(a, was, nf.Now)
	if since, ok := r.lost[rs.path]; ok {
		a["lost_at"] = since.UTC().Format(time.RFC3339Nano)
	}
	r.emit(ctx, event.Event{Type: TypeError, Severity: event.Warning, Object: rs.path,
		RegisterID: r.registerFor(rs.path), Attrs: a})
}

// lostErr is why a lost folder is not watched: nothing at its path, or
// what is there instead of a folder (another folder is added at once).
func lostErr(ch fswatch.Change) error {
	switch ch.Now.Kind {
	case "":
		return fs.ErrNotExist
	case fswatch.KindDir:
		return errors.New("fileaccess: replaced by another folder " + ch.Now.ID())
	}
	return &fswatch.NotFolderError{Path: ch.Root, Now: ch.Now}
}

// lostAttrs says what a watched folder was (folder_id) and what its path
// is now (replaced_by, now_id, link_target), with a note.
func lostAttrs(a event.Attrs, was, now fswatch.Identity) {
	if id := was.ID(); id != "" {
		a["folder_id"] = id
	}
	if now.Kind == "" {
		return
	}
	a["replaced_by"] = now.Kind
	if id := now.ID(); id != "" {
		a["now_id"] = id
	}
	if now.Target != "" {
		a["link_target"] = now.Target
	}
	if now.Kind == fswatch.KindDir {
		a["note_en"] = "another folder is at the watched folder's path: it is watched and compared with what the watched folder held"
		a["note_ja"] = "監視対象フォルダのパスに別のフォルダが置かれました。そのフォルダを監視し、元のフォルダの内容と比較します"
		return
	}
	a["note_en"] = "the watched folder's path is now a " + now.String() + ", which is not followed: the folder is not watched until a folder is at its path again"
	a["note_ja"] = "監視対象フォルダのパスが" + kindJA(now) + "に置き換えられました。リンクはたどらないため、パスに再びフォルダが置かれるまで監視していません"
}

// kindJA names what a path is, in Japanese.
func kindJA(id fswatch.Identity) string {
	s := map[string]string{fswatch.KindSymlink: "シンボリックリンク", fswatch.KindJunction: "ジャンクション",
		fswatch.KindFile: "ファイル", fswatch.KindDir: "別のフォルダ"}[id.Kind]
	if s == "" {
		s = "フォルダ以外のもの"
	}
	if id.Target != "" {
		s += " → " + id.Target
	}
	return s
}
