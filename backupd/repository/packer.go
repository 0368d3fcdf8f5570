package repository

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/faultpoint"
)

var bufPool sync.Pool

func getBuf(n int) []byte {
	if b, ok := bufPool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, max(n, 64<<10))
}

func putBuf(b []byte) {
	if cap(b) > chunker.MaxSize+chunker.MaxSize/8 {
		return
	}
	bufPool.Put(&b)
}

// packer appends sealed blobs to a temp file and hashes them on the way.
type packer struct {
	f     *os.File // the temp file; w writes to it, through a writebackFile or not
	w     *bufio.Writer
	h     *blake3.Hasher
	blobs []PackBlob
	size  int64
}

// newPacker starts a pack in a temp file in dir. writeback: the file is
// fsynced where it lies (a repository in a directory links it into place),
// so its writeback is started as it grows (writebackFile).
func newPacker(dir string, writeback bool) (*packer, error) {
	f, err := os.CreateTemp(dir, "pack-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create pack temp file: %w", err)
	}
	var w io.Writer = f
	if writeback {
		w = &writebackFile{f: f}
	}
	return &packer{f: f, w: bufio.NewWriterSize(w, 256<<10), h: blake3.New()}, nil
}

// writebackEvery is how many bytes written to a pack's temp file start
// their writeback (docs/DESIGN.md §3.9).
const writebackEvery = 1 << 20

// writebackFile writes to a pack's temp file and, every writebackEvery
// bytes, asks the kernel to start writing them out (sync_file_range with
// SYNC_FILE_RANGE_WRITE, which does not wait for the writes). The pack then
// reaches the disk as a steady stream while it is filled, and the fsync of
// Save finds little left, instead of a whole pack (16 MiB) at once that
// every fsync of the workloads beside backupd (a proxy's access log on the
// same disk) would queue behind. Advisory only: an error is ignored, as the
// fsync reports any that matters.
type writebackFile struct {
	f *os.File
	// start is the first byte not yet handed to writeback, end the end of
	// the file.
	start, end int64
}

func (w *writebackFile) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.end += int64(n)
	if w.end-w.start >= writebackEvery {
		_ = unix.SyncFileRange(int(w.f.Fd()), w.start, w.end-w.start, unix.SYNC_FILE_RANGE_WRITE)
		w.start = w.end
	}
	return n, err
}

func (p *packer) write(b []byte) error {
	_, _ = p.h.Write(b)
	_, err := p.w.Write(b)
	p.size += int64(len(b))
	return err
}

func (p *packer) add(pb PackBlob, sealed []byte) error {
	pb.Offset = uint32(p.size)
	if err := p.write(sealed); err != nil {
		return err
	}
	p.blobs = append(p.blobs, pb)
	return nil
}

func (p *packer) discard() {
	name := p.f.Name()
	_ = p.f.Close()
	_ = os.Remove(name)
}

// finishPack seals the trailer, stores the pack and records it in the
// in-memory index and the pending delta. It runs in an upload goroutine
// (startUpload) or in Flush.
//
// Invariant: a pack enters the index and the delta only after its Save
// returned nil (or ErrExists: the name is the content's hash, so the same
// bytes are stored), so an index file never names a pack that is not
// durable (docs/DESIGN.md §3).
func (r *Repo) finishPack(ctx context.Context, p *packer) error {
	defer p.discard()
	trailer := r.key.Seal(nil, EncodeTrailer(p.blobs), trailerAD)
	var tail [packTailSize]byte
	tail[0], tail[1], tail[2], tail[3] = byte(len(trailer)), byte(len(trailer)>>8), byte(len(trailer)>>16), byte(len(trailer)>>24)
	copy(tail[4:], packMagic)
	if err := p.write(trailer); err != nil {
		return fmt.Errorf("write pack trailer: %w", err)
	}
	if err := p.write(tail[:]); err != nil {
		return fmt.Errorf("write pack trailer: %w", err)
	}
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("write pack: %w", err)
	}
	var id ID
	p.h.Sum(id[:0])
	err := r.be.Save(ctx, backend.Handle{Type: backend.PackFile, Name: id.String()}, p.f)
	if err != nil && !errors.Is(err, backend.ErrExists) {
		return fmt.Errorf("save pack %s: %w", id.Str(), err)
	}
	r.opt.Faults.Hit(faultpoint.AfterPackPut)
	r.cacheTreePack(id, p)
	r.idx.AddPack(id, p.blobs)
	r.mu.Lock()
	for _, pb := range p.blobs {
		delete(r.pending, pb.ID)
	}
	r.delta = append(r.delta, IndexPack{ID: id, Blobs: p.blobs})
	due := len(r.delta) >= r.opt.IndexEveryPacks || r.opt.Now().Sub(r.lastIndex) >= r.opt.IndexEvery
	r.mu.Unlock()
	if due {
		return r.writeDelta(ctx)
	}
	return nil
}

