package archiver

import (
	"strings"

	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sync/semaphore"

	"github.com/meshbackup/backupd/backupd/repository"
)

// scanAhead bounds how many directory entries the scanner holds that the
// walker has not taken yet: about 100 bytes each plus the name, so a few
// MiB whatever the size of the tree.
const scanAhead = 16384

// entryInfo is what the scanner learned about one directory entry.
type entryInfo struct {
	name         string
	mode         fs.FileMode
	uid, gid     uint32
	size         int64
	mtimeNS      int64
	ctimeNS      int64
	inode        uint64
	dev          uint64 // the device the entry is on
	target       string // symlinks
	err          error  // lstat or readlink failed
	isRegularDir bool
}

func newEntryInfo(name string, fi fs.FileInfo) entryInfo {
	st := statT(fi)
	return entryInfo{name: name, mode: fi.Mode(), uid: st.Uid, gid: st.Gid, size: fi.Size(),
		mtimeNS: fi.ModTime().UnixNano(), ctimeNS: st.Ctim.Sec*1e9 + st.Ctim.Nsec, inode: st.Ino, dev: st.Dev,
		isRegularDir: fi.IsDir()}
}

func statT(fi fs.FileInfo) *syscall.Stat_t {
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st == nil {
		st = &syscall.Stat_t{}
	}
	return st
}

// listing is one directory as scanned: its entries sorted by name.
type listing struct {
	path    string
	entries []entryInfo
	err     error // reading the directory failed; entries are what was read
	// dir is the open directory (nil if it could not be opened): the
	// listing's reference is released once the walker has queued its
	// files (walkDir) or skipped it (sourceScan.skip).
	dir *dirHandle
	// sum describes the whole subtree; the scanner sets it once the
	// subtree is scanned, after the listing was sent.
	sum     atomic.Pointer[subtreeSum]
	sumDone chan struct{} // closed once sum is set
}

// subtreeSum is a directory's scan, summed up over everything below it.
type subtreeSum struct {
	digest repository.ID
	ok     bool // everything below was listed and stated without error
	// What a walk of the subtree would count.
	files, skipped, bytes uint64
	dirs                  uint64 // listings in the subtree, its own included
}

// newDigester returns the hasher of directory digests.
func newDigester() *blake3.Hasher { return blake3.NewDeriveKey("backupd directory digest v1") }

// summarize computes l's subtree sum from its entries and its
// subdirectories' sums, in entry order, with h (reset first) and b as
// scratch space.
func summarize(h *blake3.Hasher, b []byte, l *listing, subs []*subtreeSum) *subtreeSum {
	h.Reset()
	sum := &subtreeSum{ok: l.err == nil, dirs: 1}
	next := 0
	for i := range l.entries {
		e := &l.entries[i]
		if e.err != nil {
			sum.ok = false
			continue
		}
		b = b[:0]
		b = binary.AppendUvarint(b, uint64(len(e.name)))
		b = append(b, e.name...)
		b = binary.AppendUvarint(b, uint64(e.mode))
		b = binary.AppendUvarint(b, uint64(e.uid))
		b = binary.AppendUvarint(b, uint64(e.gid))
		b = binary.AppendVarint(b, e.size)
		b = binary.AppendVarint(b, e.mtimeNS)
		b = binary.AppendVarint(b, e.ctimeNS)
		b = binary.AppendUvarint(b, e.inode)
		b = binary.AppendUvarint(b, uint64(len(e.target)))
		b = append(b, e.target...)
		switch {
		case e.isRegularDir:
			sub := subs[next]
			next++
			b = append(b, sub.digest[:]...)
			sum.ok = sum.ok && sub.ok
			sum.files += sub.files
			sum.skipped += sub.skipped
			sum.bytes += sub.bytes
			sum.dirs += sub.dirs
		case e.mode.IsRegular():
			sum.files++
			sum.bytes += uint64(e.size)
		case e.mode&fs.ModeSymlink != 0:
		default:
			sum.skipped++
		}
		_, _ = h.Write(b)
	}
	h.Sum(sum.digest[:0])
	return sum
}

