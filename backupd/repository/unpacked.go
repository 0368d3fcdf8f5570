package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/faultpoint"
)

// An unpacked object is stored whole, one per backend object: sealed with
// the associated data "backupd <type> v1", the type named in the singular
// ("backupd snapshot v1" for snapshots), and named by the hash of its sealed
// bytes. Index files and snapshots are unpacked objects; so are the sealed
// objects of any other type a client of the repository stores. The
// repository seals and authenticates them but does not interpret them
// (index files aside, see indexfiles.go). See docs/FORMAT.md.

// checkUnpacked reports whether objects of type t are unpacked objects.
// Types the repository stores otherwise (packs of blobs; plaintext config,
// keys, locks and markers) are not.
func checkUnpacked(t backend.FileType) error {
	switch t {
	case backend.PackFile:
		return fmt.Errorf("%s objects are packs of blobs, not unpacked objects", t)
	case backend.ConfigFile, backend.KeyFile, backend.LockFile, backend.MarkerFile:
		return fmt.Errorf("%s objects are stored in plaintext, not sealed", t)
	}
	if !slices.Contains(backend.Types, t) {
		return fmt.Errorf("unknown object type %q", t)
	}
	return nil
}

// unpackedNoun names an unpacked object of type t in the singular, for its
// associated data and for messages.
func unpackedNoun(t backend.FileType) string { return strings.TrimSuffix(string(t), "s") }

// unpackedAD is the associated data that seals an unpacked object of type t.
func unpackedAD(t backend.FileType) []byte { return []byte("backupd " + unpackedNoun(t) + " v1") }

// SaveUnpacked seals plain as an unpacked object of type t and returns its
// id, the hash of the sealed bytes; an object already stored under that id
// is not an error. A snapshot must be saved after everything it refers to:
// call Flush first.
func (r *Repo) SaveUnpacked(ctx context.Context, t backend.FileType, plain []byte) (ID, error) {
	if err := checkUnpacked(t); err != nil {
		return ID{}, fmt.Errorf("save: %w", err)
	}
	id, err := r.saveSealed(ctx, t, plain, unpackedAD(t))
	if err != nil {
		return id, fmt.Errorf("save %s: %w", unpackedNoun(t), err)
	}
	switch t {
	case backend.IndexFile:
		r.opt.Faults.Hit(faultpoint.AfterIndexWrite)
	case backend.SnapshotFile:
		r.opt.Faults.Hit(faultpoint.AfterSnapshotWrite)
	}
	return id, nil
}

// LoadUnpacked loads the unpacked object id of type t and returns its
// plaintext. An object that fails authentication or whose content does not
// match its name is a *CorruptError; a missing one matches
// backend.ErrNotFound.
func (r *Repo) LoadUnpacked(ctx context.Context, t backend.FileType, id ID) ([]byte, error) {
	if err := checkUnpacked(t); err != nil {
		return nil, fmt.Errorf("load %s: %w", id.Str(), err)
	}
	b, err := r.loadSealed(ctx, backend.Handle{Type: t, Name: id.String()}, unpackedAD(t))
	if err != nil {
		return nil, fmt.Errorf("load %s %s: %w", unpackedNoun(t), id.Str(), err)
	}
	return b, nil
}

// ListSnapshots returns the ids of all snapshot objects.
func (r *Repo) ListSnapshots(ctx context.Context) ([]ID, error) {
	var ids []ID
	err := r.be.List(ctx, backend.SnapshotFile, func(fi backend.FileInfo) error {
		id, err := ParseID(fi.Name)
		if err != nil {
			r.log.Warn("ignoring snapshot object with a malformed name", "name", fi.Name)
			return nil
		}
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	listed := make(map[string]bool, len(ids))
	for _, id := range ids {
		listed[id.String()] = true
	}
	r.cachePrune(backend.SnapshotFile, func(n string) bool { return listed[n] })
	return ids, nil
}

// loadSealed loads a whole sealed object, checks that its name is the hash
// of its bytes (for content-named types) and opens it. Index files and
// snapshots are read from the local cache when it holds a copy that passes
// the same checks, and kept there when fetched.
func (r *Repo) loadSealed(ctx context.Context, h backend.Handle, ad []byte) ([]byte, error) {
	var plain []byte
	open := func(buf []byte) error {
		id, perr := ParseID(h.Name)
		if perr == nil && Hash(buf) != id {
			return &CorruptError{What: string(h.Type), ID: id, Err: errors.New("content does not match its name")}
		}
		p, err := r.key.Open(nil, buf, ad)
		if err != nil {
			return &CorruptError{What: string(h.Type), ID: id, Err: err}
		}
		plain = p
		return nil
	}
	// Invariant: a cached copy is used only when its hash is its name and
	// it opens with the key, as a fetched one must.
	if _, ok := r.cacheLoad(h, open); ok {
		return plain, nil
	}
	var sealed []byte
	// Verified inside the Load's fn, so that a retrying backend fetches
	// again when the bytes that arrived are bad (a *CorruptError matches
	// backend.ErrIntegrity); bad bytes never leave the fn.
	err := r.be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		buf, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if err := open(buf); err != nil {
			return err
		}
		sealed = buf
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, perr := ParseID(h.Name); perr == nil {
		r.cacheSave(h, sealed)
	}
	return plain, nil
}

// saveSealed seals plain and stores it under the hash of the result.
func (r *Repo) saveSealed(ctx context.Context, t backend.FileType, plain, ad []byte) (ID, error) {
	sealed := r.key.Seal(nil, plain, ad)
	id := Hash(sealed)
	h := backend.Handle{Type: t, Name: id.String()}
	err := r.be.Save(ctx, h, bytes.NewReader(sealed))
	if err != nil && !errors.Is(err, backend.ErrExists) {
		return id, err
	}
	r.cacheSave(h, sealed)
	return id, nil
}
