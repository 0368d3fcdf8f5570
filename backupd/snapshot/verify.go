package snapshot

import (
	"context"
	"fmt"
	"io"

	"github.com/meshbackup/backupd/backupd/repository"
)

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