// sourceScan lists a source tree in the background, depth first and in name
// order, ahead of the walk that compares it with the parent snapshot, on
// its own goroutine (and so, with GOMAXPROCS > 1, on its own core): the
// listing and stat calls overlap the index and parent tree loads and the
// walk. It also sums every directory up (subtreeSum) so that the walk can
// take an unchanged subtree whole. At most scanAhead entries wait to be
// taken. The backup command starts it (StartScan) while the key is
// derived; that only pays since the key derivation's work area is written
// before Argon2 runs (crypto.prepareWorkArea): before, its first-touch
// page faults and TLB shootdowns made both slower.
//
// Invariant: listings are sent in exactly the order walkDir asks for them
// (pre-order, sorted names, descending into every entry the scan itself
// saw as a directory), so the walker only checks paths, never searches.
type sourceScan struct {
	root     string
	rootInfo entryInfo // the source directory's own metadata
	rootDev  uint64    // the device the source directory is on
	started  time.Time

	ahead    int64 // scanAhead but in tests
	out      chan *listing
	budget   *semaphore.Weighted
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	finished chan struct{} // closed when the scanner goroutine ends
	// starved is closed the first time the scanner waits for budget: from
	// then on the walk must not wait for the sums of subtrees it has not
	// taken (see waitSum).
	starved    chan struct{}
	starveOnce sync.Once
	digester   *blake3.Hasher // scanner goroutine only
	scratch    []byte         // scanner goroutine only
	dirents    []byte         // scanner goroutine only: getdents records
	handles    handleSet      // the directories still open
	filter     scanFilter

	errOnce error
}

// dirWeight is what holding a directory open weighs in the look-ahead
// budget besides its entries: at most scanAhead/(dirWeight+1), 512,
// listings sent ahead hold a descriptor, however wide the tree.
const dirWeight = 31

// prescan starts scanning source with a look-ahead budget of ahead
// entries. now is the clock whose reading becomes the snapshot's time (nil:
// time.Now); it is read before the first stat. Errors (a missing or
// unreadable source) surface when the scan is used. The caller must Stop
// the scan.
func prescan(ctx context.Context, source string, opt ScanOptions, ahead int64) *sourceScan {
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	// Every listing weighs at least 1, so the channel never blocks a
	// send the budget allows.
	s := &sourceScan{started: now(), ahead: ahead, out: make(chan *listing, ahead), budget: semaphore.NewWeighted(ahead),
		finished: make(chan struct{}), starved: make(chan struct{}), digester: newDigester(), scratch: make([]byte, 0, 512), dirents: make([]byte, 32<<10)}
	abs, err := filepath.Abs(source)
	if err != nil {
		s.errOnce = fmt.Errorf("backup %s: %w", source, err)
		return s
	}
	s.root = abs
	s.filter = newScanFilter(opt)
	// The source itself may be a symlink to the volume (it is followed);
	// symlinks inside it are stored as symlinks.
	d, err := openRoot(abs)
	if errors.Is(err, syscall.ENOTDIR) {
		s.errOnce = fmt.Errorf("backup %s: source must be a directory", source)
		return s
	}
	if err != nil {
		s.errOnce = fmt.Errorf("backup %s: %w", source, err)
		return s
	}
	if s.rootInfo, err = statDir(d, abs); err == nil {
		s.rootDev, err = deviceOf(d, abs)
	}
	if err != nil {
		_ = d.Close()
		s.errOnce = fmt.Errorf("backup %s: %w", source, err)
		return s
	}
	h := s.handles.add(d)
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.finished)
		defer close(s.out)
		defer h.release()
		s.scanDir(ctx, abs, h, nil)
	}()
	return s
}

// sameRoot checks that the source path still leads to the directory the
// scan opened (ErrSourceGone if not): once the walk is done, a source
// removed or unmounted meanwhile has lost the files not yet read.
func (s *sourceScan) sameRoot() error {
	fi, err := os.Stat(s.root)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrSourceGone
	}
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if st := statT(fi); st.Ino != s.rootInfo.inode || st.Dev != s.rootDev {
		return ErrSourceGone
	}
	return nil
}

// Stop ends the scan, waits for its goroutine and closes every directory
// still open. The walk and the file workers must be done.
func (s *sourceScan) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.handles.closeAll()
}

// scanDir lists the directory d at path (or, if it could not be opened,
// sends a listing with openErr), sends the listing, scans its
// subdirectories, and then sets the listing's subtree sum and returns it.
// It returns nil once the context is done. The caller's reference to d
// keeps it open while the subdirectories are scanned (they are opened
// relative to it); the listing takes one of its own, for the file workers.
func (s *sourceScan) scanDir(ctx context.Context, path string, d *dirHandle, openErr error) *subtreeSum {
	var l *listing
	switch {
	case openErr != nil:
		l = &listing{path: path, err: openErr, sumDone: make(chan struct{})}
	case d == nil: // a mount point left out by OneFileSystem: empty
		l = &listing{path: path, sumDone: make(chan struct{})}
	default:
		l = listDir(ctx, d.fd, path, s.dirents)
		l.entries = s.filter.keep(s.relative(path), l.entries)
		l.dir = d.acquire()
	}
	if w := s.weight(l); !s.budget.TryAcquire(w) {
		s.starveOnce.Do(func() { close(s.starved) })
		if err := s.budget.Acquire(ctx, w); err != nil {
			l.dir.release()
			return nil
		}
	}
	select {
	case s.out <- l:
	case <-ctx.Done():
		l.dir.release()
		return nil
	}
	var subs []*subtreeSum
	for i := range l.entries {
		if e := &l.entries[i]; e.err == nil && e.isRegularDir {
			cp := filepath.Join(path, e.name)
			var ch *dirHandle
			var err error
			if !s.filter.oneFileSystem || e.dev == s.rootDev {
				var cd dirFD
				if cd, err = openSubdir(d.fd, cp, e); err == nil {
					ch = s.handles.add(cd)
				}
			}
			sub := s.scanDir(ctx, cp, ch, err)
			ch.release()
			if sub == nil {
				return nil
			}
			subs = append(subs, sub)
		}
	}
	sum := summarize(s.digester, s.scratch[:0], l, subs)
	l.sum.Store(sum)
	close(l.sumDone)
	return sum
}

