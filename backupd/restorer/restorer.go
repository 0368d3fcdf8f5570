// Package restorer writes a snapshot's tree into a target directory.
//
// Guarantees (docs/DESIGN.md §3.4 and §3.5):
//   - nothing is written outside the target: every operation goes through an
//     os.Root opened on the target, and tree entry names with separators,
//     "." or ".." are refused when trees are decoded;
//   - each file is written to a temporary name in its directory, every
//     chunk is authenticated and checked against its id, the file's content
//     hash is checked, and only then is it renamed to its final name;
//   - a rerun is idempotent: files already restored (same size and mtime,
//     content re-hashed and proved) are kept, leftovers of an interrupted
//     run are removed.
//
// Not guaranteed: restored files are not fsynced (a power loss may lose
// them; rerun the restore); files in the target that the snapshot does not
// hold are left alone unless Options.Delete is set.
//
// Imports: backend (for its sentinels), repository, snapshot and faultpoint. Like all of the engine it
// never imports Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package restorer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// TempPrefix starts the names of files being restored.
const TempPrefix = ".backupd-restore-"

// markerPrefix starts the name of the marker that sits beside a target this
// restore created, until the restore has finished with it: a rerun after an
// interruption knows the target is its own and still gives it the source
// directory's metadata. It is kept outside the target, in the directory the
// restore created the target in, so no entry of a snapshot can be mistaken
// for it (a snapshot may hold any name, ".backupd-restoring" too).
const markerPrefix = ".backupd-restoring."

// MarkerPath returns the path of the marker of an unfinished restore into
// target: beside it, never inside.
func MarkerPath(target string) string {
	t := filepath.Clean(target)
	return filepath.Join(filepath.Dir(t), markerPrefix+filepath.Base(t))
}

// Options configure a restore.
type Options struct {
	// Workers restore files in parallel: GOMAXPROCS.
	Workers int
	// Delete removes target entries the snapshot does not hold.
	Delete bool
	// Owner restores uid/gid; on by default when running as root.
	Owner *bool
	// KeepTargetMeta leaves the target directory's own mode, owner and
	// times alone (drills restore into private scratch space, which must
	// stay private). Otherwise the target takes the source directory's
	// when the restore made it, or it was empty (see Restore).
	KeepTargetMeta bool
	Logger         *slog.Logger
	Faults         *faultpoint.Set
}

// Stats count what a restore did.
type Stats struct {
	Files, Dirs, Symlinks, Skipped, Unchanged, Failed, Bytes atomic.Uint64
}

// FileError names a file that could not be restored.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("%s: %v", e.Path, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// Result is the outcome of a restore: Failed lists the files that could
// not be restored (corrupt data among them); the rest of the tree is.
type Result struct {
	Failed []*FileError
}

// Err returns nil when every file was restored.
func (r *Result) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	errs := make([]error, 0, len(r.Failed))
	for _, f := range r.Failed {
		errs = append(errs, f)
	}
	return fmt.Errorf("%d files not restored: %w", len(r.Failed), errors.Join(errs...))
}

// Corrupt reports whether any failure was damaged repository data: corrupt,
// or missing (a pack the index names is gone).
func (r *Result) Corrupt() bool {
	for _, f := range r.Failed {
		if errors.Is(f.Err, repository.ErrCorrupt) || errors.Is(f.Err, backend.ErrNotFound) {
			return true
		}
	}
	return false
}

// Restorer restores snapshots of one repository.
type Restorer struct {
	repo  *repository.Repo
	opt   Options
	log   *slog.Logger
	Stats Stats
}

// New returns a restorer.
func New(repo *repository.Repo, opt Options) *Restorer {
	if opt.Workers == 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Owner == nil {
		root := os.Geteuid() == 0
		opt.Owner = &root
	}
	return &Restorer{repo: repo, opt: opt, log: opt.Logger.With("component", "restorer")}
}

// dirRoot is an open directory of the target, shared by the tasks of its
// files and closed when the last one is done. Working relative to it keeps
// every operation to a single path component: as traversal-safe as the
// target's root, without re-walking the path for each call.
//
// Invariant: a directory's own metadata is set through its own handle, once
// nothing is left to restore in it (done), so the cost does not grow with
// its depth, and a mode that forbids writing (0555) is set after its
// entries are written.
type dirRoot struct {
	*os.Root
	refs atomic.Int64
	own  bool // closed by release (the target root is closed by Restore)
	// done, if set, runs once, when the last reference is released: the
	// walk has listed the directory and its files are restored.
	done func(*os.Root)
}

