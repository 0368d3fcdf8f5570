package repository

import (
	"context"
	"errors"
	"fmt"

	"github.com/meshbackup/backupd/backupd/backend"
)

// RebuildOptions tune RebuildIndex.
type RebuildOptions struct {
	// ReadData reads every pack back and leaves out (and records) the
	// blobs that fail authentication or their hash, not only those
	// already recorded damaged.
	ReadData bool
	// Progress, if set, is called after each pack.
	Progress func(done, total int)
}

// DroppedPack is a pack the rebuilt index leaves out.
type DroppedPack struct {
	Pack   ID     `json:"pack"`
	Reason string `json:"reason"`
	// Blobs is how many blobs the old index listed in it; Salvaged how
	// many of them were read back intact and stored again in new packs.
	Blobs    int `json:"blobs"`
	Salvaged int `json:"salvaged"`
}

// DroppedBlob is a blob of an indexed pack that the rebuilt index leaves
// out.
type DroppedBlob struct {
	ID     ID     `json:"id"`
	Pack   ID     `json:"pack"`
	Reason string `json:"reason"`
}

// RebuildResult says what RebuildIndex did.
type RebuildResult struct {
	Packs          int           `json:"packs"`         // packs stored
	PacksIndexed   int           `json:"packs_indexed"` // in the new index
	BlobsIndexed   int           `json:"blobs_indexed"`
	NewlyIndexed   int           `json:"newly_indexed_packs"` // packs no readable index listed before
	DroppedPacks   []DroppedPack `json:"dropped_packs"`
	DroppedBlobs   []DroppedBlob `json:"dropped_blobs"`
	IndexWritten   string        `json:"index_written,omitempty"`
	IndexRemoved   []string      `json:"index_removed"`
	DamageRecorded string        `json:"damage_recorded,omitempty"`
}

// RebuildIndex replaces the index with one rebuilt from the packs that are
// stored and readable: every pack's sealed trailer lists its blobs. It
// leaves out packs that are missing, packs recorded lost, and blob copies
// recorded damaged (and, with ReadData, those that fail their read-back).
// The blobs of a pack whose trailer is unreadable are taken from the old
// index files where they list them, read back, and the intact ones stored
// again in new packs. What it finds newly lost it records (a damage
// record), so backups store it again.
//
// The caller holds the exclusive lock, on a Repo with nothing loaded.
// Crash safety: new packs and their index file first, then the damage
// record, then the full index that supersedes every old index file, and
// only then are the old index files removed; readers skip superseded index
// files even when they cannot read them, so a kill at any point leaves a
// usable repository (the old index, or the new one).
func (r *Repo) RebuildIndex(ctx context.Context, opt RebuildOptions) (*RebuildResult, error) {
	damage, err := r.LoadDamage(ctx)
	if err != nil {
		return nil, fmt.Errorf("repair index: %w", err)
	}
	r.mu.Lock()
	r.damage = damage
	r.mu.Unlock()
	r.idx.SetDamage(damage)

	files, err := r.ReadIndexFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("repair index: %w", err)
	}
	old := map[ID][]PackBlob{} // pack -> blobs any readable index file lists
	for _, f := range files {
		if f.File == nil {
			continue
		}
		for _, p := range f.File.Packs {
			old[p.ID] = append(old[p.ID], p.Blobs...)
		}
	}
	sizes := map[ID]int64{}
	if err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if id, err := ParseID(fi.Name); err == nil {
			sizes[id] = fi.Size
		} else {
			r.log.Warn("ignoring pack with a malformed name", "name", fi.Name)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("repair index: list packs: %w", err)
	}

	res := &RebuildResult{Packs: len(sizes), DroppedPacks: []DroppedPack{}, DroppedBlobs: []DroppedBlob{}, IndexRemoved: []string{}}
	rec := &DamageRecord{FoundBy: "repair index"}
	newFile := &IndexFile{}
	var salvage []ID // packs with unreadable trailers
	ids := SortedIDs(sizes)
	for i, pid := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if opt.Progress != nil {
			opt.Progress(i+1, len(ids))
		}
		if damage.Packs[pid] {
			res.DroppedPacks = append(res.DroppedPacks, DroppedPack{Pack: pid, Reason: "recorded lost", Blobs: len(old[pid])})
			continue
		}
		blobs, err := r.ReadPackTrailer(ctx, pid, sizes[pid])
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return nil, fmt.Errorf("repair index: %w", err)
			}
			salvage = append(salvage, pid)
			continue
		}
		var failed map[ID]error
		if opt.ReadData {
			if failed, err = r.verifyPack(ctx, pid, blobs); err != nil {
				return nil, fmt.Errorf("repair index: %w", err)
			}
		}
		keep := make([]PackBlob, 0, len(blobs))
		for _, b := range blobs {
			switch {
			case damage.IsDamaged(b.ID, pid):
				res.DroppedBlobs = append(res.DroppedBlobs, DroppedBlob{ID: b.ID, Pack: pid, Reason: "recorded damaged"})
			case failed[b.ID] != nil:
				res.DroppedBlobs = append(res.DroppedBlobs, DroppedBlob{ID: b.ID, Pack: pid, Reason: failed[b.ID].Error()})
				rec.Blobs = append(rec.Blobs, DamagedBlob{ID: b.ID, Pack: pid})
			default:
				keep = append(keep, b)
			}
		}
		if _, ok := old[pid]; !ok {
			res.NewlyIndexed++
		}
		r.idx.AddPack(pid, keep)
		newFile.Packs = append(newFile.Packs, IndexPack{ID: pid, Blobs: keep})
		res.BlobsIndexed += len(keep)
	}
	// Packs the old index lists that are gone are lost.
	for _, pid := range SortedIDs(old) {
		if _, ok := sizes[pid]; ok {
			continue
		}
		res.DroppedPacks = append(res.DroppedPacks, DroppedPack{Pack: pid, Reason: "missing", Blobs: len(old[pid])})
		if !damage.Packs[pid] {
			rec.Packs = append(rec.Packs, pid)
			for _, b := range old[pid] {
				rec.Blobs = append(rec.Blobs, DamagedBlob{ID: b.ID, Pack: pid})
			}
		}
	}
	// Packs whose trailer is unreadable: store again what the old index
	// finds intact in them; the pack itself is lost.
	for _, pid := range salvage {
		dp, err := r.salvagePack(ctx, pid, old[pid])
		if err != nil {
			return nil, fmt.Errorf("repair index: %w", err)
		}
		res.DroppedPacks = append(res.DroppedPacks, dp)
		rec.Packs = append(rec.Packs, pid)
		for _, b := range old[pid] {
			rec.Blobs = append(rec.Blobs, DamagedBlob{ID: b.ID, Pack: pid})
		}
	}
	// Invariant: new packs (and their delta index), then the record, then
	// the full index, then removals.
	if err := r.Flush(ctx); err != nil {
		return nil, fmt.Errorf("repair index: store salvaged blobs: %w", err)
	}
	if len(rec.Packs) > 0 || len(rec.Blobs) > 0 {
		id, err := r.SaveDamageRecord(ctx, rec)
		if err != nil {
			return nil, fmt.Errorf("repair index: %w", err)
		}
		res.DamageRecorded = "damaged/" + id.String()
	}
	written := map[ID]bool{}
	for _, id := range r.IndexFileIDs() {
		written[id] = true // delta index files of salvaged blobs
	}
	var remove []string
	for _, f := range files {
		if !f.ID.IsNull() && !written[f.ID] {
			newFile.Supersedes = append(newFile.Supersedes, f.ID)
		}
		if !written[f.ID] {
			remove = append(remove, f.Name)
		}
	}
	res.PacksIndexed = len(newFile.Packs)
	if len(newFile.Packs) > 0 || len(newFile.Supersedes) > 0 {
		id, err := r.SaveIndexFile(ctx, newFile)
		if err != nil {
			return nil, fmt.Errorf("repair index: write the new index: %w", err)
		}
		res.IndexWritten = "index/" + id.String()
		r.mu.Lock()
		r.indexIDs = append(r.indexIDs, id)
		r.mu.Unlock()
		for i, n := range remove {
			if n == id.String() {
				remove = append(remove[:i], remove[i+1:]...)
				break
			}
		}
	}
	for _, n := range remove {
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.IndexFile, Name: n}); err != nil {
			return res, fmt.Errorf("repair index: remove old index file %s (superseded, harmless; rerun to remove it): %w", n, err)
		}
		res.IndexRemoved = append(res.IndexRemoved, "index/"+n)
	}
	if hints, err := r.OrphanHints(ctx); err == nil {
		r.RemoveOrphanHints(ctx, hints) // every pack is indexed now
	}
	return res, nil
}

