// Package lostwrites is a FUSE file system that loses unsynced writes on
// a simulated power cut: the fault benchmark's scenario 7 puts each tool's
// repository under it (bench/README.md, "Lost unsynced writes").
//
// It passes every operation through to a backing directory (go-fuse's
// loopback) and keeps, per file, what a power cut would leave of it: the
// content as of its last fsync (or, for a file not written since the
// mount, as it was). Writes and truncations after that are recorded as an
// undo log (the bytes they overwrote within the durable size, and the
// durable size itself). PowerCut unmounts, then rolls every file back to
// its durable state. An fsync (or fdatasync) of a file makes its current
// content durable.
//
// The model is a file system that journals metadata but not data
// (ext4 data=writeback, XFS): names (create, rename, unlink, mkdir, links)
// survive the cut as they are; file data that was never synced does not.
// A file created and renamed into place without an fsync is left with the
// length and bytes it last had synced: empty if it never was. It is
// stricter than a real disk that happened to flush in time, and what
// POSIX allows.
//
// Not modelled: a directory's fsync (names survive anyway), sync(2) and
// syncfs(2) (not seen from the tools here), writes through a shared
// mmap. copy_file_range and O_TMPFILE are refused (ENOTSUP), so callers
// fall back to plain writes, which are tracked.
package lostwrites

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a mounted lost-writes file system.
type FS struct {
	backing, mountpoint string
	server              *fuse.Server

	mu    sync.Mutex
	files map[uint64]*undo // by backing inode
	syncs int64
}

// undo is what a power cut restores of one file.
type undo struct {
	durable int64    // size as of the last fsync
	saved   []region // bytes overwritten since, oldest first
}

type region struct {
	off  int64
	data []byte
}

// Mount serves backing at mountpoint (an empty directory). It needs root
// (a direct mount(2) of /dev/fuse) or fusermount.
func Mount(backing, mountpoint string) (*FS, error) {
	f := &FS{backing: backing, mountpoint: mountpoint, files: map[uint64]*undo{}}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("lostwrites: backing directory %s: %w", backing, err)
	}
	root := &gofs.LoopbackRoot{Path: backing, Dev: st.Dev}
	//lint:ignore SA1019 NodeWrapChilder would wrap a LoopbackNode built by the loopback; NewNode builds ours with the undo log's handle
	root.NewNode = func(r *gofs.LoopbackRoot, _ *gofs.Inode, _ string, _ *syscall.Stat_t) gofs.InodeEmbedder {
		return &node{LoopbackNode: gofs.LoopbackNode{RootData: r}, fs: f}
	}
	rootNode := root.NewNode(root, nil, "", &st) //lint:ignore SA1019 as above
	root.RootNode = rootNode
	timeout := time.Duration(0) // no attribute caching: sizes are always the backing's
	server, err := gofs.Mount(mountpoint, rootNode, &gofs.Options{
		AttrTimeout: &timeout, EntryTimeout: &timeout, NegativeTimeout: &timeout,
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "lostwrites", Name: "lostwrites", MaxBackground: 16},
	})
	if err != nil {
		return nil, fmt.Errorf("lostwrites: mount %s on %s: %w", backing, mountpoint, err)
	}
	f.server = server
	return f, nil
}

// Report is what a power cut dropped.
type Report struct {
	// Files is how many files were rolled back; Bytes how many bytes of
	// them (written since their last fsync) were lost.
	Files int
	Bytes int64
	// Syncs counts the fsyncs the file system saw while mounted.
	Syncs int64
}

