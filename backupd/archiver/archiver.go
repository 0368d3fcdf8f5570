// Package archiver backs up a directory tree into a repository.
//
// Pipeline (docs/DESIGN.md §3.3): a scanner goroutine lists directories and stats
// their entries and sums each directory up in a digest (see sourceScan); one
// walker goroutine takes the
// listings in order and decides, per file, from the parent snapshot whether
// it is unchanged, and reuses the parent's tree of a directory whose
// entries are all unchanged; file workers
// read and chunk changed files and hash the chunks; savers compress, encrypt
// and append new chunks to packs; one goroutine per directory assembles its
// tree once its entries are done. Memory is bounded by the workers' chunk
// windows and the saver queue, not by the data size.
//
// Not guaranteed: a file that changes while it is read is stored as read
// (each file is internally consistent only if its writer replaces it via
// rename or only appends); hard links are stored as separate files; extended
// attributes are not stored; a blob already in the repository is not read
// back, so a damaged one (a data chunk that deduplicates, or a subtree taken
// whole by its digest) stays referenced by new snapshots until check finds
// it (every FullWalkEvery'th backup loads every parent tree again, and one
// found unreadable makes that backup read the files below it).
//
// Imports: repository, snapshot, chunker and faultpoint; it reaches storage
// only through repository, never a backend implementation. Like all of the
// engine it never imports Prometheus, collectors/ or exporter/
// (docs/DESIGN.md §2.3).
package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// DefaultAppendOnly are the name patterns whose files are treated as
// append-only logs. Only such files get the tail-only read: a database that
// grows while pages in the middle change (raft.db) must be read whole.
var DefaultAppendOnly = []string{"*.log", "*.jsonl"}

// Options configure a backup.
type Options struct {
	Policy   string
	Hostname string
	// AppendOnly holds filepath.Match patterns on base names.
	AppendOnly []string
	// FullReadEvery: an append-only file whose content was partly taken
	// unread (only its tail was read) is read whole, each old chunk
	// re-hashed, by the Nth backup after its last full read, whether or not
	// it changed since; this bounds how long an in-place edit of its older
	// part can go unnoticed: 10.
	FullReadEvery int
	// FullWalkEvery makes every Nth backup of a policy walk every
	// directory, even those whose scan digest equals the parent's, so that
	// each file is again checked against the index at least that often:
	// 10.
	FullWalkEvery int
	// Workers read and chunk files; Savers compress and encrypt. Both
	// default to GOMAXPROCS.
	Workers int
	Savers  int
	Now     func() time.Time
	Logger  *slog.Logger
	Program string
	// ScanOrphans makes every backup look for packs no index lists, not
	// only one that found a dead backup's lock.
	ScanOrphans bool
	// AllowEmptySource accepts an empty source directory whose previous
	// snapshot was not empty. Off by default: that is what an unmounted
	// volume looks like, and retention would then forget the real data.
	AllowEmptySource bool
}

