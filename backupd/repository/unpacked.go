package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/faultpoint"
)

// loadSealed loads a whole sealed object, checks that its name is the hash
// of its bytes (for content-named types) and opens it.
func (r *Repo) loadSealed(ctx context.Context, h backend.Handle, ad []byte) ([]byte, error) {
	buf, err := backend.LoadAll(ctx, r.be, h)
	if err != nil {
		return nil, err
	}
	if id, err := ParseID(h.Name); err == nil && Hash(buf) != id {
		return nil, &CorruptError{What: string(h.Type), ID: id, Err: errors.New("content does not match its name")}
	}
	plain, err := r.key.Open(nil, buf, ad)
	if err != nil {
		id, _ := ParseID(h.Name)
		return nil, &CorruptError{What: string(h.Type), ID: id, Err: err}
	}
	return plain, nil
}

// saveSealed seals plain and stores it under the hash of the result.
func (r *Repo) saveSealed(ctx context.Context, t backend.FileType, plain, ad []byte) (ID, error) {
	sealed := r.key.Seal(nil, plain, ad)
	id := Hash(sealed)
	err := r.be.Save(ctx, backend.Handle{Type: t, Name: id.String()}, bytes.NewReader(sealed))
	if err != nil && !errors.Is(err, backend.ErrExists) {
		return id, err
	}
	return id, nil
}

var snapshotAD = []byte("backupd snapshot v1")

var resultAD = []byte("backupd result v1")

// SaveResult stores a sealed run record and returns its id.
func (r *Repo) SaveResult(ctx context.Context, plain []byte) (ID, error) {
	id, err := r.saveSealed(ctx, backend.ResultFile, plain, resultAD)
	if err != nil {
		return id, fmt.Errorf("save result: %w", err)
	}
	return id, nil
}

// LoadResult loads a run record's plaintext.
func (r *Repo) LoadResult(ctx context.Context, id ID) ([]byte, error) {
	return r.loadSealed(ctx, backend.Handle{Type: backend.ResultFile, Name: id.String()}, resultAD)
}

// SaveSnapshotJSON stores an encoded snapshot manifest and returns its id.
// Callers must have flushed every pack and index the snapshot refers to.
func (r *Repo) SaveSnapshotJSON(ctx context.Context, plain []byte) (ID, error) {
	id, err := r.saveSealed(ctx, backend.SnapshotFile, plain, snapshotAD)
	if err != nil {
		return id, fmt.Errorf("save snapshot: %w", err)
	}
	r.opt.Faults.Hit(faultpoint.AfterSnapshotWrite)
	return id, nil
}

// LoadSnapshotJSON loads a snapshot manifest's plaintext.
func (r *Repo) LoadSnapshotJSON(ctx context.Context, id ID) ([]byte, error) {
	b, err := r.loadSealed(ctx, backend.Handle{Type: backend.SnapshotFile, Name: id.String()}, snapshotAD)
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", id.Str(), err)
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
	return ids, err
}