// skip drops the next n listings: the subdirectories of a directory whose
// subtree the walk reuses.
func (s *sourceScan) skip(ctx context.Context, n uint64) error {
	for range n {
		l, err := s.receive(ctx)
		if err != nil {
			return err
		}
		l.dir.release()
	}
	return nil
}

// weight is a listing's share of the budget (its entries, and dirWeight
// for the descriptor it holds); a directory bigger than the whole budget
// takes all of it, alone.
func (s *sourceScan) weight(l *listing) int64 {
	return min(int64(len(l.entries))+1+dirWeight, s.ahead)
}

// rootListing returns the root directory's listing, which must be read
// before the walk starts (an unreadable root fails the backup).
func (s *sourceScan) rootListing(ctx context.Context) (*listing, error) {
	if s.errOnce != nil {
		return nil, s.errOnce
	}
	return s.receive(ctx)
}

func (s *sourceScan) receive(ctx context.Context) (*listing, error) {
	select {
	case l, ok := <-s.out:
		if !ok {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, errors.New("internal error: the source scan ended early")
		}
		s.budget.Release(s.weight(l))
		return l, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// next returns the listing of path, which must be the next directory in
// scan order.
func (s *sourceScan) next(ctx context.Context, path string) (*listing, error) {
	l, err := s.receive(ctx)
	if err != nil {
		return nil, err
	}
	if l.path != path {
		return nil, fmt.Errorf("internal error: scanned %s where the walk is at %s", l.path, path)
	}
	return l, nil
}

// waitSum returns l's subtree sum once the scanner has set it; nil if the
// scanner ended, or stop was closed, first. A walker that has taken every
// listing of l's subtree passes a nil stop. One that has not must pass
// s.starved: a scanner that ever waited for budget could be waiting for
// this walk, a deadlock.
func (s *sourceScan) waitSum(ctx context.Context, l *listing, stop <-chan struct{}) (*subtreeSum, error) {
	select {
	case <-l.sumDone:
	case <-s.finished:
	case <-stop:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return l.sum.Load(), nil
}

// ScanOptions choose what a scan lists.
type ScanOptions struct {
	// Now is the clock whose reading becomes the snapshot's time: time.Now
	// if nil. It is read before the first stat.
	Now func() time.Time
	// Exclude lists gitignore-style patterns (git's syntax: "*.tmp",
	// "/cache/", "**/tmp", "!keep.tmp") of paths relative to the source
	// that are left out, with everything below them.
	Exclude []string
	// OneFileSystem leaves out what lies on another file system than the
	// source: a mount point is stored as an empty directory.
	OneFileSystem bool
}

// scanFilter decides which listed entries a backup keeps.
type scanFilter struct {
	exclude       gitignore.Matcher // nil: keep everything
	oneFileSystem bool
}

func newScanFilter(opt ScanOptions) scanFilter {
	f := scanFilter{oneFileSystem: opt.OneFileSystem}
	if len(opt.Exclude) > 0 {
		ps := make([]gitignore.Pattern, 0, len(opt.Exclude))
		for _, p := range opt.Exclude {
			ps = append(ps, gitignore.ParsePattern(p, nil))
		}
		f.exclude = gitignore.NewMatcher(ps)
	}
	return f
}

// keep returns the entries of the directory at rel (its path below the
// source, as components) that no exclude pattern matches, in place.
func (f scanFilter) keep(rel []string, entries []entryInfo) []entryInfo {
	if f.exclude == nil {
		return entries
	}
	kept := entries[:0]
	path := append(rel[:len(rel):len(rel)], "")
	for _, e := range entries {
		path[len(path)-1] = e.name
		if !f.exclude.Match(path, e.err == nil && e.isRegularDir) {
			kept = append(kept, e)
		}
	}
	return kept
}

// relative returns path, the source or a directory below it, as the
// components of its path below the source.
func (s *sourceScan) relative(path string) []string {
	rel := strings.TrimPrefix(strings.TrimPrefix(path, s.root), string(filepath.Separator))
	if rel == "" {
		return nil
	}
	return strings.Split(rel, string(filepath.Separator))
}
