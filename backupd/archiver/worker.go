package archiver

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"syscall"

	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/faultpoint"
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