func (d *dirRoot) acquire() { d.refs.Add(1) }

func (d *dirRoot) release() {
	if d.refs.Add(-1) != 0 {
		return
	}
	if d.done != nil {
		d.done(d.Root)
	}
	if d.own {
		_ = d.Close()
	}
}

type fileTask struct {
	rel  string // path in the target, for messages
	name string
	dir  *dirRoot
	node snapshot.Node
}

// Restore writes the tree of sn into target, creating target if needed.
// When the snapshot records the source directory's own mode, owner and
// mtime (those made since 2026-12-01 do), target takes them last if this
// restore created it (or an interrupted run of it did), or if it was an
// empty directory (lost+found aside: a new file system) that is neither
// sticky nor writable by everyone. A target that held anything else (a
// home directory, /tmp) keeps its own.
// Per-file failures are collected in the Result; the returned error is for
// failures that stop the whole restore.
func (r *Restorer) Restore(ctx context.Context, sn *snapshot.Snapshot, target string) (*Result, error) {
	_, statErr := os.Lstat(target)
	created := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, fmt.Errorf("restore: create target %s: %w", target, err)
	}
	root, err := os.OpenRoot(target)
	if err != nil {
		return nil, fmt.Errorf("restore: open target %s: %w", target, err)
	}
	defer root.Close()
	marker := MarkerPath(target)
	targetMeta := sn.Root != nil && !r.opt.KeepTargetMeta && r.targetIsOurs(root, created, marker)
	if targetMeta && created {
		if f, err := os.OpenFile(marker, os.O_CREATE|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600); err == nil {
			_ = f.Close()
		}
	}
	res := &Result{}
	var mu sync.Mutex
	fail := func(rel string, err error) {
		r.Stats.Failed.Add(1)
		mu.Lock()
		res.Failed = append(res.Failed, &FileError{Path: rel, Err: err})
		mu.Unlock()
		r.log.Warn("file not restored", "path", rel, "err", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	tasks := make(chan fileTask, r.opt.Workers*4)
	for range r.opt.Workers {
		g.Go(func() error {
			var buf []byte
			for t := range tasks {
				var err error
				buf, err = r.restoreFile(gctx, t, buf)
				t.dir.release()
				if err != nil {
					if gctx.Err() != nil {
						return gctx.Err()
					}
					fail(t.rel, err)
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(tasks)
		top := &dirRoot{Root: root}
		top.acquire()
		defer top.release()
		return r.walk(gctx, top, sn.Tree, ".", tasks, fail)
	})
	err = g.Wait()
	// Tasks never taken (the restore stopped early) still hold their
	// directories open.
	for t := range tasks {
		t.dir.release()
	}
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	// The target itself, last. Not owning it (an empty mount point made
	// by someone else) is not a file that failed.
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	if targetMeta {
		if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("could not remove the restore's marker beside the target", "marker", marker, "err", err)
		}
		if err := r.setMeta(root, ".", sn.Root.Node()); errors.Is(err, fs.ErrPermission) {
			r.log.Warn("target directory's mode and times not set", "target", target, "err", err)
		} else if err != nil {
			fail(".", err)
		}
	}
	return res, nil
}

// targetIsOurs reports whether the target may take the source directory's
// metadata: this restore created it, an interrupted run of it did (the
// marker is beside it), or it is an empty directory (or holds only an empty
// lost+found) that is not sticky or writable by everyone.
func (r *Restorer) targetIsOurs(root *os.Root, created bool, marker string) bool {
	if created {
		return true
	}
	if fi, err := os.Lstat(marker); err == nil && fi.Mode().IsRegular() {
		return true
	}
	fi, err := root.Stat(".")
	if err != nil || fi.Mode()&fs.ModeSticky != 0 || fi.Mode().Perm()&0o002 != 0 {
		return false
	}
	d, err := root.Open(".")
	if err != nil {
		return false
	}
	names, err := d.Readdirnames(-1)
	_ = d.Close()
	if err != nil {
		return false
	}
	for _, name := range names {
		if name != "lost+found" {
			return false
		}
		lf, err := root.Open(name)
		if err != nil {
			return false
		}
		inside, err := lf.Readdirnames(1)
		_ = lf.Close()
		if len(inside) > 0 || err != nil && !errors.Is(err, io.EOF) {
			return false
		}
	}
	return true
}

// walk creates directories and symlinks in dir and queues its files. A
// tree that cannot be loaded, damaged or missing, fails its directory only:
// the rest of the snapshot is restored.
func (r *Restorer) walk(ctx context.Context, dir *dirRoot, treeID repository.ID, rel string, tasks chan<- fileTask, fail func(string, error)) error {
	tree, err := snapshot.LoadTree(ctx, r.repo, treeID)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fail(rel, fmt.Errorf("directory not restored: %w", err))
		return nil
	}
	want := make(map[string]bool, len(tree.Nodes))
	for _, n := range tree.Nodes {
		want[n.Name] = true
	}
	if err := r.cleanDir(dir.Root, rel, want); err != nil {
		return err
	}
	for _, n := range tree.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Names were validated by DecodeTree (no separators, no "." or
		// ".."), and every operation goes through an os.Root.
		p := path.Join(rel, n.Name)
		switch n.Type {
		case snapshot.TypeDir:
			if err := r.mkdir(dir.Root, n.Name); err != nil {
				fail(p, err)
				continue
			}
			sub, err := dir.OpenRoot(n.Name)
			if err != nil {
				fail(p, err)
				continue
			}
			r.Stats.Dirs.Add(1)
			d := &dirRoot{Root: sub, own: true, done: func(sub *os.Root) {
				if ctx.Err() != nil {
					return // stopped: a rerun sets it
				}
				if err := r.setMeta(sub, ".", n); err != nil {
					fail(p, err)
				}
			}}
			d.acquire()
			err = r.walk(ctx, d, *n.Subtree, p, tasks, fail)
			d.release()
			if err != nil {
				return err
			}
		case snapshot.TypeSymlink:
			if err := r.symlink(dir.Root, n.Name, n); err != nil {
				fail(p, err)
				continue
			}
			r.Stats.Symlinks.Add(1)
		case snapshot.TypeFile:
			dir.acquire()
			select {
			case tasks <- fileTask{rel: p, name: n.Name, dir: dir, node: n}:
			case <-ctx.Done():
				dir.release()
				return ctx.Err()
			}
		default:
			r.Stats.Skipped.Add(1)
		}
	}
	return nil
}

// cleanDir removes leftovers of an interrupted restore and, with Delete,
// entries the snapshot does not hold.
func (r *Restorer) cleanDir(dir *os.Root, rel string, want map[string]bool) error {
	d, err := dir.Open(".")
	if err != nil {
		return fmt.Errorf("open %s: %w", rel, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("list %s: %w", rel, err)
	}
	for _, name := range names {
		// Invariant: an entry the snapshot holds is never removed here,
		// whatever its name.
		if want[name] {
			continue
		}
		if strings.HasPrefix(name, TempPrefix) || r.opt.Delete {
			if err := dir.RemoveAll(name); err != nil {
				return fmt.Errorf("remove %s: %w", path.Join(rel, name), err)
			}
		}
	}
	return nil
}

// mkdir makes the directory name in dir, or takes the one there, which it
// makes writable and searchable for its owner until the directory's own
// metadata is set at the end: a rerun of a restore whose earlier run set a
// directory to 0555 must still be able to write into it.
func (r *Restorer) mkdir(dir *os.Root, name string) error {
	fi, err := dir.Lstat(name)
	if err == nil {
		if fi.IsDir() {
			if fi.Mode().Perm()&0o700 != 0o700 {
				// Not owning it is no reason to give up: group or other
				// permissions may still let the restore in.
				_ = dir.Chmod(name, fi.Mode().Perm()|0o700)
			}
			return nil
		}
		if err := dir.RemoveAll(name); err != nil {
			return err
		}
	}
	return dir.Mkdir(name, 0o700)
}

func (r *Restorer) symlink(dir *os.Root, name string, n snapshot.Node) error {
	if cur, err := dir.Readlink(name); err == nil && cur == n.Target {
		return r.setOwner(dir, name, n, true)
	}
	if _, err := dir.Lstat(name); err == nil {
		if err := dir.RemoveAll(name); err != nil {
			return err
		}
	}
	if err := dir.Symlink(n.Target, name); err != nil {
		return err
	}
	return r.setOwner(dir, name, n, true)
}

func (r *Restorer) setOwner(dir *os.Root, name string, n snapshot.Node, link bool) error {
	if !*r.opt.Owner {
		return nil
	}
	if link {
		return dir.Lchown(name, int(n.UID), int(n.GID))
	}
	return dir.Chown(name, int(n.UID), int(n.GID))
}

func fileMode(n snapshot.Node) fs.FileMode {
	return n.Mode.Perm() | n.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
}

func (r *Restorer) setMeta(dir *os.Root, name string, n snapshot.Node) error {
	if err := r.setOwner(dir, name, n, false); err != nil {
		return err
	}
	if err := dir.Chmod(name, fileMode(n)); err != nil {
		return err
	}
	mt := time.Unix(0, n.MtimeNS)
	return dir.Chtimes(name, mt, mt)
}

// restoreFile restores one file through a temp name in its directory. buf
// is reused across calls.
func (r *Restorer) restoreFile(ctx context.Context, t fileTask, buf []byte) ([]byte, error) {
	n := t.node
	dir := t.dir.Root
	if ok, err := r.alreadyRestored(ctx, t, &buf); err != nil {
		return buf, err
	} else if ok {
		r.Stats.Unchanged.Add(1)
		return buf, nil
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := TempPrefix + hex.EncodeToString(rnd[:]) + "-" + truncate(t.name, 100)
	f, err := dir.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return buf, err
	}
	// Invariant: the temp file never survives a failed restore of this file.
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = dir.Remove(tmp)
		}
	}()
	var written int64
	for i, id := range n.Content {
		buf, err = r.repo.LoadBlob(ctx, repository.DataBlob, id, buf)
		if err != nil {
			return buf, fmt.Errorf("chunk %d: %w", i, err)
		}
		if _, err := f.Write(buf); err != nil {
			return buf, err
		}
		written += int64(len(buf))
		if i == 0 {
			r.opt.Faults.Hit(faultpoint.RestoreMidFile)
		}
	}
	if written != int64(n.Size) {
		return buf, fmt.Errorf("restored %d bytes, snapshot records %d", written, n.Size)
	}
	// Every chunk matched its id (LoadBlob); the id list must match the
	// recorded content hash.
	if snapshot.ContentHash(n.Content) != *n.Hash {
		return buf, fmt.Errorf("%w: content hash does not match the recorded hash", repository.ErrCorrupt)
	}
	if *r.opt.Owner {
		if err := f.Chown(int(n.UID), int(n.GID)); err != nil {
			return buf, err
		}
	}
	if err := f.Chmod(fileMode(n)); err != nil {
		return buf, err
	}
	if err := f.Close(); err != nil {
		return buf, err
	}
	mt := time.Unix(0, n.MtimeNS)
	if err := dir.Chtimes(tmp, mt, mt); err != nil {
		return buf, err
	}
	if fi, err := dir.Lstat(t.name); err == nil && fi.IsDir() {
		if err := dir.RemoveAll(t.name); err != nil {
			return buf, err
		}
	}
	if err := dir.Rename(tmp, t.name); err != nil {
		return buf, err
	}
	ok = true
	r.Stats.Files.Add(1)
	r.Stats.Bytes.Add(uint64(written))
	return buf, nil
}

// alreadyRestored reports whether the target already holds this exact file
// (from an interrupted earlier run): same size and mtime, and every chunk
// re-hashed from disk matches.
func (r *Restorer) alreadyRestored(ctx context.Context, t fileTask, buf *[]byte) (bool, error) {
	dir := t.dir.Root
	fi, err := dir.Lstat(t.name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(t.node.Size) || fi.ModTime().UnixNano() != t.node.MtimeNS {
		return false, nil
	}
	f, err := dir.OpenFile(t.name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	ok, err := snapshot.VerifyFile(ctx, r.repo, f, t.node, buf)
	if err != nil || !ok {
		return false, nil
	}
	if err := r.setMeta(dir, t.name, t.node); err != nil {
		return false, err
	}
	return true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
