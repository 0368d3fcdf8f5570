package archiver

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

type entry struct {
	node snapshot.Node // ready nodes (symlinks, unchanged files, dirs once done)
	file *fileResult
	dir  *dirResult
}

func baseNode(e *entryInfo) snapshot.Node {
	return snapshot.Node{
		Name: e.name, Mode: e.mode, UID: e.uid, GID: e.gid,
		MtimeNS: e.mtimeNS, CtimeNS: e.ctimeNS, Inode: e.inode,
	}
}

// walker is the walk of one backup: it takes the scan's listings in order,
// queues changed files for the file workers and starts, in g, the
// goroutines that assemble the trees.
type walker struct {
	a     *Archiver
	g     *errgroup.Group
	scan  *sourceScan
	files chan<- *fileJob
}

// walkDir walks one directory's listing: it queues its changed files,
// recurses into subdirectories (or reuses a parent subtree whose scan
// digest is unchanged), and starts the goroutine that assembles its tree.
// parent is the directory's tree in the parent snapshot and parentID its
// id, both nil if it had none.
//
// Rotation note: each name is stored with the file the scan listed under
// it. A log rotated after the listing (access.log renamed access.log.1, a
// new access.log created) is read under its new name and stored as
// access.log, the older rotations likewise (worker.openRenamed); a name
// the scan did not list waits for the next backup. So no line written
// before the backup started is lost, and the snapshot is the directory as
// listed (docs/DESIGN.md §8 scenario 11).
func (w *walker) walkDir(ctx context.Context, l *listing, parent *snapshot.Tree, parentID *repository.ID) (*dirResult, error) {
	defer l.dir.release() // each file job holds its own reference
	// The walk's own CPU (comparing a directory's entries with the parent
	// and the scan that stays a bounded look-ahead in front of it) counts
	// against the budget, not only the file reads.
	if err := w.a.budget.Wait(ctx); err != nil {
		return nil, err
	}
	w.a.Stats.Dirs.Add(1)
	if l.err != nil {
		w.a.warn(l.path, l.err)
	}
	prev := newParentDir(parent)
	var entries []entry
	for i := range l.entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, ok, err := w.walkEntry(ctx, l, &l.entries[i], prev)
		if err != nil {
			return nil, err
		}
		if ok {
			entries = append(entries, e)
		}
	}
	res := &dirResult{done: make(chan struct{})}
	w.g.Go(func() error { return w.a.finishDir(ctx, w.scan, l, res, entries, parent, parentID) })
	return res, nil
}

// walkEntry turns one entry of the directory listed in l into an entry of
// its tree; ok is false for an entry the tree leaves out (unreadable, gone,
// or not data).
func (w *walker) walkEntry(ctx context.Context, l *listing, ce *entryInfo, prev *parentDir) (e entry, ok bool, err error) {
	p := filepath.Join(l.path, ce.name)
	if ce.err != nil {
		if !errors.Is(ce.err, fs.ErrNotExist) {
			w.a.warn(p, ce.err)
		}
		w.a.Stats.FilesSkipped.Add(1)
		return entry{}, false, nil
	}
	pn := prev.named(ce.name)
	switch mode := ce.mode; {
	case mode.IsDir():
		e, err = w.subdir(ctx, p, ce, pn)
	case mode&fs.ModeSymlink != 0:
		e = symlinkEntry(ce)
	case mode.IsRegular():
		e, err = w.regularFile(ctx, l.dir, p, ce, pn, prev)
	default:
		// Sockets, FIFOs and devices are not data: skipped and counted.
		w.a.Stats.FilesSkipped.Add(1)
		return entry{}, false, nil
	}
	return e, err == nil, err
}

// parentDir is a directory's tree in the parent snapshot, looked up by
// name and, for renamed files, by inode.
type parentDir struct {
	tree    *snapshot.Tree // nil if the directory had none
	byName  map[string]*snapshot.Node
	byInode map[uint64]*snapshot.Node // built when first needed
}

