package snapshot

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"syscall"

	"github.com/meshbackup/backupd/backupd/repository"
)

// FileMeta is what a stat of a file says about whether its content may have
// changed since a snapshot recorded it.
type FileMeta struct {
	Inode   uint64
	Size    int64
	MtimeNS int64
	CtimeNS int64
}

// FileMetaOf returns the FileMeta of fi; ok is false if fi is not a regular
// file or carries no syscall.Stat_t.
func FileMetaOf(fi fs.FileInfo) (m FileMeta, ok bool) {
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st == nil || !fi.Mode().IsRegular() {
		return FileMeta{}, false
	}
	return FileMeta{Inode: st.Ino, Size: fi.Size(), MtimeNS: fi.ModTime().UnixNano(), CtimeNS: st.Ctim.Sec*1e9 + st.Ctim.Nsec}, true
}

// SameMetadata applies restic's rule for an unchanged file: n is a file
// node with the same inode, size, mtime and ctime as m. It reads no content
// (and does not ask whether n's chunks are still stored).
func SameMetadata(n Node, m FileMeta) bool {
	return n.Type == TypeFile && n.Inode == m.Inode && n.Size == uint64(m.Size) &&
		n.MtimeNS == m.MtimeNS && n.CtimeNS == m.CtimeNS
}

// ChunkEnds returns the end offset in the file of each of content's chunks,
// from the chunk lengths in r's index.
func ChunkEnds(r *repository.Repo, content []repository.ID) ([]int64, error) {
	ends := make([]int64, len(content))
	var end int64
	for i, id := range content {
		loc, ok := r.Index().Lookup(id)
		if !ok {
			return nil, fmt.Errorf("chunk %s not in index", id.Str())
		}
		end += int64(loc.RawLen)
		ends[i] = end
	}
	return ends, nil
}

// MatchChunks re-reads f at the boundaries ends records for content (see
// ChunkEnds), chunk from and on, and returns the index of the first chunk
// whose bytes no longer hash to its id, or len(content) if every one does.
// A file too short for a chunk gives io.ErrUnexpectedEOF (it shrank), other
// read errors as they are, with the index of that chunk. read counts the
// bytes read. buf is reused.
func MatchChunks(ctx context.Context, r *repository.Repo, f io.ReaderAt, content []repository.ID, ends []int64, from int, buf *[]byte) (first int, read int64, err error) {
	h := r.IDHasher()
	var got repository.ID
	for i := from; i < len(content); i++ {
		if err := ctx.Err(); err != nil {
			return i, read, err
		}
		var start int64
		if i > 0 {
			start = ends[i-1]
		}
		size := int(ends[i] - start)
		if cap(*buf) < size {
			*buf = make([]byte, size)
		}
		b := (*buf)[:size]
		n, err := f.ReadAt(b, start)
		read += int64(n)
		if n < size {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return i, read, err
		}
		h.Reset()
		_, _ = h.Write(b)
		h.Sum(got[:0])
		if got != content[i] {
			return i, read, nil
		}
	}
	return len(content), read, nil
}

// VerifyFile re-reads a file and proves it against a node: the bytes at each
// recorded chunk boundary hash to the chunk's id, nothing follows the last
// one, and the ids hash to the recorded content hash. A file that cannot be
// read is not proved (false); only a done ctx is an error.
func VerifyFile(ctx context.Context, repo *repository.Repo, f io.ReaderAt, n Node, buf *[]byte) (bool, error) {
	ends, err := ChunkEnds(repo, n.Content)
	if err != nil {
		return false, err
	}
	var size int64
	if len(ends) > 0 {
		size = ends[len(ends)-1]
	}
	if size != int64(n.Size) {
		return false, nil
	}
	first, _, err := MatchChunks(ctx, repo, f, n.Content, ends, 0, buf)
	if err != nil || first < len(n.Content) {
		return false, ctx.Err()
	}
	if k, _ := f.ReadAt(make([]byte, 1), size); k != 0 {
		return false, nil
	}
	return ContentHash(n.Content) == *n.Hash, nil
}
