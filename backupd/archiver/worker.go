package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/regfile"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

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
	defer job.dir.release()
	if h := w.a.beforeOpen; h != nil {
		h(job.path)
	}
	f, st, err := openSource(job)
	if (err == nil && st.Ino != job.inode) || errors.Is(err, fs.ErrNotExist) {
		// The name holds another file now, or none: the file the scan
		// listed may have been renamed within its directory (a log
		// rotated, access.log to access.log.1, after the listing and
		// before this read). Its bytes were written before the listing;
		// read them, under the name it was listed with, rather than lose
		// them from the snapshot (docs/DESIGN.md §8 scenario 11).
		if mf, mst, name, ok := w.openRenamed(job); ok {
			if f != nil {
				f.Close()
			}
			f, st, err = mf, mst, nil
			w.a.log.Debug("file renamed since the scan; read under its new name", "path", job.path, "now", name)
			w.a.Stats.Renamed.Add(1)
		}
	}
	if err != nil {
		return w.openFailed(job, err)
	}
	defer f.Close()
	if st.Ino != job.inode {
		// Replaced (renamed over: a config dump rewritten) since the scan,
		// within the directory the scan listed: read as found.
		w.a.log.Debug("file replaced since the scan; read as found", "path", job.path)
		w.a.Stats.Replaced.Add(1)
	}
	info := entryFromStat(job.name, st)
	node := baseNode(&info)
	node.Type = snapshot.TypeFile
	// Every read of the file's data goes through the budget (read rate,
	// CPU); f itself only seeks.
	src := w.a.budget.Reader(ctx, f)
	content, offset, ok := w.keptContent(ctx, src, job, &node, st.Size)
	if !ok {
		return w.keepParent(job, errors.New("could not re-read it to compare with the backup"))
	}
	content, size, ok, err := w.chunkFrom(ctx, f, src, job, content, offset)
	if !ok || err != nil {
		return err
	}
	node.Size = uint64(size)
	node.Content = content
	w.checkSilentChange(job, &node)
	h := snapshot.ContentHash(content)
	node.Hash = &h
	w.count(job, node)
	job.res.node = node
	return nil
}

// checkSilentChange reports a file read because its ctime changed whose
// content differs from its previous version although its size and
// modification time do not. A writer moves the mtime; a content change
// without it is bit rot (under a chmod, chown or anything else that moved
// the ctime, which user space cannot put back) or an edit whose times were
// put back (touch -r, cp -p, rsync -t). It is stored as found, as every
// change is; the older snapshots keep the earlier version, and the
// operator is told (a warning naming the file, Stats.SilentChanges,
// backupd_source_silent_changes_total). A file unchanged in every
// attribute but due for its periodic full read is tail.go's case.
func (w *worker) checkSilentChange(job *fileJob, node *snapshot.Node) {
	pn := job.parent
	if pn == nil || job.verify || job.moved || pn.Inode != node.Inode || pn.Size != node.Size || pn.MtimeNS != node.MtimeNS ||
		pn.CtimeNS == node.CtimeNS || slices.Equal(pn.Content, node.Content) {
		return
	}
	w.a.log.Warn("file content changed but its size and modification time did not; stored as found (bit rot, or an edit whose times were put back)",
		"path", job.path, "metadata_unchanged", false)
	w.a.Stats.SilentChanges.Add(1)
}

// openSource opens the file of a job for reading (regfile.OpenAt): relative
// to the directory the scan listed it in, so no symlink swapped in for that
// directory or an ancestor is followed (docs/DESIGN.md §8 scenario 37) and
// path length is no limit; not through a symlink swapped in for the file;
// never waiting on a FIFO or device swapped in (scenario 38); only a
// regular file; without updating its access time where the owner allows.
func openSource(job *fileJob) (*os.File, *unix.Stat_t, error) {
	if job.dir == nil {
		return nil, nil, fmt.Errorf("internal error: %s queued without its directory", job.path)
	}
	return regfile.OpenAt(int(job.dir.fd), job.name, job.path)
}