// verifyPack reads a pack whole and returns the blobs of the trailer that
// fail authentication or their hash.
func (r *Repo) verifyPack(ctx context.Context, pid ID, blobs []PackBlob) (map[ID]error, error) {
	data, _, err := r.LoadPack(ctx, pid)
	if err != nil {
		return nil, err
	}
	failed := map[ID]error{}
	var buf []byte
	for _, b := range blobs {
		end := uint64(b.Offset) + uint64(b.Length)
		if end > uint64(len(data)) {
			failed[b.ID] = errors.New("extends past the end of the pack")
			continue
		}
		if buf, err = r.OpenBlob(b.Type, b.ID, pid, b.Flags, b.RawLen, data[b.Offset:end], buf); err != nil {
			failed[b.ID] = err
		}
	}
	return failed, nil
}

// salvagePack reads back the blobs the old index lists in a pack whose
// trailer is unreadable and stores the intact ones again (unless a copy is
// indexed already).
func (r *Repo) salvagePack(ctx context.Context, pid ID, blobs []PackBlob) (DroppedPack, error) {
	dp := DroppedPack{Pack: pid, Reason: "trailer unreadable", Blobs: len(blobs)}
	if len(blobs) == 0 {
		return dp, nil
	}
	data, _, err := r.LoadPack(ctx, pid)
	if err != nil {
		return dp, err
	}
	seen := map[ID]bool{}
	for _, b := range blobs {
		if seen[b.ID] {
			continue
		}
		seen[b.ID] = true
		if r.idx.Has(b.ID) {
			dp.Salvaged++
			continue
		}
		end := uint64(b.Offset) + uint64(b.Length)
		if end > uint64(len(data)) {
			continue
		}
		plain, err := r.OpenBlob(b.Type, b.ID, pid, b.Flags, b.RawLen, data[b.Offset:end], nil)
		if err != nil {
			continue
		}
		if _, _, err := r.SaveBlob(ctx, b.Type, b.ID, plain); err != nil {
			return dp, err
		}
		dp.Salvaged++
	}
	return dp, nil
}
