package repository_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/retry"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

// flipper wraps a backend and flips a byte in transit of the loads of
// objects of the given types: the first load of each object only (once),
// or every load.
type flipper struct {
	backend.Backend
	types  map[backend.FileType]bool
	always bool
	mu     sync.Mutex
	loads  map[backend.Handle]int
}

func (f *flipper) Unwrap() backend.Backend { return f.Backend }

func (f *flipper) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if !f.types[h.Type] {
		return f.Backend.Load(ctx, h, length, offset, fn)
	}
	f.mu.Lock()
	f.loads[h]++
	flip := f.always || f.loads[h] == 1
	f.mu.Unlock()
	return f.Backend.Load(ctx, h, length, offset, func(rd io.Reader) error {
		if !flip {
			return fn(rd)
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		b[len(b)/2] ^= 0x10
		return fn(bytes.NewReader(b))
	})
}

func (f *flipper) setTypes(types ...backend.FileType) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.types = map[backend.FileType]bool{}
	for _, t := range types {
		f.types[t] = true
	}
}

func (f *flipper) count(h backend.Handle) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loads[h]
}

// A byte flipped in transit is fetched again by the retry layer, because
// the repository verifies inside the Load's fn; a byte flipped on every
// fetch (damage at rest) is reported as a CorruptError and no bad data is
// returned.
func TestVerifiedLoadsAreRefetched(t *testing.T) {
	ctx := t.Context()
	r, m := repotest.NewMem(t)
	data := []byte(strings.Repeat("mesh access log line\n", 5000))
	tree := []byte(`{"nodes":[]}` + strings.Repeat(" ", 1000))
	dataID, treeID := r.BlobID(data), r.TreeID(tree)
	for _, b := range []struct {
		t  repository.BlobType
		id repository.ID
		p  []byte
	}{{repository.DataBlob, dataID, data}, {repository.TreeBlob, treeID, tree}} {
		if _, _, err := r.SaveBlob(ctx, b.t, b.id, b.p); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	snapPlain := []byte(`{"snapshot":"manifest"}`)
	snapID, err := r.SaveUnpacked(ctx, backend.SnapshotFile, snapPlain)
	if err != nil {
		t.Fatal(err)
	}
	dataLoc, _ := r.Index().Lookup(dataID)
	dataPack := backend.Handle{Type: backend.PackFile, Name: dataLoc.Pack.String()}
	fi, err := m.Stat(ctx, dataPack)
	if err != nil {
		t.Fatal(err)
	}

	noSleep := func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	for _, always := range []bool{false, true} {
		name := map[bool]string{false: "flipped once", true: "flipped always"}[always]
		t.Run(name, func(t *testing.T) {
			loads := []struct {
				name string
				typ  backend.FileType
				load func(r *repository.Repo) ([]byte, error)
				want []byte
			}{
				{"data blob", backend.PackFile, func(r *repository.Repo) ([]byte, error) {
					return r.LoadBlob(ctx, repository.DataBlob, dataID, nil)
				}, data},
				{"tree blob", backend.PackFile, func(r *repository.Repo) ([]byte, error) {
					return r.LoadBlob(ctx, repository.TreeBlob, treeID, nil)
				}, tree},
				{"snapshot", backend.SnapshotFile, func(r *repository.Repo) ([]byte, error) {
					return r.LoadUnpacked(ctx, backend.SnapshotFile, snapID)
				}, snapPlain},
				{"index", backend.IndexFile, func(r *repository.Repo) ([]byte, error) {
					files, err := r.ReadIndexFiles(ctx)
					if err != nil {
						return nil, err
					}
					if len(files) != 1 {
						t.Fatalf("%d index files", len(files))
					}
					if files[0].Err != nil {
						return nil, files[0].Err
					}
					return []byte("ok"), nil
				}, []byte("ok")},
				{"pack trailer", backend.PackFile, func(r *repository.Repo) ([]byte, error) {
					blobs, err := r.ReadPackTrailer(ctx, dataLoc.Pack, fi.Size)
					if err != nil {
						return nil, err
					}
					return []byte{byte(len(blobs))}, nil
				}, []byte{1}},
			}
			for _, l := range loads {
				t.Run(l.name, func(t *testing.T) {
					fb := &flipper{Backend: m, always: always, loads: map[backend.Handle]int{}}
					var retries int
					be := retry.New(fb, retry.Options{RetryFor: -1, Sleep: noSleep, OnRetry: func(string, int, error) { retries++ }})
					rr := repotest.Reopen(t, be, repository.Options{})
					if err := rr.LoadIndex(ctx); err != nil {
						t.Fatal(err)
					}
					fb.setTypes(l.typ)
					got, err := l.load(rr)
					if !always {
						if err != nil {
							t.Fatalf("load: %v", err)
						}
						if !bytes.Equal(got, l.want) {
							t.Fatalf("got %.40q, want %.40q", got, l.want)
						}
						if retries == 0 {
							t.Errorf("no re-fetch counted")
						}
						return
					}
					var ce *repository.CorruptError
					if !errors.As(err, &ce) || !errors.Is(err, repository.ErrCorrupt) || !errors.Is(err, backend.ErrIntegrity) {
						t.Fatalf("want a CorruptError matching ErrCorrupt and ErrIntegrity, got %v", err)
					}
					if got != nil {
						t.Errorf("bad data returned: %.40q", got)
					}
					if retries != retry.DefaultIntegrityRefetches && l.name != "tree blob" {
						t.Errorf("%d re-fetches, want %d", retries, retry.DefaultIntegrityRefetches)
					}
				})
			}
		})
	}
	t.Run("data pack fetched twice when flipped once", func(t *testing.T) {
		fb := &flipper{Backend: m, loads: map[backend.Handle]int{}}
		rr := repotest.Reopen(t, retry.New(fb, retry.Options{RetryFor: -1, Sleep: noSleep}), repository.Options{})
		if err := rr.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		fb.setTypes(backend.PackFile)
		if _, err := rr.LoadBlob(ctx, repository.DataBlob, dataID, nil); err != nil {
			t.Fatal(err)
		}
		if n := fb.count(dataPack); n != 2 {
			t.Errorf("pack loaded %d times, want 2", n)
		}
	})
}

// ambiguousSave stores the first save of each type in types, then
// reports a transient failure, as a store whose answer was lost.
type ambiguousSave struct {
	backend.Backend
	types map[backend.FileType]bool
	mu    sync.Mutex
	done  map[backend.FileType]bool
}

func (a *ambiguousSave) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	a.mu.Lock()
	first := a.types[h.Type] && !a.done[h.Type]
	a.done[h.Type] = true
	a.mu.Unlock()
	if err := a.Backend.Save(ctx, h, rd); err != nil || !first {
		return err
	}
	return backend.Transient(errors.New("connection reset after the upload"))
}