func (o *Options) applyDefaults() {
	if o.AppendOnly == nil {
		o.AppendOnly = DefaultAppendOnly
	}
	if o.FullReadEvery == 0 {
		o.FullReadEvery = 10
	}
	if o.FullWalkEvery == 0 {
		o.FullWalkEvery = 10
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Savers == 0 {
		o.Savers = runtime.GOMAXPROCS(0)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
}

// Stats are live counters of a running backup.
type Stats struct {
	FilesNew, FilesChanged, FilesUnchanged, FilesSkipped, Dirs, Errors atomic.Uint64
	BytesTotal, BytesRead, BytesWritten, BlobsWritten                  atomic.Uint64
	// DirsReused counts directories (with everything below) taken from
	// the parent by their scan digest, without a walk.
	DirsReused atomic.Uint64
	// SilentChanges counts files whose metadata had not changed but whose
	// content, re-read in full because part of it had been taken unread
	// (an append-only file's periodic full read), no longer matched: an
	// edit in place made while the file grew, or bit rot. The content is
	// stored as found; the earlier version stays in older snapshots.
	SilentChanges atomic.Uint64
}

// ErrEmptySource refuses a backup of an empty source whose previous snapshot
// had data (an unmounted volume looks like this).
var ErrEmptySource = errors.New("the source is empty but its previous snapshot was not (is the volume mounted?); pass --allow-empty-source if this is intended")

// Archiver runs backups into one repository.
type Archiver struct {
	repo  *repository.Repo
	opt   Options
	log   *slog.Logger
	Stats Stats
	// reuseByDigest is set for a backup whose parent allows subtrees to be
	// reused by their scan digest (see Options.FullWalkEvery).
	reuseByDigest bool
}

// New returns an archiver. It does no I/O.
func New(repo *repository.Repo, opt Options) (*Archiver, error) {
	opt.applyDefaults()
	if opt.Policy == "" {
		return nil, errors.New("archiver: policy name is required")
	}
	for _, p := range opt.AppendOnly {
		if _, err := filepath.Match(p, "x"); err != nil {
			return nil, fmt.Errorf("archiver: append-only pattern %q: %w", p, err)
		}
	}
	return &Archiver{repo: repo, opt: opt, log: opt.Logger.With("component", "archiver", "policy", opt.Policy)}, nil
}

type fileResult struct {
	done chan struct{}
	node snapshot.Node
	skip bool
}

type fileJob struct {
	path   string
	name   string
	parent *snapshot.Node // the previous version: same name, or same inode (moved)
	moved  bool           // parent is the node of another name with this inode
	known  bool           // the parent snapshot had a file of this name
	verify bool           // unchanged, but due for its periodic full read
	res    *fileResult
}

type dirResult struct {
	done   chan struct{}
	id     repository.ID
	digest *repository.ID // the directory's scan digest, if its tree is complete
}

type blobJob struct {
	id  repository.ID
	buf []byte
}

// Backup stores a snapshot of the directory source and returns it. It takes
// a shared lock; an overlapping backup of the same policy and source on this
// host fails with ErrOverlap.
func (a *Archiver) Backup(ctx context.Context, source string) (*snapshot.Snapshot, error) {
	scan := prescan(ctx, source, a.opt.Now, scanAhead)
	defer scan.Stop()
	return a.backupScan(ctx, scan)
}

// Scan is a scan of a backup's source started before the repository is
// open: listing and stat'ing the source needs no key, so it can run while
// the key is derived. It reads only metadata and holds at most a bounded
// look-ahead of listings.
type Scan struct{ s *sourceScan }

// StartScan starts scanning the directory source for a backup made with
// BackupScan. The snapshot's time is when the scan starts (now, or
// time.Now if now is nil). The caller must call Stop if it does not hand
// the scan to BackupScan.
func StartScan(ctx context.Context, source string, now func() time.Time) *Scan {
	return &Scan{s: prescan(ctx, source, now, scanAhead)}
}

// Stop stops the scan and waits for it. It may be called more than once.
func (s *Scan) Stop() { s.s.Stop() }

// BackupScan is Backup of a scan started with StartScan, which it stops.
func (a *Archiver) BackupScan(ctx context.Context, scan *Scan) (*snapshot.Snapshot, error) {
	defer scan.Stop()
	return a.backupScan(ctx, scan.s)
}

// backupScan is Backup from a scan already started. The snapshot's time is
// when the scan started.
func (a *Archiver) backupScan(ctx context.Context, scan *sourceScan) (*snapshot.Snapshot, error) {
	start := scan.started
	root, err := scan.rootListing(ctx)
	if err != nil {
		return nil, err
	}
	abs := scan.root
	// An unreadable root is a failed backup, not an empty snapshot.
	if root.err != nil {
		return nil, fmt.Errorf("backup %s: read source: %w", abs, root.err)
	}
	lock, err := a.lock(ctx, abs)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	defer lock.Unlock()
	lctx := lock.Context()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(lctx, func() { cancel(context.Cause(lctx)) })
	defer stop()

	if err := a.repo.LoadIndex(ctx); err != nil {
		return nil, err
	}
	// A backup that died leaves its lock, found stale when we locked, and
	// maybe packs that no index lists: adopt them instead of uploading
	// their data again. (A backup stopped by a signal indexes its packs
	// itself; see Checkpoint.) Without a dead backup the scan is skipped: it
	// lists every pack.
	hints, err := a.repo.OrphanHints(ctx)
	if err != nil {
		return nil, err
	}
	if lock.RecoveredBackups > 0 || len(hints) > 0 || a.opt.ScanOrphans {
		if n, err := a.repo.IndexOrphanPacks(ctx); err != nil {
			return nil, err
		} else if n > 0 {
			a.log.Info("reusing packs of an interrupted backup", "packs", n)
		}
	}
	snaps, _, err := snapshot.LoadAll(ctx, a.repo)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	parent := snapshot.Latest(snaps, a.opt.Policy, abs, a.opt.Hostname)
	var parentTree *snapshot.Tree
	var parentRoot *repository.ID
	if parent != nil {
		parentRoot = &parent.Tree
		parentTree, err = snapshot.LoadTree(ctx, a.repo, parent.Tree)
		if err != nil {
			a.log.Warn("parent snapshot unreadable; reading every file", "parent", parent.ID.Str(), "err", err)
			parentTree = nil
		}
	}

	if len(root.entries) == 0 && parentTree != nil && len(parentTree.Nodes) > 0 && !a.opt.AllowEmptySource {
		return nil, fmt.Errorf("backup %s: %w", abs, ErrEmptySource)
	}
	// Recorded damage that no copy has healed may lie below a subtree the
	// digest would reuse: walk everything, so files needing it are read.
	a.reuseByDigest = parent != nil && parent.DigestRuns+1 < a.opt.FullWalkEvery && a.repo.UnhealedDamage() == 0
	treeID, err := a.run(ctx, scan, root, parentTree, parentRoot)
	if err != nil {
		// Checkpoint: index the packs already stored, so the next backup
		// reuses them without scanning for orphans.
		cctx, cancelCheckpoint := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if cerr := a.repo.Checkpoint(cctx); cerr != nil {
			a.leaveHint(cctx, cerr)
		}
		cancelCheckpoint()
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			err = fmt.Errorf("%w (%w)", err, c)
		}
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	// Invariant: packs, then index, then snapshot.
	if err := a.repo.Flush(ctx); err != nil {
		cctx, cancelCheckpoint := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if cerr := a.repo.Checkpoint(cctx); cerr != nil {
			a.leaveHint(cctx, cerr)
		}
		cancelCheckpoint()
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	sn := &snapshot.Snapshot{
		Seq: snapshot.NextSeq(snaps, a.opt.Policy), Time: start, Policy: a.opt.Policy, Source: abs,
		Hostname: a.opt.Hostname, Tree: treeID, Program: a.opt.Program, Totals: a.totals(),
		Root: &snapshot.RootMeta{Mode: scan.rootInfo.mode, UID: scan.rootInfo.uid, GID: scan.rootInfo.gid, MtimeNS: scan.rootInfo.mtimeNS},
	}
	sn.Totals.DurationSec = a.opt.Now().Sub(start).Seconds()
	if a.reuseByDigest {
		sn.DigestRuns = parent.DigestRuns + 1
	}
	if parent != nil {
		p := parent.ID
		sn.Parent = &p
	}
	if err := snapshot.Save(ctx, a.repo, sn); err != nil {
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	// The adopted packs are indexed now (Flush); their hints are done.
	a.repo.RemoveOrphanHints(ctx, hints)
	return sn, nil
}

// leaveHint records that this backup stored packs it could not index, so
// the next backup looks for them.
func (a *Archiver) leaveHint(ctx context.Context, cause error) {
	if err := a.repo.MarkOrphans(ctx); err != nil {
		a.log.Warn("could not index the packs of the failed backup nor leave a hint; prune will remove them", "err", err, "cause", cause)
		return
	}
	a.log.Warn("could not index the packs of the failed backup; the next backup adopts them", "err", cause)
}

func (a *Archiver) totals() snapshot.Totals {
	s := &a.Stats
	t := snapshot.Totals{
		FilesNew: s.FilesNew.Load(), FilesChanged: s.FilesChanged.Load(), FilesUnchanged: s.FilesUnchanged.Load(),
		FilesSkipped: s.FilesSkipped.Load(), Dirs: s.Dirs.Load(), Errors: s.Errors.Load(),
		BytesTotal: s.BytesTotal.Load(), BytesRead: s.BytesRead.Load(), BytesWritten: s.BytesWritten.Load(),
		BlobsWritten: s.BlobsWritten.Load(),
	}
	t.Files = t.FilesNew + t.FilesChanged + t.FilesUnchanged
	return t
}

// run walks the tree and returns the root tree id once every blob has been
// handed to the repository.
func (a *Archiver) run(ctx context.Context, scan *sourceScan, root *listing, parent *snapshot.Tree, parentID *repository.ID) (repository.ID, error) {
	g, ctx := errgroup.WithContext(ctx)
	files := make(chan *fileJob, a.opt.Workers)
	blobs := make(chan blobJob) // unbuffered: each queued chunk is memory

	var readers sync.WaitGroup
	for range a.opt.Workers {
		readers.Add(1)
		g.Go(func() error {
			defer readers.Done()
			w := &worker{a: a, table: a.repo.ChunkerTable(), hasher: a.repo.IDHasher(), blobs: blobs}
			for job := range files {
				if err := w.saveFile(ctx, job); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for range a.opt.Savers {
		g.Go(func() error {
			for b := range blobs {
				stored, n, err := a.repo.SaveBlob(ctx, repository.DataBlob, b.id, b.buf)
				putChunk(b.buf)
				if err != nil {
					return err
				}
				if stored {
					a.Stats.BytesWritten.Add(uint64(n))
					a.Stats.BlobsWritten.Add(1)
				}
			}
			return nil
		})
	}
	var rootRes *dirResult
	g.Go(func() error {
		defer func() {
			close(files)
			readers.Wait()
			close(blobs)
		}()
		var err error
		rootRes, err = a.walkDir(ctx, g, scan, files, root, parent, parentID)
		return err
	})
	if err := g.Wait(); err != nil {
		return repository.ID{}, err
	}
	select {
	case <-rootRes.done:
	default:
		return repository.ID{}, errors.New("internal error: root tree not finished")
	}
	return rootRes.id, nil
}

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
// from the pair (docs/DESIGN.md §8 scenario 11).

func (a *Archiver) warn(path string, err error) {
	a.Stats.Errors.Add(1)
	a.log.Warn("skipping unreadable entry", "path", path, "err", err)
}

// unchanged applies restic's rule: same inode, size, mtime and ctime, and
// every chunk still indexed.
func (a *Archiver) unchanged(pn *snapshot.Node, e *entryInfo) bool {
	if pn.Type != snapshot.TypeFile || pn.Inode != e.inode || pn.Size != uint64(e.size) ||
		pn.MtimeNS != e.mtimeNS || pn.CtimeNS != e.ctimeNS {
		return false
	}
	for _, id := range pn.Content {
		if !a.repo.Index().Has(id) {
			return false
		}
	}
	return true
}

func (a *Archiver) appendOnly(name string) bool {
	for _, p := range a.opt.AppendOnly {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
	}
	return false
}

// finishDir waits for a directory's entries and stores its tree. A tree
// equal to the parent's, node for node, is the parent's tree blob: it is
// neither encoded nor looked up again.
func (a *Archiver) finishDir(ctx context.Context, scan *sourceScan, l *listing, res *dirResult, entries []entry, parent *snapshot.Tree, parentID *repository.ID) error {
	tree := &snapshot.Tree{Nodes: make([]snapshot.Node, 0, len(entries))}
	complete := true // every entry below is in the tree with a digest
	for _, e := range entries {
		switch {
		case e.file != nil:
			select {
			case <-e.file.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if e.file.skip {
				complete = false
				continue
			}
			tree.Nodes = append(tree.Nodes, e.file.node)
			// No digest over a file taken partly unread: the next backup
			// must walk here to count it towards its full read.
			complete = complete && e.file.node.TailRuns == 0
		case e.dir != nil:
			select {
			case <-e.dir.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			n := e.node
			n.Type = snapshot.TypeDir
			id := e.dir.id
			n.Subtree = &id
			n.Digest = e.dir.digest
			complete = complete && n.Digest != nil
			tree.Nodes = append(tree.Nodes, n)
		default:
			tree.Nodes = append(tree.Nodes, e.node)
			complete = complete && e.node.TailRuns == 0
		}
	}
	if complete {
		sum, err := scan.waitSum(ctx, l, nil)
		if err != nil {
			return err
		}
		if sum != nil && sum.ok {
			res.digest = &sum.digest
		}
	}
	if parent != nil && parentID != nil && slices.EqualFunc(tree.Nodes, parent.Nodes, sameNode) && a.repo.Index().Has(*parentID) {
		res.id = *parentID
		close(res.done)
		return nil
	}
	b, err := tree.Encode()
	if err != nil {
		return err
	}
	id := a.repo.TreeID(b)
	stored, n, err := a.repo.SaveBlob(ctx, repository.TreeBlob, id, b)
	if err != nil {
		return err
	}
	if stored {
		a.Stats.BytesWritten.Add(uint64(n))
		a.Stats.BlobsWritten.Add(1)
	}
	res.id = id
	close(res.done)
	return nil
}

// sameNode reports whether two nodes encode identically.
func sameNode(x, y snapshot.Node) bool {
	return x.Name == y.Name && x.Type == y.Type && x.Mode == y.Mode && x.UID == y.UID && x.GID == y.GID &&
		x.Size == y.Size && x.MtimeNS == y.MtimeNS && x.CtimeNS == y.CtimeNS && x.Inode == y.Inode &&
		x.Target == y.Target && x.TailRuns == y.TailRuns && slices.Equal(x.Content, y.Content) &&
		sameID(x.Hash, y.Hash) && sameID(x.Subtree, y.Subtree) && sameID(x.Digest, y.Digest)
}

func sameID(x, y *repository.ID) bool {
	return x == y || (x != nil && y != nil && *x == *y)
}

type worker struct {
	a      *Archiver
	table  *chunker.Table
	hasher interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
		Reset()
	}
	window []byte
	blobs  chan<- blobJob
}

func (w *worker) id(b []byte) repository.ID {
	w.hasher.Reset()
	_, _ = w.hasher.Write(b)
	var id repository.ID
	w.hasher.Sum(id[:0])
	return id
}

// saveFile reads one file and fills its node. Errors reading the file are
// per-file (counted, logged, the file skipped); only repository and context
// errors are returned.
func (w *worker) saveFile(ctx context.Context, job *fileJob) error {
	defer close(job.res.done)
	a := w.a
	f, err := os.OpenFile(job.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NOATIME, 0)
	if errors.Is(err, fs.ErrPermission) {
		f, err = os.OpenFile(job.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		if job.verify && !errors.Is(err, fs.ErrNotExist) {
			return w.keepParent(job, err)
		}
		job.res.skip = true
		a.Stats.FilesSkipped.Add(1)
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ELOOP) {
			a.warn(job.path, err)
		}
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		job.res.skip = true
		a.Stats.FilesSkipped.Add(1)
		return nil
	}
	info := newEntryInfo(job.name, fi)
	node := baseNode(&info)
	node.Type = snapshot.TypeFile

	var content []repository.ID
	var offset int64
	pn := job.parent
	if pn != nil && (job.moved || job.verify || w.a.appendOnly(job.name)) && pn.Inode == node.Inode && fi.Size() >= int64(pn.Size) && len(pn.Content) > 0 {
		// A moved file is re-hashed whole: its name says nothing about
		// how it was written.
		full := job.moved || job.verify || pn.TailRuns+1 >= a.opt.FullReadEvery
		prefix, off, ok, edited := w.tail(ctx, f, pn, full)
		switch {
		case !ok && job.verify:
			return w.keepParent(job, errors.New("could not re-read it to compare with the backup"))
		case ok:
			content, offset = prefix, off
			if !full && len(prefix) > 0 {
				node.TailRuns = pn.TailRuns + 1
			}
			if edited {
				a.log.Warn("file changed in place where the previous backup did not read it; stored again from there",
					"path", job.path, "offset", off, "metadata_unchanged", job.verify)
				if job.verify {
					a.Stats.SilentChanges.Add(1)
				}
			}
		}
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return w.fileError(job, err)
	}
	if w.window == nil {
		w.window = make([]byte, chunker.MaxSize+1<<20)
	}
	c := chunker.New(w.table, f, w.window)
	size := offset
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return w.fileError(job, err)
		}
		size += int64(len(chunk))
		a.Stats.BytesRead.Add(uint64(len(chunk)))
		id := w.id(chunk)
		content = append(content, id)
		a.repo.Faults().Hit(faultpoint.AfterChunk)
		if a.repo.Has(id) {
			continue
		}
		buf := getChunk(len(chunk))
		buf = append(buf, chunk...)
		select {
		case w.blobs <- blobJob{id: id, buf: buf}:
		case <-ctx.Done():
			putChunk(buf)
			return ctx.Err()
		}
	}
	node.Size = uint64(size)
	node.Content = content
	h := snapshot.ContentHash(content)
	node.Hash = &h
	switch {
	case job.verify && node.Size == pn.Size && slices.Equal(content, pn.Content):
		a.Stats.FilesUnchanged.Add(1)
	case job.known:
		a.Stats.FilesChanged.Add(1)
	default:
		a.Stats.FilesNew.Add(1)
	}
	job.res.node = node
	return nil
}

func (w *worker) fileError(job *fileJob, err error) error {
	if job.verify {
		return w.keepParent(job, err)
	}
	job.res.skip = true
	w.a.Stats.FilesSkipped.Add(1)
	w.a.warn(job.path, err)
	return nil
}

// keepParent ends a periodic full read that could not be done (the file
// unreadable for now) by keeping the previous version, as for any file whose
// metadata did not change; it is due again at the next backup.
func (w *worker) keepParent(job *fileJob, err error) error {
	w.a.log.Warn("periodic full read failed; the previous version is kept and the read retried next time", "path", job.path, "err", err)
	job.res.node = *job.parent
	w.a.Stats.FilesUnchanged.Add(1)
	return nil
}

// tail works out how much of an append-only file's parent version can be
// kept now that the file has grown. It re-hashes the parent's last chunk
// (with full, every chunk, at the boundaries the parent recorded) and, if
// that matches, keeps the parent's chunks: all of them when the last one is
// at least chunker.MinSize, and chunking goes on from the old end of file;
// all but a shorter last one otherwise, which is chunked again with what
// was appended, so that blobs of a growing log stay at least MinSize. With
// full, a chunk that no longer matches (an edit in place in the older part)
// and everything after it are chunked again, and edited is true. It returns
// the kept chunks and the offset to chunk from; ok false means read the
// whole file.
func (w *worker) tail(ctx context.Context, f *os.File, pn *snapshot.Node, full bool) (kept []repository.ID, offset int64, ok, edited bool) {
	n := len(pn.Content)
	ends, err := snapshot.ChunkEnds(w.a.repo, pn.Content)
	if err != nil || ends[n-1] != int64(pn.Size) {
		return nil, 0, false, false
	}
	from := n - 1 // the first chunk to re-hash
	if full {
		from = 0
	}
	buf := getChunk(0)
	first, read, err := snapshot.MatchChunks(ctx, w.a.repo, f, pn.Content, ends, from, &buf)
	putChunk(buf)
	w.a.Stats.BytesRead.Add(uint64(read))
	switch {
	case err != nil, first < n && !full:
		return nil, 0, false, false
	case first < n:
		var start int64
		if first > 0 {
			start = ends[first-1]
		}
		return slices.Clone(pn.Content[:first]), start, true, true
	}
	lastStart := int64(0)
	if n > 1 {
		lastStart = ends[n-2]
	}
	if ends[n-1]-lastStart < chunker.MinSize {
		return slices.Clone(pn.Content[:n-1]), lastStart, true, false
	}
	return slices.Clone(pn.Content), ends[n-1], true, false
}

var chunkPool sync.Pool

func getChunk(n int) []byte {
	if b, ok := chunkPool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	c := 1 << 20
	for c < n {
		c *= 2
	}
	if n < 256<<10 {
		c = 256 << 10
	}
	return make([]byte, 0, c)
}

func putChunk(b []byte) {
	chunkPool.Put(&b)
}