func newParentDir(tree *snapshot.Tree) *parentDir {
	d := &parentDir{tree: tree, byName: map[string]*snapshot.Node{}}
	if tree != nil {
		for i := range tree.Nodes {
			d.byName[tree.Nodes[i].Name] = &tree.Nodes[i]
		}
	}
	return d
}

// named returns the parent's node of this name, or nil.
func (d *parentDir) named(name string) *snapshot.Node { return d.byName[name] }

// movedFrom returns the parent's file node with content and this inode, or
// nil.
func (d *parentDir) movedFrom(inode uint64) *snapshot.Node {
	if d.byInode == nil && d.tree != nil {
		d.byInode = make(map[uint64]*snapshot.Node)
		for i := range d.tree.Nodes {
			if n := &d.tree.Nodes[i]; n.Type == snapshot.TypeFile && len(n.Content) > 0 {
				d.byInode[n.Inode] = n
			}
		}
	}
	return d.byInode[inode]
}

// subdir walks the subdirectory at p, whose node in the parent is pn (nil
// if none), or reuses the parent's subtree by its scan digest.
func (w *walker) subdir(ctx context.Context, p string, ce *entryInfo, pn *snapshot.Node) (entry, error) {
	cl, err := w.scan.next(ctx, p)
	if err != nil {
		return entry{}, err
	}
	if res, ok, err := w.a.reuseSubtree(ctx, w.scan, cl, pn); err != nil {
		return entry{}, err
	} else if ok {
		cl.dir.release()
		return entry{node: baseNode(ce), dir: res}, nil
	}
	sub, subID := w.a.parentSubtree(ctx, p, pn)
	res, err := w.walkDir(ctx, cl, sub, subID)
	if err != nil {
		return entry{}, err
	}
	return entry{node: baseNode(ce), dir: res}, nil
}

// parentSubtree loads the parent's tree of the directory at p, whose node
// in the parent is pn. It returns nils if there is none or it cannot be
// read (then every file below is read again).
func (a *Archiver) parentSubtree(ctx context.Context, p string, pn *snapshot.Node) (*snapshot.Tree, *repository.ID) {
	if pn == nil || pn.Type != snapshot.TypeDir || pn.Subtree == nil {
		return nil, nil
	}
	sub, err := snapshot.LoadTree(ctx, a.repo, *pn.Subtree)
	if err != nil {
		a.log.Warn("parent subtree unreadable; reading its files again", "path", p, "err", err)
		return nil, nil
	}
	return sub, pn.Subtree
}

func symlinkEntry(ce *entryInfo) entry {
	n := baseNode(ce)
	n.Type, n.Target = snapshot.TypeSymlink, ce.target
	return entry{node: n}
}

// regularFile reuses the parent's node of an unchanged file and queues any
// other file for the file workers, to be opened in the directory d.
func (w *walker) regularFile(ctx context.Context, d *dirHandle, p string, ce *entryInfo, pn *snapshot.Node, prev *parentDir) (entry, error) {
	a := w.a
	a.Stats.BytesTotal.Add(uint64(ce.size))
	same := pn != nil && a.unchanged(pn, ce)
	if same && !a.dueForFullRead(pn) {
		a.Stats.FilesUnchanged.Add(1)
		return entry{node: keptNode(pn, ce)}, nil
	}
	job := newFileJob(p, ce, pn, same, prev)
	job.dir = d.acquire()
	select {
	case w.files <- job:
	case <-ctx.Done():
		job.dir.release()
		return entry{}, ctx.Err()
	}
	return entry{file: job.res}, nil
}

// dueForFullRead reports whether an unchanged file must be read anyway. An
// append-only file whose content was partly taken unread (TailRuns > 0,
// whatever the patterns say now) counts backups towards its full read even
// when it no longer changes: an edit in place made while it grew is caught
// within FullReadEvery backups.
func (a *Archiver) dueForFullRead(pn *snapshot.Node) bool {
	return pn.TailRuns > 0 && pn.TailRuns+1 >= a.opt.FullReadEvery
}

// keptNode is the parent's node pn of an unchanged file with the entry's
// current owner and mode, one more backup counted towards its full read
// if it was partly taken unread.
func keptNode(pn *snapshot.Node, ce *entryInfo) snapshot.Node {
	n := *pn
	n.Mode, n.UID, n.GID = ce.mode, ce.uid, ce.gid
	if pn.TailRuns > 0 {
		n.TailRuns++
	}
	return n
}

