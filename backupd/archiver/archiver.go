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
// Imports: repository, snapshot, chunker, faultpoint, regfile and budget; it reaches storage
// only through repository, never a backend implementation. Like all of the
// engine it never imports Prometheus, collectors/ or exporter/
// (docs/DESIGN.md §2.3).
package archiver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/meshbackup/backupd/backupd/budget"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/internal/units"
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
	// MaxShrink refuses a backup whose file count and byte count both fell
	// by more than this share of its parent snapshot's: 0.9 (nine in ten
	// files and bytes gone) unless set. An unmounted volume whose mount
	// point holds a placeholder file looks like this, and retention would
	// then forget the real data. 1 turns the check off.
	MaxShrink float64
	// Tags are stored with the snapshot.
	Tags []string
	// Exclude and OneFileSystem are the ScanOptions of the same names.
	Exclude       []string
	OneFileSystem bool
	// OnLocked, if set, is called with the backup's repository lock once
	// it is taken, before anything is stored, from the goroutine running
	// the backup. A daemon's backup child reports the lock's owner to the
	// daemon this way, so that the daemon can remove the lock if the child
	// dies (docs/DESIGN.md §3.6).
	OnLocked func(repository.LockInfo)
	// Budget limits the backup's source reads and the process's CPU
	// (docs/DESIGN.md §3.9); zero limits nothing.
	Budget budget.Limits
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
	if o.MaxShrink == 0 {
		o.MaxShrink = 0.9
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
	// edit in place made while the file grew, or bit rot; and files read
	// because only their ctime changed whose content differs with the
	// same size and mtime (worker.checkSilentChange). The content is
	// stored as found; the earlier version stays in older snapshots.
	SilentChanges atomic.Uint64
	// Rewritten counts files whose content changed from a point the
	// previous backup had taken unread (or had read under another name
	// with this inode), their metadata changed too: ordinary rewrites,
	// logged at DEBUG and summed up at INFO once per backup.
	Rewritten atomic.Uint64
	// Replaced counts files replaced (renamed over) between the scan and
	// their reading; they are read as found.
	Replaced atomic.Uint64
	// Renamed counts files renamed within their directory between the
	// scan and their reading (a rotated log); they are read under their
	// new name and stored under the name the scan listed.
	Renamed atomic.Uint64
}

// ErrEmptySource refuses a backup of an empty source whose previous snapshot
// had data (an unmounted volume looks like this).
var ErrEmptySource = errors.New("the source is empty but its previous snapshot was not (is the volume mounted?); if this is intended, allow it with --allow-empty-source or the policy's allow_empty_source: true")

// ErrSourceShrank refuses a backup whose source lost most of its files and
// bytes since the previous snapshot (an unmounted volume whose mount point
// holds a placeholder file looks like this).
var ErrSourceShrank = errors.New("the source shrank drastically since its previous snapshot (is the volume mounted?)")

// ErrSourceGone fails a backup whose source directory was removed, or
// whose path led to another directory, by the time its files were read
// (docs/DESIGN.md §8, a pod deleted mid-backup): the files not yet read
// when the volume was unmounted would be missing from the snapshot, which
// would pass for the volume's content. It matches fs.ErrNotExist too.
var ErrSourceGone = fmt.Errorf("the source directory was removed or replaced while it was backed up (its volume unmounted?), so no snapshot was saved: %w", fs.ErrNotExist)

// Archiver runs backups into one repository.
type Archiver struct {
	repo  *repository.Repo
	opt   Options
	log   *slog.Logger
	Stats Stats
	// reuseByDigest is set for a backup whose parent allows subtrees to be
	// reused by their scan digest (see Options.FullWalkEvery).
	reuseByDigest bool
	// budget enforces Options.Budget for the running backup (nil: none).
	budget *budget.Budget
	// beforeOpen is for tests only: a file worker calls it with a file's
	// path just before opening it, after the scan listed its directory
	// (the moment to swap something in; docs/DESIGN.md §8).
	beforeOpen func(path string)
}

// New returns an archiver. It does no I/O.
func New(repo *repository.Repo, opt Options) (*Archiver, error) {
	opt.applyDefaults()
	if opt.Policy == "" {
		return nil, errors.New("archiver: policy name is required")
	}
	if err := opt.Budget.Validate(); err != nil {
		return nil, fmt.Errorf("archiver: budget: %w", err)
	}
	for _, p := range opt.AppendOnly {
		if _, err := filepath.Match(p, "x"); err != nil {
			return nil, fmt.Errorf("archiver: append-only pattern %q: %w", p, err)
		}
	}
	return &Archiver{repo: repo, opt: opt, log: opt.Logger.With("component", "archiver", "policy", opt.Policy)}, nil
}

