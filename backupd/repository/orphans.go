package repository

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/meshbackup/backupd/backupd/backend"
)

// OrphanHintPrefix starts the names of markers that say "a backup stored
// packs it could not index".
const OrphanHintPrefix = "orphans-"

// MarkOrphans leaves a hint that packs no index lists may exist.
func (r *Repo) MarkOrphans(ctx context.Context) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	b, _ := json.Marshal(map[string]any{"time": r.opt.Now().UTC(), "hostname": r.opt.Hostname})
	// The name is random: ErrExists can only be a retrying backend's
	// earlier attempt of this Save that stored it (backend/retry).
	err := r.be.Save(ctx, backend.Handle{Type: backend.MarkerFile, Name: OrphanHintPrefix + hex.EncodeToString(rnd[:])}, bytes.NewReader(b))
	if errors.Is(err, backend.ErrExists) {
		return nil
	}
	return err
}

// OrphanHints lists the hints left by MarkOrphans.
func (r *Repo) OrphanHints(ctx context.Context) ([]string, error) {
	var out []string
	err := r.be.List(ctx, backend.MarkerFile, func(fi backend.FileInfo) error {
		if strings.HasPrefix(fi.Name, OrphanHintPrefix) {
			out = append(out, fi.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list markers: %w", err)
	}
	return out, nil
}

// RemoveOrphanHints removes hints whose packs have been adopted. Failures
// only cost a needless scan later.
func (r *Repo) RemoveOrphanHints(ctx context.Context, names []string) {
	for _, n := range names {
		_ = r.be.Remove(ctx, backend.Handle{Type: backend.MarkerFile, Name: n})
	}
}

// IndexOrphanPacks finds stored packs that no index file lists (left by an
// interrupted backup), reads their trailers and indexes them, so their blobs
// are reused instead of uploaded again. It returns how many packs it
// adopted. Unreadable packs are skipped and logged; check reports them.
// Packs a damage record names are never adopted.
func (r *Repo) IndexOrphanPacks(ctx context.Context) (int, error) {
	var orphans []backend.FileInfo
	if err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		id, err := ParseID(fi.Name)
		if err == nil && !r.idx.HasPack(id) && !r.Damage().Names(id) {
			orphans = append(orphans, fi)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("list packs: %w", err)
	}
	n := 0
	for _, fi := range orphans {
		id, _ := ParseID(fi.Name)
		blobs, err := r.ReadPackTrailer(ctx, id, fi.Size)
		if err != nil {
			r.log.Warn("unindexed pack is unreadable; skipping it", "pack", id.Str(), "err", err)
			continue
		}
		r.idx.AddPack(id, blobs)
		r.mu.Lock()
		r.delta = append(r.delta, IndexPack{ID: id, Blobs: blobs})
		r.mu.Unlock()
		n++
	}
	return n, nil
}