// cacheTreePack keeps a copy of a stored tree pack small enough for
// treePack to load whole in the local cache, read back from its temp file:
// the next backup reads the trees it refers to from there.
func (r *Repo) cacheTreePack(id ID, p *packer) {
	if r.cache == nil || p.size > treePackCacheBytes/2 || len(p.blobs) == 0 {
		return
	}
	for _, pb := range p.blobs {
		if pb.Type != TreeBlob {
			return
		}
	}
	b := make([]byte, p.size)
	if _, err := p.f.ReadAt(b, 0); err != nil {
		r.log.Debug("cannot keep a copy of a tree pack in the local cache", "pack", id.Str(), "err", err)
		return
	}
	if Hash(b) != id {
		return // the temp file changed under us: keep nothing
	}
	r.cacheSave(backend.Handle{Type: backend.PackFile, Name: id.String()}, b)
}

// writeDelta writes the packs stored since the last index file.
func (r *Repo) writeDelta(ctx context.Context) error {
	r.mu.Lock()
	delta := r.delta
	r.delta = nil
	r.lastIndex = r.opt.Now()
	r.mu.Unlock()
	if len(delta) == 0 {
		return nil
	}
	id, err := r.SaveIndexFile(ctx, &IndexFile{Packs: delta})
	if err != nil {
		r.mu.Lock()
		r.delta = append(delta, r.delta...)
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	r.indexIDs = append(r.indexIDs, id)
	r.mu.Unlock()
	return nil
}

// Flush waits for the uploads in flight, stores every open pack and writes
// an index file for all packs not yet indexed. After Flush returns nil,
// every blob SaveBlob accepted is durable and indexed: a snapshot may now
// refer to it. When it fails, the open packs are discarded (their temp
// files removed) whatever happens next; Checkpoint still indexes the packs
// already stored.
func (r *Repo) Flush(ctx context.Context) error {
	if err := r.waitUploads(ctx); err != nil {
		r.discardOpen()
		return err
	}
	r.mu.Lock()
	if err := r.packErr; err != nil {
		r.mu.Unlock()
		r.discardOpen()
		return err
	}
	var open []*packer
	for t, p := range r.packers {
		open = append(open, p)
		delete(r.packers, t)
	}
	r.mu.Unlock()
	var firstErr error
	for _, p := range open {
		if firstErr != nil {
			p.discard()
			continue
		}
		if err := r.finishPack(ctx, p); err != nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return firstErr
	}
	return r.writeDelta(ctx)
}

// Checkpoint waits for the uploads in flight (cancelling them when ctx
// ends), discards open packs, and writes an index file for the packs
// already stored, for a backup that stops early: its stored work is
// indexed and reused.
func (r *Repo) Checkpoint(ctx context.Context) error {
	waitErr := r.waitUploads(ctx)
	r.discardOpen()
	if err := r.writeDelta(ctx); err != nil {
		return err
	}
	return waitErr
}

// Abort cancels the uploads in flight, waits for them to return, and
// discards open packs without storing them. A pack whose upload had
// completed is still indexed by a later Checkpoint or Flush.
func (r *Repo) Abort() {
	r.cancelUploads()
	r.packWG.Wait()
	r.discardOpen()
}

func (r *Repo) discardOpen() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, p := range r.packers {
		p.discard()
		delete(r.packers, t)
	}
}