// openRenamed looks for the file the scan listed for job under another
// name in the same directory: the inode listed, a regular file, no
// smaller and no older than listed (a rotated log only grows; an inode
// number reused by a new file is most likely smaller or has an older
// modification time than the file listed had). It opens the directory
// again (the scan's descriptor is shared and read to its end) and opens
// the name found relative to it, checking the inode again after the open.
func (w *worker) openRenamed(job *fileJob) (*os.File, *unix.Stat_t, string, bool) {
	if job.dir == nil {
		return nil, nil, "", false
	}
	var fd int
	err := retryEINTR(func() (err error) {
		fd, err = unix.Openat(int(job.dir.fd), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, nil, "", false
	}
	d := dirFD(fd)
	defer d.Close()
	names, _ := readNames(d, job.path, make([]byte, 8<<10))
	for _, name := range names {
		if name == job.name {
			continue
		}
		var st unix.Stat_t
		if err := retryEINTR(func() error { return unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
			continue
		}
		if st.Ino != job.inode || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size < job.size || st.Mtim.Sec*1e9+st.Mtim.Nsec < job.mtimeNS {
			continue
		}
		p := filepath.Join(filepath.Dir(job.path), name)
		f, fst, err := regfile.OpenAt(fd, name, p)
		if err != nil {
			return nil, nil, "", false
		}
		if fst.Ino != job.inode {
			f.Close()
			return nil, nil, "", false
		}
		return f, fst, name, true
	}
	return nil, nil, "", false
}

// openFailed handles a file that could not be opened: gone or replaced by
// a symlink since the scan (skipped quietly), replaced by something that is
// not a regular file or unreadable (skipped and warned about, an error), or
// due for its full read (the parent's version kept).
func (w *worker) openFailed(job *fileJob, err error) error {
	if errors.Is(err, regfile.ErrNotRegular) {
		w.skip(job)
		w.a.warn(job.path, err)
		return nil
	}
	if job.verify && !errors.Is(err, fs.ErrNotExist) {
		return w.keepParent(job, err)
	}
	w.skip(job)
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ELOOP) {
		w.a.warn(job.path, err)
	}
	return nil
}

// skip leaves the file out of its directory's tree.
func (w *worker) skip(job *fileJob) {
	job.res.skip = true
	w.a.Stats.FilesSkipped.Add(1)
}

// chunkFrom chunks f, read through src, from offset on, appending the
// chunks' ids to content, and hands the chunks the repository lacks to the
// savers. It returns the content and the file's size; ok is false if
// reading failed, which fileError has dealt with.
func (w *worker) chunkFrom(ctx context.Context, f *os.File, src io.Reader, job *fileJob, content []repository.ID, offset int64) (_ []repository.ID, size int64, ok bool, err error) {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, 0, false, w.fileError(job, err)
	}
	if w.window == nil {
		w.window = make([]byte, chunker.MaxSize+1<<20)
	}
	c := chunker.New(w.table, src, w.window)
	size = offset
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, false, err
		}
		chunk, err := c.Next()
		if errors.Is(err, io.EOF) {
			return content, size, true, nil
		}
		if err != nil {
			return nil, 0, false, w.fileError(job, err)
		}
		size += int64(len(chunk))
		id, err := w.storeChunk(ctx, chunk)
		if err != nil {
			return nil, 0, false, err
		}
		content = append(content, id)
	}
}

// storeChunk counts a chunk read, hashes it, and queues it for the savers
// unless the repository has it. The savers get a copy: chunk is the
// chunker's window.
func (w *worker) storeChunk(ctx context.Context, chunk []byte) (repository.ID, error) {
	a := w.a
	a.Stats.BytesRead.Add(uint64(len(chunk)))
	id := w.id(chunk)
	a.repo.Faults().Hit(faultpoint.AfterChunk)
	if a.repo.Has(id) {
		return id, nil
	}
	buf := getChunk(len(chunk))
	buf = append(buf, chunk...)
	select {
	case w.blobs <- blobJob{id: id, buf: buf}:
		return id, nil
	case <-ctx.Done():
		putChunk(buf)
		return id, ctx.Err()
	}
}

// count counts a file read as unchanged (a full read that found the
// parent's content), changed or new.
func (w *worker) count(job *fileJob, node snapshot.Node) {
	s := &w.a.Stats
	switch pn := job.parent; {
	case job.verify && node.Size == pn.Size && slices.Equal(node.Content, pn.Content):
		s.FilesUnchanged.Add(1)
	case job.known:
		s.FilesChanged.Add(1)
	default:
		s.FilesNew.Add(1)
	}
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
