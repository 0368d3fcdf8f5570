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
//
// A pack this call fills is uploaded in the background (startUpload), and
// SaveBlob blocks first while Options.Uploads packs are in flight. An
// upload's failure is returned by the SaveBlob and Flush calls after it,
// not by the call that filled the pack. The upload runs under ctx's values
// but not its cancellation (a caller's errgroup context ends when its
// workers return, before Flush): Flush, Checkpoint and Abort wait for the
// uploads and cancel them when their own context ends (Abort at once).
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
		p, err = newPacker(r.opt.TempDir, r.packWriteback)
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
		if err := r.startUpload(ctx, full); err != nil {
			return false, 0, err
		}
	}
	return true, len(sealed), nil
}

// startUpload uploads the full pack p in a goroutine, once one of the
// Options.Uploads slots is free; packWG already counts it. When ctx ends
// first, the pack is discarded and the repository fails as on an upload
// error.
//
// Memory: each upload holds the pack's blob list and trailer (about 60
// bytes a blob, some 20 KiB for a 16 MiB pack) and the backend's buffers
// while it reads the temp file (for object storage a part buffer per
// connection). The pack itself stays in its temp file on disk, so Uploads
// packs in flight cost Uploads × PackSize of disk, not of memory.
func (r *Repo) startUpload(ctx context.Context, p *packer) error {
	select {
	case r.uploads <- struct{}{}:
	case <-ctx.Done():
		p.discard()
		err := fmt.Errorf("save pack: %w", context.Cause(ctx))
		r.failUpload(err)
		r.packWG.Done()
		return err
	}
	uctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.mu.Lock()
	r.uploadSeq++
	seq := r.uploadSeq
	r.cancelUpload[seq] = cancel
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			delete(r.cancelUpload, seq)
			r.mu.Unlock()
			cancel()
			<-r.uploads
			r.packWG.Done()
		}()
		if err := r.finishPack(uctx, p); err != nil {
			r.failUpload(err)
		}
	}()
	return nil
}

// failUpload records the first upload failure.
func (r *Repo) failUpload(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.packErr == nil {
		r.packErr = err
	}
}

// waitUploads waits for the uploads in flight. When ctx ends first, it
// cancels them, waits for them to return, and returns ctx's error.
func (r *Repo) waitUploads(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		r.packWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		r.cancelUploads()
		<-done
		return fmt.Errorf("wait for pack uploads: %w", context.Cause(ctx))
	}
}

// cancelUploads cancels the context of every upload in flight.
func (r *Repo) cancelUploads() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cancel := range r.cancelUpload {
		cancel()
	}
}
