package repository

import (
	"context"
	"fmt"

	"github.com/meshbackup/backupd/backupd/backend"
)

// LoadIndex reads every index file into the in-memory index, and the damage
// records (see Damage): recorded damaged copies are indexed as damaged, so
// Has reports false for them. Index files named as superseded by another
// are skipped, even when they cannot be read. An unreadable index file that
// is not superseded is an *IndexFileError, which matches ErrCorrupt and
// tells the user to run repair index (check reports each one separately,
// see ReadIndexFiles).
func (r *Repo) LoadIndex(ctx context.Context) error {
	damage, err := r.LoadDamage(ctx)
	if err != nil {
		return fmt.Errorf("load index: %w", err)
	}
	r.mu.Lock()
	r.damage = damage
	r.mu.Unlock()
	r.idx.SetDamage(damage)
	files, err := r.ReadIndexFiles(ctx)
	if err != nil {
		return err
	}
	superseded := map[ID]bool{}
	for _, f := range files {
		if f.Err == nil {
			for _, s := range f.File.Supersedes {
				superseded[s] = true
			}
		}
	}
	for _, f := range files {
		if f.Err != nil && !superseded[f.ID] {
			return fmt.Errorf("load index: %w", &IndexFileError{Name: f.Name, Err: f.Err})
		}
	}
	for _, f := range files {
		// Superseded files are remembered too, so that the next full
		// index supersedes them as well and prune removes them.
		r.indexIDs = append(r.indexIDs, f.ID)
		if superseded[f.ID] {
			continue
		}
		for _, p := range f.File.Packs {
			r.idx.AddPack(p.ID, p.Blobs)
		}
	}
	// Tree packs no index lists any more were removed by a prune.
	r.cachePrune(backend.PackFile, func(n string) bool {
		id, err := ParseID(n)
		return err == nil && r.idx.HasPack(id)
	})
	if r.opt.IndexLoaded != nil {
		r.opt.IndexLoaded(r.idx.Len())
	}
	return nil
}

// IndexFileError names an index file that cannot be read or decoded. It
// matches ErrCorrupt: the repository's data is intact in its packs, but the
// index must be rebuilt from them (repair index) before it can be used.
type IndexFileError struct {
	Name string // object name under index/
	Err  error
}

func (e *IndexFileError) Error() string {
	return fmt.Sprintf("index file index/%s is damaged: %v; run 'backupd repair index' to rebuild the index from the packs", e.Name, e.Err)
}

func (e *IndexFileError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *IndexFileError) Is(target error) bool { return target == ErrCorrupt }

// LoadedIndex is one index file as read, or the error reading it.
type LoadedIndex struct {
	ID   ID
	Name string // the object's name (ID is null when it is malformed)
	File *IndexFile
	Err  error
}

// ReadIndexFiles loads and decodes every index file, reporting each one's
// error separately.
func (r *Repo) ReadIndexFiles(ctx context.Context) ([]LoadedIndex, error) {
	var names []string
	if err := r.be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list index files: %w", err)
	}
	listed := make(map[string]bool, len(names))
	for _, n := range names {
		listed[n] = true
	}
	r.cachePrune(backend.IndexFile, func(n string) bool { return listed[n] })
	out := make([]LoadedIndex, 0, len(names))
	for _, n := range names {
		li := LoadedIndex{Name: n}
		id, err := ParseID(n)
		if err != nil {
			li.Err = fmt.Errorf("index file %s: bad name: %w", n, err)
			out = append(out, li)
			continue
		}
		li.ID = id
		plain, err := r.loadSealed(ctx, backend.Handle{Type: backend.IndexFile, Name: n}, unpackedAD(backend.IndexFile))
		if err == nil {
			li.File, err = DecodeIndexFile(plain)
		}
		if err != nil {
			li.Err = fmt.Errorf("index file %s: %w", id.Str(), err)
		}
		out = append(out, li)
	}
	return out, nil
}

// SaveIndexFile encodes and stores an index file (an unpacked object, see
// SaveUnpacked).
func (r *Repo) SaveIndexFile(ctx context.Context, f *IndexFile) (ID, error) {
	return r.SaveUnpacked(ctx, backend.IndexFile, f.Encode())
}

// IndexFileIDs returns the index files loaded (superseded ones included) or
// written by this Repo.
func (r *Repo) IndexFileIDs() []ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ID(nil), r.indexIDs...)
}
