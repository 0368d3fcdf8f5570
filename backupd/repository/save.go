package repository

import (
	"context"
	"fmt"

	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/crypto"
)

// Has reports whether a blob is stored or on its way into a pack.
func (r *Repo) Has(id ID) bool {
	if r.idx.Has(id) {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.pending[id]
	return ok
}

// SaveBlob stores a blob unless the repository already has it, and reports
// whether it stored it. id must be r.BlobID(plain) for data and
// r.TreeID(plain) for trees. Compression and
// encryption run in the caller's goroutine; only the append to the pack is
// serialized.
func (r *Repo) SaveBlob(ctx context.Context, t BlobType, id ID, plain []byte) (bool, int, error) {
	if max := int64(chunker.MaxSize); t == TreeBlob && int64(len(plain)) > MaxTreeSize || t == DataBlob && int64(len(plain)) > max {
		return false, 0, fmt.Errorf("save %s blob %s: %d bytes exceeds the format's maximum", t, id.Str(), len(plain))
	}
	if r.idx.Has(id) {
		return false, 0, nil
	}
	r.mu.Lock()
	if _, ok := r.pending[id]; ok {
		r.mu.Unlock()
		return false, 0, nil
	}
	r.pending[id] = struct{}{}
	r.mu.Unlock()

	// Compress (or copy) behind a nonce-sized gap and seal in place: one
	// scratch buffer per blob.
	flags := uint8(0)
	body := getBuf(crypto.NonceSize + len(plain) + crypto.Overhead)[:crypto.NonceSize]
	if len(plain) > 64 {
		c := r.enc.EncodeAll(plain, body)
		// Store raw when compression saves less than 3%.
		if n := len(c) - crypto.NonceSize; n < len(plain)-len(plain)*3/100 {
			body, flags = c, FlagCompressed
		} else {
			body = append(c[:crypto.NonceSize], plain...)
		}
	} else {
		body = append(body, plain...)
	}
	sealed := r.key.SealInPlace(body, len(body)-crypto.NonceSize, blobAD(t, id))
	defer putBuf(sealed)

	r.mu.Lock()
	if r.packErr != nil {
		err := r.packErr
		r.mu.Unlock()
		return false, 0, err
	}
	p := r.packers[t]
	if p == nil {
		var err error
		p, err = newPacker(r.opt.TempDir)
		if err != nil {
			r.mu.Unlock()
			return false, 0, err
		}
		r.packers[t] = p
	}
	err := p.add(PackBlob{Type: t, Flags: flags, ID: id, Length: uint32(len(sealed)), RawLen: uint32(len(plain))}, sealed)
	var full *packer
	if err == nil && p.size >= r.opt.PackSize {
		full = p
		delete(r.packers, t)
		r.packWG.Add(1)
	}
	r.mu.Unlock()
	if err != nil {
		return false, 0, fmt.Errorf("write pack: %w", err)
	}
	if full != nil {
		defer r.packWG.Done()
		if err := r.finishPack(ctx, full); err != nil {
			r.mu.Lock()
			if r.packErr == nil {
				r.packErr = err
			}
			r.mu.Unlock()
			return false, 0, err
		}
	}
	return true, len(sealed), nil
}