// PowerCut unmounts (the caller's processes must have ended, or their
// files are closed by the kernel), then rolls every file back to its last
// synced state.
func (f *FS) PowerCut() (Report, error) {
	if err := f.server.Unmount(); err != nil {
		return Report{}, fmt.Errorf("lostwrites: unmount %s: %w", f.mountpoint, err)
	}
	f.server.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	rep := Report{Syncs: f.syncs}
	err := filepath.WalkDir(f.backing, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		u := f.files[st.Ino]
		if u == nil {
			return nil
		}
		delete(f.files, st.Ino) // a second link is the same file
		lost, err := rollBack(p, st.Size, u)
		if err != nil {
			return err
		}
		if lost > 0 {
			rep.Files++
			rep.Bytes += lost
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("lostwrites: roll back %s: %w", f.backing, err)
	}
	return rep, nil
}

// rollBack restores the file at p (size now) to its durable state and
// returns how many bytes that changed.
func rollBack(p string, size int64, u *undo) (int64, error) {
	if len(u.saved) == 0 && size == u.durable {
		return 0, nil
	}
	fh, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	lost := max(0, size-u.durable)
	for i := len(u.saved) - 1; i >= 0; i-- {
		r := u.saved[i]
		if _, err := fh.WriteAt(r.data, r.off); err != nil {
			return 0, err
		}
		lost += int64(len(r.data))
	}
	if err := fh.Truncate(u.durable); err != nil {
		return 0, err
	}
	return lost, fh.Sync()
}

// track returns the undo record of the file ino, whose size is size
// before its first change since the mount.
func (f *FS) track(ino uint64, size int64) *undo {
	u := f.files[ino]
	if u == nil {
		u = &undo{durable: size}
		f.files[ino] = u
	}
	return u
}

// beforeChange records what a change of [off, end) of the file (read
// through rd) destroys within its durable size. end < 0 means to the end
// (a truncation to off).
func (f *FS) beforeChange(rd *os.File, ino uint64, off, end int64) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(rd.Fd()), &st); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.track(ino, st.Size)
	if end < 0 || end > u.durable {
		end = u.durable
	}
	if off >= end {
		return nil
	}
	b := make([]byte, end-off)
	n, err := rd.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	u.saved = append(u.saved, region{off: off, data: b[:n]})
	return nil
}

// synced makes the file's current content durable.
func (f *FS) synced(rd *os.File, ino uint64) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(rd.Fd()), &st); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	f.files[ino] = &undo{durable: st.Size}
	return nil
}

// node is a loopback node whose open files are tracked.
type node struct {
	gofs.LoopbackNode
	fs *FS
}

func (n *node) backingPath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

// openTracked opens an extra read-only descriptor on the file at p for
// the undo log, and records the content an O_TRUNC open destroys.
func (n *node) openTracked(p string, ino uint64, flags uint32) (*os.File, syscall.Errno) {
	rd, err := os.Open(p)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	if flags&syscall.O_TRUNC != 0 {
		if err := n.fs.beforeChange(rd, ino, 0, -1); err != nil {
			rd.Close()
			return nil, gofs.ToErrno(err)
		}
	}
	return rd, 0
}

var (
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeCreater        = (*node)(nil)
	_ gofs.NodeSetattrer      = (*node)(nil)
	_ gofs.NodeCopyFileRanger = (*node)(nil)
)

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) == 0 && flags&syscall.O_TRUNC == 0 {
		return n.LoopbackNode.Open(ctx, flags)
	}
	ino := n.StableAttr().Ino
	rd, errno := n.openTracked(n.backingPath(), ino, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		rd.Close()
		return nil, 0, errno
	}
	return &file{inner: fh, rd: rd, ino: ino, fs: n.fs}, fl, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	p := filepath.Join(n.backingPath(), name)
	var before syscall.Stat_t
	existed := syscall.Lstat(p, &before) == nil
	if existed && flags&syscall.O_TRUNC != 0 && before.Mode&syscall.S_IFMT == syscall.S_IFREG {
		rd, errno := n.openTracked(p, before.Ino, flags)
		if errno != 0 {
			return nil, nil, 0, errno
		}
		rd.Close()
	}
	ch, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	rd, err := os.Open(p)
	if err != nil {
		if r, ok := fh.(gofs.FileReleaser); ok {
			r.Release(ctx)
		}
		return nil, nil, 0, gofs.ToErrno(err)
	}
	ino := ch.StableAttr().Ino
	if !existed {
		n.fs.mu.Lock()
		n.fs.track(ino, 0) // new: nothing of it is durable
		n.fs.mu.Unlock()
	}
	return ch, &file{inner: fh, rd: rd, ino: ino, fs: n.fs}, fl, 0
}

