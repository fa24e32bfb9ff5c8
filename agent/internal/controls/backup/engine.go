package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
)

// ManifestName is the file, written last, that makes a generation good.
const ManifestName = "manifest.json"

// manifestVersion is bumped when the manifest format changes.
const manifestVersion = 1

// genLayout names generation directories; it sorts by time as text.
const genLayout = "20060102T150405.000000000Z"

// Manifest lists every file of one generation with its hash.
type Manifest struct {
	Version    int       `json:"version"`
	Host       string    `json:"host"`
	Generation string    `json:"generation"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
	Files      []File    `json:"files"`
}

// File is one backed-up file. Path is slash-separated and relative to the
// generation directory; Source is the original absolute path.
type File struct {
	Path       string    `json:"path"`
	Source     string    `json:"source"`
	Size       int64     `json:"size"`
	MTime      time.Time `json:"mtime"`
	SHA256     string    `json:"sha256"`
	CopiedAt   time.Time `json:"copied_at"`
	RegisterID string    `json:"register_id,omitempty"`
	// CTime is the source's inode change time when it was read (Unix; zero
	// where the OS gives none, and in manifests of older agents).
	CTime time.Time `json:"ctime,omitzero"`
	// LinkUnverified marks a copy linked from the previous generation on
	// size and mtime alone (Windows): the source was not read.
	LinkUnverified bool `json:"link_unverified,omitempty"`
}

// fileJSON is File as the manifest stores it. A name on disk is bytes
// (Linux) and need not be UTF-8; JSON would turn such bytes into U+FFFD and
// the copy could never be found again by verify. Such a file's path and
// source are stored escaped (event.EscapeBytes) with "escaped": true.
type fileJSON struct {
	fileFields
	Escaped bool `json:"escaped,omitempty"`
}

// fileFields is File without its JSON methods.
type fileFields File

// MarshalJSON escapes a path or source that is not UTF-8.
func (f File) MarshalJSON() ([]byte, error) {
	j := fileJSON{fileFields: fileFields(f)}
	if !utf8.ValidString(f.Path) || !utf8.ValidString(f.Source) {
		j.Path, j.Source, j.Escaped = event.EscapeBytes(f.Path), event.EscapeBytes(f.Source), true
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads back the exact bytes of an escaped path and source.
func (f *File) UnmarshalJSON(b []byte) error {
	var j fileJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Escaped {
		var err error
		if j.Path, err = event.UnescapeBytes(j.Path); err != nil {
			return fmt.Errorf("path: %w", err)
		}
		if j.Source, err = event.UnescapeBytes(j.Source); err != nil {
			return fmt.Errorf("source: %w", err)
		}
	}
	*f = File(j.fileFields)
	return nil
}

// Source is one tree to back up.
type Source struct {
	Path       string
	RegisterID string
}

// Result is what one run did.
type Result struct {
	Generation string
	Dir        string
	Files      int
	Bytes      int64
	Copied     int
	Linked     int
	Vanished   int // files deleted between listing and copying
	// LinkedUnverified counts links made on size and mtime alone (Windows,
	// where os.Stat has no change time); 0 on Unix.
	LinkedUnverified int
	// Compared counts sources read to compare their content with the
	// previous copy (no ctime recorded, a ctime that moved, or too recent).
	Compared     int
	ManifestHash string
	Duration     time.Duration
	RegisterIDs  []string
}

// Generation is a good (manifest-bearing) generation on the destination.
type Generation struct {
	Name string
	Dir  string
	Time time.Time
}

// engine runs backups of sources into hostDir (destination/<hostname>).
type engine struct {
	hostDir   string
	host      string
	now       func() time.Time
	manifests map[string]string // generation -> manifest hash, as written
}

// sourceDir maps an absolute source path to its directory inside a
// generation: "C:\Data" -> "C/Data", "\\nas\share\x" -> "UNC/nas/share/x",
// "/home/a" -> "home/a".
func sourceDir(p string) string {
	p = filepath.Clean(p)
	vol := filepath.VolumeName(p)
	rest := p[len(vol):]
	var prefix string
	switch {
	case strings.HasPrefix(vol, `\\`):
		prefix = "UNC/" + strings.ReplaceAll(strings.TrimPrefix(vol, `\\`), `\`, "/")
	case vol != "":
		prefix = strings.TrimSuffix(vol, ":")
	}
	rest = strings.Trim(filepath.ToSlash(rest), "/")
	switch {
	case prefix == "":
		return rest
	case rest == "":
		return prefix
	}
	return prefix + "/" + rest
}

// goodGenerations lists the generations that hold a manifest, oldest first.
// Directories that do not parse as generation names are not ours and are
// left alone.
func (g *engine) goodGenerations() ([]Generation, error) {
	ents, err := os.ReadDir(g.hostDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup: list generations: %w", err)
	}
	var out []Generation
	for _, e := range ents {
		t, err := time.Parse(genLayout, e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		dir := filepath.Join(g.hostDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, ManifestName)); err != nil {
			continue
		}
		out = append(out, Generation{Name: e.Name(), Dir: dir, Time: t})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// removePartial deletes generation directories without a manifest: what a
// crash or a failed run left behind. They were never reported good.
func (g *engine) removePartial() error {
	ents, err := os.ReadDir(g.hostDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("backup: list generations: %w", err)
	}
	for _, e := range ents {
		if _, err := time.Parse(genLayout, e.Name()); err != nil || !e.IsDir() {
			continue
		}
		dir := filepath.Join(g.hostDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, ManifestName)); errors.Is(err, fs.ErrNotExist) {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("backup: remove partial generation %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// readManifest loads a generation's manifest and its SHA-256.
func readManifest(dir string) (*Manifest, string, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, "", fmt.Errorf("backup: read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, "", fmt.Errorf("backup: manifest %s: %w", dir, err)
	}
	if m.Version != manifestVersion {
		return nil, "", fmt.Errorf("backup: manifest %s: unknown version %d", dir, m.Version)
	}
	sum := sha256.Sum256(b)
	return &m, hex.EncodeToString(sum[:]), nil
}

// prevGen is the generation unchanged files are linked from.
type prevGen struct {
	files   map[string]File // by manifest path
	dir     string
	started time.Time // when its run began: a ctime this recent may hide a later edit
}

// previous returns the files of the newest generation whose manifest is
// the one written (as verify checks it), to link unchanged files from. A
// rewritten or unreadable manifest cannot vouch for its copies: the next
// older generation is used, or none, which only costs a full copy.
func (g *engine) previous() (prevGen, error) {
	gens, err := g.goodGenerations()
	if err != nil {
		return prevGen{}, err
	}
	for i := len(gens) - 1; i >= 0; i-- {
		m, sum, err := readManifest(gens[i].Dir)
		if err != nil {
			continue
		}
		if want, ok := g.manifests[gens[i].Name]; ok && want != sum {
			continue
		}
		prev := make(map[string]File, len(m.Files))
		for _, f := range m.Files {
			prev[f.Path] = f
		}
		return prevGen{files: prev, dir: gens[i].Dir, started: m.Started}, nil
	}
	return prevGen{}, nil
}

// run makes one new generation. On any error the partial generation is
// removed and nothing is reported good.
func (g *engine) run(ctx context.Context, sources []Source) (res Result, err error) {
	start := g.now()
	if err := os.MkdirAll(g.hostDir, 0o700); err != nil {
		return res, fmt.Errorf("backup: destination: %w", err)
	}
	if err := g.removePartial(); err != nil {
		return res, err
	}
	prev, err := g.previous()
	if err != nil {
		return res, err
	}
	var name, dir string
	for t := start.UTC(); ; t = t.Add(time.Nanosecond) { // two runs in one clock tick get distinct names
		name = t.Format(genLayout)
		dir = filepath.Join(g.hostDir, name)
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return res, fmt.Errorf("backup: new generation: %w", err)
		}
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(dir); rerr != nil {
				err = errors.Join(err, fmt.Errorf("backup: remove partial generation: %w", rerr))
			}
		}
	}()
	m := Manifest{Version: manifestVersion, Host: g.host, Generation: name, Started: start.UTC()}
	dirs := map[string]bool{dir: true}
	regs := map[string]bool{}
	for _, src := range sources {
		root := filepath.Clean(src.Path)
		base := sourceDir(root)
		werr := filepath.WalkDir(root, func(p string, d fs.DirEntry, werr error) error {
			if werr != nil {
				return werr
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			if d.IsDir() {
				// Kept even when empty: a restore brings back the folders
				// people file into (a new year's, not yet filled).
				ddir := filepath.Join(dir, filepath.FromSlash(base+"/"+filepath.ToSlash(rel)))
				if !dirs[ddir] {
					if err := os.MkdirAll(ddir, 0o700); err != nil {
						return err
					}
					dirs[ddir] = true
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil // symlinks and devices are not copied
			}
			mpath := base + "/" + filepath.ToSlash(rel)
			dst := filepath.Join(dir, filepath.FromSlash(mpath))
			ddir := filepath.Dir(dst)
			if !dirs[ddir] {
				if err := os.MkdirAll(ddir, 0o700); err != nil {
					return err
				}
				dirs[ddir] = true
			}
			f, linked, compared, err := g.copyOne(p, dst, prev.files[mpath], prev, mpath)
			if errors.Is(err, fs.ErrNotExist) {
				if _, serr := os.Lstat(p); errors.Is(serr, fs.ErrNotExist) {
					res.Vanished++ // deleted since the walk listed it: nothing left to back up
					return nil
				}
			}
			if err != nil {
				return err
			}
			f.Path, f.Source, f.RegisterID = mpath, p, src.RegisterID
			m.Files = append(m.Files, f)
			res.Files++
			res.Bytes += f.Size
			if compared {
				res.Compared++
			}
			if linked {
				res.Linked++
				if f.LinkUnverified {
					res.LinkedUnverified++
				}
			} else {
				res.Copied++
			}
			if src.RegisterID != "" {
				regs[src.RegisterID] = true
			}
			return nil
		})
		if werr != nil {
			return res, fmt.Errorf("backup: %s: %w", root, werr)
		}
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return res, fmt.Errorf("backup: sync %s: %w", d, err)
		}
	}
	m.Finished = g.now().UTC()
	b, err := json.MarshalIndent(&m, "", " ")
	if err != nil {
		return res, fmt.Errorf("backup: manifest: %w", err)
	}
	if err := writeFileSync(filepath.Join(dir, ManifestName), b); err != nil {
		return res, fmt.Errorf("backup: manifest: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return res, fmt.Errorf("backup: sync %s: %w", dir, err)
	}
	sum := sha256.Sum256(b)
	res.Generation, res.Dir, res.ManifestHash = name, dir, hex.EncodeToString(sum[:])
	res.Duration = g.now().Sub(start)
	for r := range regs {
		res.RegisterIDs = append(res.RegisterIDs, r)
	}
	sort.Strings(res.RegisterIDs)
	return res, nil
}

// racyCTime is how close to the start of the run that recorded it a
// change time must not be: an edit in the same timestamp tick as that read
// (or on a share whose clock runs a little behind ours) would leave it
// unchanged. Such a file is compared by content instead.
const racyCTime = 2 * time.Second

// copyOne puts src at dst: a hard link to the previous generation's copy
// when the source is known to be unchanged and the copy still hashes to
// its manifest entry, else a verified copy. The re-hash reads one
// generation, as verify does for each: linking a damaged copy would carry
// the damage into every later generation while the intact source is never
// read again.
//
// Unchanged means the same size and mtime and, on Unix, the same inode
// change time as recorded (touch -r restores an mtime, never a ctime). When
// the previous manifest has no ctime (an older agent) or it may be racy,
// the source is hashed and linked only if it still has that content. On
// Windows (no ctime from os.Stat) size and mtime still decide, and the
// entry is marked link_unverified.
func (g *engine) copyOne(src, dst string, old File, prev prevGen, mpath string) (f File, linked, compared bool, err error) {
	st, err := os.Stat(src)
	if err != nil {
		return File{}, false, false, err
	}
	ctime, hasCTime := changeTimeOf(st)
	if prev.dir != "" && old.SHA256 != "" && old.Size == st.Size() && old.MTime.Equal(st.ModTime()) {
		same, unverified := false, false
		switch {
		case hasCTime && !old.CTime.IsZero() && old.CTime.Equal(ctime) && old.CTime.Before(prev.started.Add(-racyCTime)):
			same = true
		case !hasCTime && linkOnSizeAndMTime:
			same, unverified = true, true
		default: // no ctime to go by, or it moved (a chmod, or an edit): compare content
			sum, err := hashFile(src)
			same, compared = err == nil && sum == old.SHA256, true
		}
		p := filepath.Join(prev.dir, filepath.FromSlash(mpath))
		if same {
			if sum, err := hashFile(p); err == nil && sum == old.SHA256 {
				if err := os.Link(p, dst); err == nil {
					f = old
					f.CTime, f.LinkUnverified = time.Time{}, unverified
					if hasCTime {
						f.CTime = ctime // read before the content was compared
					}
					return f, true, compared, nil
				}
				// No hard links here (FAT, some shares): copy, so the generation is complete.
			}
		}
	}
	f, err = copyVerified(src, dst)
	if err != nil {
		return File{}, false, compared, err
	}
	f.CopiedAt = g.now().UTC()
	return f, false, compared, nil
}

// copyVerified copies src to a temp file next to dst, hashing what it
// reads, fsyncs and renames it, then reads dst back and compares hashes.
func copyVerified(src, dst string) (File, error) {
	in, err := os.Open(src)
	if err != nil {
		return File{}, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return File{}, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".mamori-*.tmp")
	if err != nil {
		return File{}, err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), in)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return File{}, err
	}
	// Keep the source mtime on the copy so people restoring see real dates.
	if err := os.Chtimes(tmp.Name(), st.ModTime(), st.ModTime()); err != nil {
		return File{}, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return File{}, err
	}
	want := hex.EncodeToString(h.Sum(nil))
	got, err := hashFile(dst)
	if err != nil {
		return File{}, err
	}
	if got != want {
		return File{}, fmt.Errorf("%s: read back sha256 %s, copied %s", dst, got, want)
	}
	f := File{Size: n, MTime: st.ModTime().UTC(), SHA256: want}
	if ct, ok := changeTimeOf(st); ok {
		f.CTime = ct // read before the content: a later edit moves it
	}
	return f, nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeFileSync writes b to p through a temp file, fsync and rename.
func writeFileSync(p string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".mamori-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// prune deletes the oldest good generations beyond keep, except the newest
// one not in bad, the corruption found by a verify pass just made: when the
// newer generations are corrupt it is the last intact copy. The caller runs
// it only after a new good generation exists.
func (g *engine) prune(keep int, bad []Corruption) ([]string, error) {
	gens, err := g.goodGenerations()
	if err != nil {
		return nil, err
	}
	corrupt := map[string]bool{}
	for _, c := range bad {
		corrupt[c.Generation] = true
	}
	intact := -1
	for i := len(gens) - 1; i >= 0 && intact < 0; i-- {
		if !corrupt[gens[i].Name] {
			intact = i
		}
	}
	var gone []string
	for i := 0; i < len(gens)-keep; i++ {
		if i == intact {
			continue
		}
		// Remove the manifest first: a half-deleted generation is then not "good".
		if err := os.Remove(filepath.Join(gens[i].Dir, ManifestName)); err != nil {
			return gone, fmt.Errorf("backup: prune %s: %w", gens[i].Name, err)
		}
		if err := os.RemoveAll(gens[i].Dir); err != nil {
			return gone, fmt.Errorf("backup: prune %s: %w", gens[i].Name, err)
		}
		gone = append(gone, gens[i].Name)
	}
	return gone, nil
}

// Corruption is one generation's failed verification.
type Corruption struct {
	Generation string
	Paths      []string // manifest paths whose content differs or is missing
}

// verify re-hashes every file of every good generation against its
// manifest. manifests maps generation name to the manifest hash recorded
// when it was written; a manifest that no longer matches is corrupt too.
func (g *engine) verify(ctx context.Context, manifests map[string]string) ([]Corruption, int, error) {
	gens, err := g.goodGenerations()
	if err != nil {
		return nil, 0, err
	}
	var out []Corruption
	checked := 0
	for _, gen := range gens {
		m, sum, err := readManifest(gen.Dir)
		if err != nil {
			out = append(out, Corruption{Generation: gen.Name, Paths: []string{ManifestName}})
			continue
		}
		c := Corruption{Generation: gen.Name}
		if want, ok := manifests[gen.Name]; ok && want != sum {
			c.Paths = append(c.Paths, ManifestName)
		}
		for _, f := range m.Files {
			if err := ctx.Err(); err != nil {
				return out, checked, err
			}
			checked++
			got, err := hashFile(filepath.Join(gen.Dir, filepath.FromSlash(f.Path)))
			if err != nil || got != f.SHA256 {
				c.Paths = append(c.Paths, f.Path)
			}
		}
		if len(c.Paths) > 0 {
			out = append(out, c)
		}
	}
	return out, checked, nil
}

// sameDeviceSources lists the sources on the same filesystem (Windows:
// volume) as dest: one disk failure, theft or ransomware run takes the data
// and its backup together. A destination not made yet is judged by the
// nearest folder that exists. Sources that cannot be stat'ed are skipped
// (the run reports them).
func sameDeviceSources(sources []Source, dest string) ([]string, error) {
	d := filepath.Clean(dest)
	for {
		if _, err := os.Stat(d); err == nil {
			break
		}
		up := filepath.Dir(d)
		if up == d {
			return nil, fmt.Errorf("backup: no existing folder above %s", dest)
		}
		d = up
	}
	did, ok := deviceID(d)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, s := range sources {
		if id, ok := deviceID(s.Path); ok && id == did {
			out = append(out, s.Path)
		}
	}
	return out, nil
}
