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

// walkDir walks one directory's listing: it queues its changed files,
// recurses into subdirectories (or reuses a parent subtree whose scan
// digest is unchanged), and starts the goroutine that assembles its tree.
// parent is the directory's tree in the parent snapshot and parentID its
// id, both nil if it had none.
func (a *Archiver) walkDir(ctx context.Context, g *errgroup.Group, scan *sourceScan, files chan<- *fileJob, l *listing, parent *snapshot.Tree, parentID *repository.ID) (*dirResult, error) {
	a.Stats.Dirs.Add(1)
	path := l.path
	if l.err != nil {
		a.warn(path, l.err)
	}
	old := map[string]*snapshot.Node{}
	if parent != nil {
		for i := range parent.Nodes {
			old[parent.Nodes[i].Name] = &parent.Nodes[i]
		}
	}
	var byInode map[uint64]*snapshot.Node // built when first needed
	movedFrom := func(inode uint64) *snapshot.Node {
		if byInode == nil && parent != nil {
			byInode = make(map[uint64]*snapshot.Node)
			for i := range parent.Nodes {
				if n := &parent.Nodes[i]; n.Type == snapshot.TypeFile && len(n.Content) > 0 {
					byInode[n.Inode] = n
				}
			}
		}
		return byInode[inode]
	}
	var entries []entry
	for i := range l.entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ce := &l.entries[i]
		name := ce.name
		p := filepath.Join(path, name)
		if ce.err != nil {
			if !errors.Is(ce.err, fs.ErrNotExist) {
				a.warn(p, ce.err)
			}
			a.Stats.FilesSkipped.Add(1)
			continue
		}
		pn := old[name]
		switch mode := ce.mode; {
		case mode.IsDir():
			cl, err := scan.next(ctx, p)
			if err != nil {
				return nil, err
			}
			if res, ok, err := a.reuseSubtree(ctx, scan, cl, pn); err != nil {
				return nil, err
			} else if ok {
				entries = append(entries, entry{node: baseNode(ce), dir: res})
				continue
			}
			var sub *snapshot.Tree
			var subID *repository.ID
			if pn != nil && pn.Type == snapshot.TypeDir && pn.Subtree != nil {
				sub, err = snapshot.LoadTree(ctx, a.repo, *pn.Subtree)
				if err != nil {
					a.log.Warn("parent subtree unreadable; reading its files again", "path", p, "err", err)
					sub = nil
				} else {
					subID = pn.Subtree
				}
			}
			res, err := a.walkDir(ctx, g, scan, files, cl, sub, subID)
			if err != nil {
				return nil, err
			}
			entries = append(entries, entry{node: baseNode(ce), dir: res})
		case mode&fs.ModeSymlink != 0:
			n := baseNode(ce)
			n.Type, n.Target = snapshot.TypeSymlink, ce.target
			entries = append(entries, entry{node: n})
		case mode.IsRegular():
			a.Stats.BytesTotal.Add(uint64(ce.size))
			// An append-only file whose content was partly taken unread
			// (TailRuns > 0) counts backups towards its full read even
			// when it no longer changes: an edit in place made while it
			// grew is caught within FullReadEvery backups.
			partly := pn != nil && pn.TailRuns > 0 // whatever the patterns say now
			same := pn != nil && a.unchanged(pn, ce)
			if same && !(partly && pn.TailRuns+1 >= a.opt.FullReadEvery) {
				n := *pn
				n.Mode, n.UID, n.GID = ce.mode, ce.uid, ce.gid
				if partly {
					n.TailRuns++
				}
				a.Stats.FilesUnchanged.Add(1)
				entries = append(entries, entry{node: n})
				continue
			}
			if pn != nil && pn.Type != snapshot.TypeFile {
				pn = nil
			}
			job := &fileJob{path: p, name: name, parent: pn, known: pn != nil, verify: same}
			// A file renamed within the directory (a rotated log) is
			// compared with its old node, chunk by chunk.
			if pn == nil || pn.Inode != ce.inode {
				if m := movedFrom(ce.inode); m != nil && m.Size <= uint64(ce.size) {
					job.parent, job.moved = m, true
				}
			}
			res := &fileResult{done: make(chan struct{})}
			job.res = res
			select {
			case files <- job:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			entries = append(entries, entry{file: res})
		default:
			// Sockets, FIFOs and devices are not data: skipped and counted.
			a.Stats.FilesSkipped.Add(1)
		}
	}
	res := &dirResult{done: make(chan struct{})}
	g.Go(func() error { return a.finishDir(ctx, scan, l, res, entries, parent, parentID) })
	return res, nil
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

// Rotation note: names are read in sorted order, so access.log is read
// before access.log.1. If the log rotates between the two reads, the bytes
// that moved are read from access.log.1; if it rotates before both, each is
// read whole. Either way no line written before the backup started is lost
// from the pair (DESIGN §8 scenario 11).

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
