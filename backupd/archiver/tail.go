package archiver

import (
	"context"
	"io"
	"path/filepath"
	"slices"

	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

func (a *Archiver) appendOnly(name string) bool {
	for _, p := range a.opt.AppendOnly {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
	}
	return false
}

// keptContent decides how much of the parent's version of the file in f,
// now of the given size, is kept unread: for a moved file, an append-only
// one, or one due for its full read whose parent has the same inode and
// was not longer, the chunks tail keeps; else none. It returns the kept
// chunks and the offset to chunk from, and sets node.TailRuns when content
// was taken unread. ok is false when a full read is due but the file could
// not be re-read: the parent's version must then be kept.
func (w *worker) keptContent(ctx context.Context, f io.ReaderAt, job *fileJob, node *snapshot.Node, size int64) (kept []repository.ID, offset int64, ok bool) {
	pn := job.parent
	if pn == nil || !(job.moved || job.verify || w.a.appendOnly(job.name)) || pn.Inode != node.Inode || size < int64(pn.Size) || len(pn.Content) == 0 {
		return nil, 0, true
	}
	// A moved file is re-hashed whole: its name says nothing about how it
	// was written.
	full := job.moved || job.verify || pn.TailRuns+1 >= w.a.opt.FullReadEvery
	prefix, off, ok, edited := w.tail(ctx, f, pn, full)
	if !ok {
		return nil, 0, !job.verify
	}
	if !full && len(prefix) > 0 {
		node.TailRuns = pn.TailRuns + 1
	}
	switch {
	case edited && job.verify:
		// Content changed behind unchanged metadata: bit rot, or an edit
		// that put the metadata back. An operator should know.
		w.a.log.Warn("file changed in place where the previous backup did not read it, its metadata unchanged; stored again from there",
			"path", job.path, "offset", off, "metadata_unchanged", true)
		w.a.Stats.SilentChanges.Add(1)
	case edited:
		// The metadata changed too: an ordinary rewrite (a config dump
		// rewritten whose new inode is one the previous backup knew under
		// another name, or a log edited as it grew). Counted, summed up
		// once per backup at INFO.
		w.a.log.Debug("file rewritten where the previous backup did not read it; stored again from there",
			"path", job.path, "offset", off)
		w.a.Stats.Rewritten.Add(1)
	}
	return prefix, off, true
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
func (w *worker) tail(ctx context.Context, f io.ReaderAt, pn *snapshot.Node, full bool) (kept []repository.ID, offset int64, ok, edited bool) {
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