// Backup stores a snapshot of the directory source and returns it. It takes
// a shared lock; an overlapping backup of the same policy and source on this
// host fails with ErrOverlap.
func (a *Archiver) Backup(ctx context.Context, source string) (*snapshot.Snapshot, error) {
	scan := prescan(ctx, source, a.scanOptions(), scanAhead)
	defer scan.Stop()
	return a.backupScan(ctx, scan)
}

// Scan is a scan of a backup's source started before the repository is
// open: listing and stat'ing the source needs no key, so it can run while
// the key is derived. It reads only metadata and holds at most a bounded
// look-ahead of listings.
type Scan struct{ s *sourceScan }

// StartScan starts scanning the directory source for a backup made with
// BackupScan, by an archiver whose Options give the same Exclude and
// OneFileSystem as opt. The snapshot's time is when the scan starts. The
// caller must call Stop if it does not hand the scan to BackupScan.
func StartScan(ctx context.Context, source string, opt ScanOptions) *Scan {
	return &Scan{s: prescan(ctx, source, opt, scanAhead)}
}

// scanOptions are the scan options of the archiver's options.
func (a *Archiver) scanOptions() ScanOptions {
	return ScanOptions{Now: a.opt.Now, Exclude: a.opt.Exclude, OneFileSystem: a.opt.OneFileSystem}
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
	a.budget = budget.New(a.opt.Budget)
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
	if a.opt.OnLocked != nil {
		a.opt.OnLocked(lock.Info())
	}
	ctx, cancel := lockedContext(ctx, lock)
	defer cancel()

	if err := a.repo.LoadIndex(ctx); err != nil {
		return nil, err
	}
	hints, err := a.adoptOrphans(ctx, lock)
	if err != nil {
		return nil, err
	}
	snaps, _, err := snapshot.LoadAll(ctx, a.repo)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	parent := snapshot.Latest(snaps, a.opt.Policy, abs, a.opt.Hostname)
	parentTree := a.parentTree(ctx, parent)
	if len(root.entries) == 0 && parentTree != nil && len(parentTree.Nodes) > 0 && !a.opt.AllowEmptySource {
		return nil, fmt.Errorf("backup %s: %w", abs, ErrEmptySource)
	}
	// Recorded damage that no copy has healed may lie below a subtree the
	// digest would reuse: walk everything, so files needing it are read.
	a.reuseByDigest = parent != nil && parent.DigestRuns+1 < a.opt.FullWalkEvery && a.repo.UnhealedDamage() == 0
	var parentRoot *repository.ID
	if parent != nil {
		parentRoot = &parent.Tree
	}
	treeID, err := a.run(ctx, scan, root, parentTree, parentRoot)
	if err != nil {
		a.checkpoint(ctx)
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			err = fmt.Errorf("%w (%w)", err, c)
		}
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	// Invariant: packs, then index, then snapshot.
	if err := a.repo.Flush(ctx); err != nil {
		a.checkpoint(ctx)
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	// Invariant: no snapshot of a source that went away under the walk.
	if err := scan.sameRoot(); err != nil {
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	sn := a.newSnapshot(scan, snaps, parent, treeID)
	if err := a.guardSource(sn, parent, snapshot.LatestHealthy(snaps, a.opt.Policy, abs, a.opt.Hostname)); err != nil {
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	if err := snapshot.Save(ctx, a.repo, sn); err != nil {
		return nil, fmt.Errorf("backup %s: %w", abs, err)
	}
	// The adopted packs are indexed now (Flush); their hints are done.
	a.repo.RemoveOrphanHints(ctx, hints)
	a.logRewrites()
	return sn, nil
}

// logRewrites sums up, at INFO, the ordinary changes of the backup that
// are logged one by one at DEBUG: files rewritten where the previous
// backup had not read them, and files replaced since the scan.
func (a *Archiver) logRewrites() {
	rw, rp, rn := a.Stats.Rewritten.Load(), a.Stats.Replaced.Load(), a.Stats.Renamed.Load()
	if rw == 0 && rp == 0 && rn == 0 {
		return
	}
	a.log.Info("files rewritten, replaced or renamed while the source changed, read again (details at debug level)",
		"files_rewritten", rw, "files_replaced_since_scan", rp, "files_renamed_since_scan", rn,
		"files_changed", a.Stats.FilesChanged.Load(), "files_new", a.Stats.FilesNew.Load())
}

// lockedContext returns ctx, cancelled also when the lock is lost, with the
// loss as its cause; cancel releases it.
func lockedContext(ctx context.Context, lock *repository.Lock) (_ context.Context, cancel func()) {
	lctx := lock.Context()
	ctx, cancelCause := context.WithCancelCause(ctx)
	stop := context.AfterFunc(lctx, func() { cancelCause(context.Cause(lctx)) })
	return ctx, func() {
		stop()
		cancelCause(nil)
	}
}

// adoptOrphans indexes the packs a dead backup left. A backup that died
// leaves its lock, found stale when we locked, and maybe packs that no
// index lists: adopt them instead of uploading their data again. (A backup
// stopped by a signal indexes its packs itself; see Checkpoint.) Without a
// dead backup the scan is skipped: it lists every pack. It returns the
// orphan hints, to remove once the adopted packs are indexed.
func (a *Archiver) adoptOrphans(ctx context.Context, lock *repository.Lock) ([]string, error) {
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
	return hints, nil
}

// parentTree loads the root tree of the parent snapshot; nil if there is
// no parent or its tree is unreadable (then every file is read).
func (a *Archiver) parentTree(ctx context.Context, parent *snapshot.Snapshot) *snapshot.Tree {
	if parent == nil {
		return nil
	}
	tree, err := snapshot.LoadTree(ctx, a.repo, parent.Tree)
	if err != nil {
		a.log.Warn("parent snapshot unreadable; reading every file", "parent", parent.ID.Str(), "err", err)
		return nil
	}
	return tree
}

// checkpoint indexes the packs a failed backup already stored, so the next
// backup reuses them without scanning for orphans; failing that it leaves a
// hint. It runs even when ctx is done, for at most 10 seconds.
func (a *Archiver) checkpoint(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := a.repo.Checkpoint(cctx); err != nil {
		a.leaveHint(cctx, err)
	}
}

// newSnapshot is the snapshot of a finished backup of scan whose root tree
// is treeID.
func (a *Archiver) newSnapshot(scan *sourceScan, snaps []*snapshot.Snapshot, parent *snapshot.Snapshot, treeID repository.ID) *snapshot.Snapshot {
	start, ri := scan.started, scan.rootInfo
	sn := &snapshot.Snapshot{
		Seq: snapshot.NextSeq(snaps, a.opt.Policy), Time: start, Policy: a.opt.Policy, Source: scan.root,
		Hostname: a.opt.Hostname, Tags: a.opt.Tags, Tree: treeID, Program: a.opt.Program, Totals: a.totals(),
		Root: &snapshot.RootMeta{Dev: scan.rootDev, Mode: ri.mode, UID: ri.uid, GID: ri.gid, MtimeNS: ri.mtimeNS},
	}
	sn.Totals.DurationSec = a.opt.Now().Sub(start).Seconds()
	if a.reuseByDigest {
		sn.DigestRuns = parent.DigestRuns + 1
	}
	if parent != nil {
		p := parent.ID
		sn.Parent = &p
	}
	return sn
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

// guardSource compares the finished backup sn, before it is saved, with its
// parent and with healthy, the newest snapshot of the source that is not
// suspect: losing most of healthy's files and bytes is refused
// (ErrSourceShrank; compared with healthy, so a run of accepted placeholder
// backups never becomes the reference); a source on another device than the
// parent's, or an empty source accepted by AllowEmptySource, makes sn
// suspect, so that retention keeps healthy (docs/DESIGN.md §8 scenario 34).
func (a *Archiver) guardSource(sn, parent, healthy *snapshot.Snapshot) error {
	if parent == nil {
		return nil
	}
	ref := healthy
	if ref == nil {
		ref = parent
	}
	now, was := sn.Totals, ref.Totals
	emptyAllowed := now.Files == 0 && was.Files > 0 && a.opt.AllowEmptySource
	if !emptyAllowed && a.opt.MaxShrink < 1 && shrank(now.Files, was.Files, a.opt.MaxShrink) && shrank(now.BytesTotal, was.BytesTotal, a.opt.MaxShrink) {
		return fmt.Errorf("%w: %d files and %s now, %d files and %s in snapshot %s; if this is intended, allow it with --max-shrink 1 or the policy's max_shrink: 1",
			ErrSourceShrank, now.Files, units.Bytes(now.BytesTotal), was.Files, units.Bytes(was.BytesTotal), ref.ID.Str())
	}
	switch {
	case parent.Root != nil && parent.Root.Dev != 0 && sn.Root.Dev != parent.Root.Dev:
		sn.Suspect = fmt.Sprintf("the source is on device %s, its previous snapshot %s was on %s (a volume not mounted, or mounted elsewhere?)",
			devString(sn.Root.Dev), parent.ID.Str(), devString(parent.Root.Dev))
	case emptyAllowed:
		sn.Suspect = fmt.Sprintf("the source was empty, its previous snapshot %s was not (accepted by allow_empty_source)", parent.ID.Str())
	}
	if sn.Suspect != "" {
		a.log.Warn("suspect snapshot: retention keeps the newest snapshot that is not", "reason", sn.Suspect)
	}
	return nil
}

// shrank reports whether now is smaller than was by more than the share max.
func shrank(now, was uint64, max float64) bool {
	return was > 0 && float64(was-min(now, was)) > max*float64(was)
}
