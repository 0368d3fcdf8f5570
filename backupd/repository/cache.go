package repository

import (
	"errors"
	"io/fs"

	"github.com/meshbackup/backupd/backupd/backend"
)

// Cache holds local copies of immutable repository objects, so that a
// process reading a repository on object storage fetches each of them once
// per machine rather than once per run: index files, snapshots and tree
// packs (packs of tree blobs only; the repository builds one pack per blob
// type). Every one of them is named by the BLAKE3 of its stored bytes and
// never changes. Package repository/cache implements it in a directory.
//
// The repository never trusts a copy: every one it reads is checked
// against its name (and opened by its key, as a copy from the backend is)
// before it is used, and one that fails is removed and the object fetched
// from the backend instead. Damage to the cache costs a fetch, never a
// snapshot. Config, keys, locks and markers are never cached: they are not
// named by their content, or are mutable, or must be fresh.
//
// A Cache is safe for concurrent use, by this process and by others using
// the same directory; errors are logged by the repository and otherwise
// ignored (a broken cache is no cache).
type Cache interface {
	// Load returns the copy of h, or an error matching fs.ErrNotExist
	// when there is none.
	Load(h backend.Handle) ([]byte, error)
	// Save stores data as the copy of h (atomically: a reader sees the
	// whole copy or none).
	Save(h backend.Handle, data []byte) error
	// Remove removes the copy of h; a missing copy is not an error.
	Remove(h backend.Handle) error
	// List returns the names of the copies of type t.
	List(t backend.FileType) ([]string, error)
}

// cacheable reports whether objects of type t are kept in the cache (packs
// only when they are tree packs, which the caller decides).
func cacheable(t backend.FileType) bool {
	switch t {
	case backend.IndexFile, backend.SnapshotFile, backend.PackFile:
		return true
	}
	return false
}

// cacheLoad returns the cached copy of h when there is one and check
// accepts it. A copy check refuses, or that cannot be read, is removed:
// the caller fetches the object from the backend.
func (r *Repo) cacheLoad(h backend.Handle, check func([]byte) error) ([]byte, bool) {
	if r.cache == nil || !cacheable(h.Type) {
		return nil, false
	}
	b, err := r.cache.Load(h)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err == nil {
		if err = check(b); err == nil {
			return b, true
		}
	}
	r.log.Warn("removing a damaged copy from the local cache; reading the object from the repository", "object", h.String(), "err", err)
	if err := r.cache.Remove(h); err != nil {
		r.log.Warn("cannot remove a damaged cache entry", "object", h.String(), "err", err)
	}
	return nil, false
}

// cacheSave keeps a copy of h, verified by the caller. A failure only costs
// a fetch later.
func (r *Repo) cacheSave(h backend.Handle, b []byte) {
	if r.cache == nil || !cacheable(h.Type) {
		return
	}
	if err := r.cache.Save(h, b); err != nil {
		r.log.Debug("cannot keep a copy in the local cache", "object", h.String(), "err", err)
	}
}

// cachePrune removes the copies of type t for which keep is false: objects
// the repository no longer holds. It runs where the repository lists or
// indexes a type anyway.
func (r *Repo) cachePrune(t backend.FileType, keep func(name string) bool) {
	if r.cache == nil {
		return
	}
	names, err := r.cache.List(t)
	if err != nil {
		r.log.Debug("cannot list the local cache", "type", string(t), "err", err)
		return
	}
	for _, n := range names {
		if keep(n) {
			continue
		}
		if err := r.cache.Remove(backend.Handle{Type: t, Name: n}); err != nil {
			r.log.Debug("cannot remove a stale cache entry", "object", string(t)+"/"+n, "err", err)
		}
	}
}
