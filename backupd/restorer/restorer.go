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
// Imports: backend (for its sentinels), chunker (for its sizes), regfile, repository, snapshot and faultpoint. Like all of the engine it
// never imports Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package restorer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// DefaultReadAhead is Options.ReadAhead when it is zero.
const DefaultReadAhead = 16 << 20

// TempPrefix starts the names of files being restored.
const TempPrefix = ".backupd-restore-"

// Options configure a restore.
type Options struct {
	// Workers restore files in parallel: GOMAXPROCS. Decryption,
	// decompression and hashing are CPU work; a file worker waiting for
	// the repository is not, so the file workers are max(Workers, Reads).
	Workers int
	// Reads is the number of ranged pack reads in flight, ahead of the
	// file workers (see ReadAhead), and the least number of file workers:
	// 8 by default, since an object store answers each read after tens of
	// milliseconds and 2 CPUs' worth of readers would leave the link
	// idle. When Workers is set and Reads is not, Reads is Workers
	// (Workers: 1 restores one file at a time).
	Reads int
	// ReadAhead bounds the bytes of pack spans read ahead of the file
	// workers and not yet taken by them (repository.PrefetchOptions.Budget):
	// 16 MiB by default. Each worker then holds only one chunk's
	// plaintext (up to 4 MiB). Negative reads every chunk alone, when its
	// file worker needs it.
	ReadAhead int64
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
	opt = opt.withDefaults()
	return &Restorer{repo: repo, opt: opt, log: opt.Logger.With("component", "restorer")}
}

// Memory is what a restore with these options holds besides the
// repository's index: the read-ahead budget and, for each file worker, one
// chunk's plaintext, counted at the average chunk (a worker's buffer grows
// to the largest chunk it has seen, at most chunker.MaxSize; counting that
// put the small local bench set's restore over restic's peak RSS). A
// command restoring adds it to the process's soft memory limit: against a
// limit sized for the index alone, a restore of the 1 GiB S3 bench set ran
// the garbage collector 200–500 times, with 24 MiB more about 30.
func (o Options) Memory() int64 {
	o = o.withDefaults()
	n := int64(max(o.Workers, o.Reads)) * chunker.AvgSize
	if o.ReadAhead > 0 {
		n += o.ReadAhead
	}
	return n
}

func (opt Options) withDefaults() Options {
	if opt.ReadAhead == 0 {
		opt.ReadAhead = DefaultReadAhead
	}
	if opt.Reads <= 0 {
		opt.Reads = 8
		if opt.Workers > 0 {
			opt.Reads = opt.Workers
		}
	}
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Owner == nil {
		root := os.Geteuid() == 0
		opt.Owner = &root
	}
	return opt
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
	seq  int // the file's number in the plan, or -1
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

	var pl *plan
	if r.opt.ReadAhead >= 0 {
		start := time.Now()
		pl, err = r.newPlan(ctx, sn.Tree)
		if err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
		r.log.Debug("restore planned", "files", pl.total, "took", time.Since(start))
	}
	g, gctx := errgroup.WithContext(ctx)
	if pl != nil {
		// Closed after the workers are done (g.Wait), before Restore
		// returns: no read outlives the restore.
		pl.pf.Start(gctx)
		defer func() {
			pl.pf.Close()
			st := pl.pf.Stats()
			r.log.Debug("restore reads", "spans", st.Spans, "span_bytes", st.SpanBytes, "alone", st.Alone,
				"failed_spans", st.Failed, "peak_bytes", st.PeakBytes)
		}()
	}
	workers := max(r.opt.Workers, r.opt.Reads)
	tasks := make(chan fileTask, workers*4)
	for range workers {
		g.Go(func() error {
			var buf []byte
			for t := range tasks {
				var err error
				buf, err = r.restoreFile(gctx, pl, t, buf)
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
		return r.walk(gctx, top, sn.Tree, ".", pl, pl.tree(sn.Tree), tasks, fail)
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

// walk creates directories and symlinks in dir and queues its files. A
// tree that cannot be loaded, damaged or missing, fails its directory only:
// the rest of the snapshot is restored.
//
// planned says the plan numbered the files under treeID (pl is then not
// nil): walk gives them the same numbers, in the same order.
func (r *Restorer) walk(ctx context.Context, dir *dirRoot, treeID repository.ID, rel string, pl *plan, planned bool, tasks chan<- fileTask, fail func(string, error)) error {
	tree, err := snapshot.LoadTree(ctx, r.repo, treeID)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if planned {
			pl.skip(treeID)
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
				if planned {
					pl.skip(*n.Subtree)
				}
				fail(p, err)
				continue
			}
			sub, err := dir.OpenRoot(n.Name)
			if err != nil {
				if planned {
					pl.skip(*n.Subtree)
				}
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
			err = r.walk(ctx, d, *n.Subtree, p, pl, planned && pl.tree(*n.Subtree), tasks, fail)
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
			seq := -1
			if planned {
				seq = pl.number()
			}
			dir.acquire()
			select {
			case tasks <- fileTask{rel: p, name: n.Name, dir: dir, node: n, seq: seq}:
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