// Through the retry layer, a save whose answer was lost after the store
// kept it is retried, finds its name taken by its own bytes, and succeeds:
// for locks and orphan hints (random names) as for packs, index files and
// snapshots (named by their content).
func TestAmbiguousSavesSucceedThroughRetries(t *testing.T) {
	ctx := t.Context()
	_, m := repotest.NewMem(t)
	amb := &ambiguousSave{Backend: m, done: map[backend.FileType]bool{}, types: map[backend.FileType]bool{
		backend.LockFile: true, backend.MarkerFile: true, backend.PackFile: true, backend.IndexFile: true, backend.SnapshotFile: true}}
	noSleep := func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	r := repotest.Reopen(t, retry.New(amb, retry.Options{RetryFor: -1, Sleep: noSleep}), repository.Options{LockRefresh: time.Hour})
	l, err := r.Lock(ctx, repository.LockOptions{Command: "backup"})
	if err != nil {
		t.Fatalf("lock: %v", err)
	}
	defer func() { _ = l.Unlock() }()
	if err := r.MarkOrphans(ctx); err != nil {
		t.Fatalf("mark orphans: %v", err)
	}
	data := []byte(strings.Repeat("x", 1000))
	if _, _, err := r.SaveBlob(ctx, repository.DataBlob, r.BlobID(data), data); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if _, err := r.SaveUnpacked(ctx, backend.SnapshotFile, []byte("{}")); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	locks, err := r.ListLocks(ctx)
	if err != nil || len(locks) != 1 {
		t.Fatalf("%d lock objects (%v), want 1", len(locks), err)
	}
}
