package archiver

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

type fileResult struct {
	done chan struct{}
	node snapshot.Node
	skip bool
}

type fileJob struct {
	path    string
	name    string
	dir     *dirHandle     // the directory the scan listed it in; the job's reference
	inode   uint64         // as listed
	size    int64          // as listed
	mtimeNS int64          // as listed
	parent  *snapshot.Node // the previous version: same name, or same inode (moved)
	moved   bool           // parent is the node of another name with this inode
	known   bool           // the parent snapshot had a file of this name
	verify  bool           // unchanged, but due for its periodic full read
	res     *fileResult
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
			return w.saveFiles(ctx, files)
		})
	}
	for range a.opt.Savers {
		g.Go(func() error { return a.saveBlobs(ctx, blobs) })
	}
	var rootRes *dirResult
	g.Go(func() error {
		defer func() {
			close(files)
			readers.Wait()
			close(blobs)
		}()
		var err error
		w := &walker{a: a, g: g, scan: scan, files: files}
		rootRes, err = w.walkDir(ctx, root, parent, parentID)
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

// saveFiles reads the files of the jobs until files is closed.
func (w *worker) saveFiles(ctx context.Context, files <-chan *fileJob) error {
	for job := range files {
		if err := w.saveFile(ctx, job); err != nil {
			return err
		}
	}
	return nil
}

// saveBlobs stores the data blobs the file workers send until blobs is
// closed, and returns their buffers to the pool.
func (a *Archiver) saveBlobs(ctx context.Context, blobs <-chan blobJob) error {
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