// Setattr records a truncation by path (truncate(2)) before it is done;
// one through an open file goes through file.Setattr.
func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok && f == nil {
		rd, err := os.Open(n.backingPath())
		if err != nil {
			return gofs.ToErrno(err)
		}
		err = n.fs.beforeChange(rd, n.StableAttr().Ino, int64(size), -1)
		rd.Close()
		if err != nil {
			return gofs.ToErrno(err)
		}
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

// CopyFileRange is refused: callers fall back to reads and writes, which
// are tracked.
func (n *node) CopyFileRange(context.Context, gofs.FileHandle, uint64, *gofs.Inode, gofs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}

// Tmpfile is refused (O_TMPFILE): see the package doc.
func (n *node) Tmpfile(context.Context, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.ENOTSUP
}

// file is an open file whose writes, truncations and fsyncs are tracked.
type file struct {
	inner gofs.FileHandle
	rd    *os.File
	ino   uint64
	fs    *FS
}

var (
	_ gofs.FileReader    = (*file)(nil)
	_ gofs.FileWriter    = (*file)(nil)
	_ gofs.FileFsyncer   = (*file)(nil)
	_ gofs.FileSetattrer = (*file)(nil)
	_ gofs.FileGetattrer = (*file)(nil)
	_ gofs.FileFlusher   = (*file)(nil)
	_ gofs.FileReleaser  = (*file)(nil)
	_ gofs.FileLseeker   = (*file)(nil)
	_ gofs.FileAllocater = (*file)(nil)
	_ gofs.FileGetlker   = (*file)(nil)
	_ gofs.FileSetlker   = (*file)(nil)
	_ gofs.FileSetlkwer  = (*file)(nil)
)

func (f *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.inner.(gofs.FileReader).Read(ctx, dest, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if err := f.fs.beforeChange(f.rd, f.ino, off, off+int64(len(data))); err != nil {
		return 0, gofs.ToErrno(err)
	}
	return f.inner.(gofs.FileWriter).Write(ctx, data, off)
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if errno := f.inner.(gofs.FileFsyncer).Fsync(ctx, flags); errno != 0 {
		return errno
	}
	return gofs.ToErrno(f.fs.synced(f.rd, f.ino))
}

func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if err := f.fs.beforeChange(f.rd, f.ino, int64(size), -1); err != nil {
			return gofs.ToErrno(err)
		}
	}
	return f.inner.(gofs.FileSetattrer).Setattr(ctx, in, out)
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	// fallocate changes no bytes within the durable size unless it
	// punches a hole; record the range either way.
	if err := f.fs.beforeChange(f.rd, f.ino, int64(off), int64(off+size)); err != nil {
		return gofs.ToErrno(err)
	}
	return f.inner.(gofs.FileAllocater).Allocate(ctx, off, size, mode)
}

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.inner.(gofs.FileGetattrer).Getattr(ctx, out)
}

func (f *file) Flush(ctx context.Context) syscall.Errno {
	return f.inner.(gofs.FileFlusher).Flush(ctx)
}

func (f *file) Release(ctx context.Context) syscall.Errno {
	f.rd.Close()
	return f.inner.(gofs.FileReleaser).Release(ctx)
}

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.inner.(gofs.FileLseeker).Lseek(ctx, off, whence)
}

func (f *file) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return f.inner.(gofs.FileGetlker).Getlk(ctx, owner, lk, flags, out)
}

func (f *file) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.inner.(gofs.FileSetlker).Setlk(ctx, owner, lk, flags)
}

func (f *file) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.inner.(gofs.FileSetlkwer).Setlkw(ctx, owner, lk, flags)
}