// newFileJob is the job of reading the file at p. pn is the parent's node
// of its name (nil if none); verify says the file is unchanged but due for
// its full read.
func newFileJob(p string, ce *entryInfo, pn *snapshot.Node, verify bool, prev *parentDir) *fileJob {
	if pn != nil && pn.Type != snapshot.TypeFile {
		pn = nil
	}
	job := &fileJob{path: p, name: ce.name, inode: ce.inode, size: ce.size, mtimeNS: ce.mtimeNS, parent: pn, known: pn != nil, verify: verify, res: &fileResult{done: make(chan struct{})}}
	// A file renamed within the directory (a rotated log) is compared
	// with its old node, chunk by chunk.
	if pn == nil || pn.Inode != ce.inode {
		if m := prev.movedFrom(ce.inode); m != nil && m.Size <= uint64(ce.size) {
			job.parent, job.moved = m, true
		}
	}
	return job
}

// fanOut is the number of subdirectories from which the walk does not
// wait for a directory's digest: such a directory is cheap to walk itself
// (one tree), its subdirectories' digests decide at a finer grain, and
// waiting would hold the walk, and the reading of changed files, until the
// scan had finished everything below it.
const fanOut = 8

func subdirCount(l *listing) int {
	n := 0
	for i := range l.entries {
		if l.entries[i].err == nil && l.entries[i].isRegularDir {
			n++
		}
	}
	return n
}

// reuseSubtree reuses the parent's subtree for the directory listed in l
// when its scan digest equals the one recorded for it, and skips the
// listings below it. Invariant: a recorded digest describes the scan its
// subtree was built from, and every file below was then unchanged by
// restic's rule or read again, so equal digests mean an equal subtree.
func (a *Archiver) reuseSubtree(ctx context.Context, scan *sourceScan, l *listing, pn *snapshot.Node) (*dirResult, bool, error) {
	if !a.reuseByDigest || pn == nil || pn.Type != snapshot.TypeDir || pn.Subtree == nil || pn.Digest == nil {
		return nil, false, nil
	}
	sum := l.sum.Load()
	if sum == nil && subdirCount(l) < fanOut {
		var err error
		if sum, err = scan.waitSum(ctx, l, scan.starved); err != nil {
			return nil, false, err
		}
	}
	if sum == nil || !sum.ok || sum.digest != *pn.Digest || !a.repo.Index().Has(*pn.Subtree) {
		return nil, false, nil
	}
	if err := scan.skip(ctx, sum.dirs-1); err != nil {
		return nil, false, err
	}
	a.Stats.Dirs.Add(sum.dirs)
	a.Stats.DirsReused.Add(sum.dirs)
	a.Stats.FilesUnchanged.Add(sum.files)
	a.Stats.FilesSkipped.Add(sum.skipped)
	a.Stats.BytesTotal.Add(sum.bytes)
	res := &dirResult{done: make(chan struct{}), id: *pn.Subtree, digest: pn.Digest}
	close(res.done)
	return res, true, nil
}

func (a *Archiver) warn(path string, err error) {
	a.Stats.Errors.Add(1)
	a.log.Warn("skipping unreadable entry", "path", path, "err", err)
}

// unchanged applies restic's rule (snapshot.SameMetadata: same inode,
// size, mtime and ctime) and checks that every chunk is still indexed.
func (a *Archiver) unchanged(pn *snapshot.Node, e *entryInfo) bool {
	if !snapshot.SameMetadata(*pn, e.fileMeta()) {
		return false
	}
	for _, id := range pn.Content {
		if !a.repo.Index().Has(id) {
			return false
		}
	}
	return true
}

// fileMeta is what snapshot.SameMetadata compares.
func (e *entryInfo) fileMeta() snapshot.FileMeta {
	return snapshot.FileMeta{Inode: e.inode, Size: e.size, MtimeNS: e.mtimeNS, CtimeNS: e.ctimeNS}
}
