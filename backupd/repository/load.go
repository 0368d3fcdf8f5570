package repository

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/meshbackup/backupd/backupd/backend"
)

// LoadBlob returns a blob's plaintext, appended to buf[:0]. It
// authenticates the ciphertext and checks the plaintext against the id; a
// failure is a *CorruptError naming the blob and pack.
func (r *Repo) LoadBlob(ctx context.Context, t BlobType, id ID, buf []byte) ([]byte, error) {
	loc, ok := r.idx.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("load %s blob %s: not in index", t, id.Str())
	}
	if loc.Type != t {
		// The index entry lies: damage of the index, not a usage error.
		return nil, &CorruptError{What: "blob", ID: id, Pack: loc.Pack, Err: fmt.Errorf("indexed as a %s blob, wanted a %s blob", loc.Type, t)}
	}
	if t == TreeBlob {
		// Trees are small and read in bursts (a backup walks the parent
		// snapshot's trees one by one): read their packs whole, once.
		pack, size, err := r.treePack(ctx, loc.Pack)
		if err != nil {
			return nil, err
		}
		// A tree may be large: bound it by the pack before allocating.
		if end := uint64(loc.Offset) + uint64(loc.Length); pack == nil && end > uint64(size) {
			return nil, &CorruptError{What: "blob", ID: id, Pack: loc.Pack, Err: fmt.Errorf("indexed at %d+%d, past the end of the %d-byte pack: %w", loc.Offset, loc.Length, size, io.ErrUnexpectedEOF)}
		}
		if pack != nil {
			end := uint64(loc.Offset) + uint64(loc.Length)
			if end > uint64(len(pack)) {
				return nil, &CorruptError{What: "blob", ID: id, Pack: loc.Pack, Err: fmt.Errorf("pack is truncated: %w", io.ErrUnexpectedEOF)}
			}
			return r.OpenBlob(t, id, loc.Pack, loc.Flags, loc.RawLen, pack[loc.Offset:end], buf)
		}
	}
	// Index entries are bounded when decoded (checkBlobLengths); check
	// again, so that no entry, however it got here, allocates more.
	if err := checkBlobLengths(loc.Type, loc.Flags, loc.Length, loc.RawLen); err != nil {
		return nil, &CorruptError{What: "blob", ID: id, Pack: loc.Pack, Err: fmt.Errorf("index entry: %w", err)}
	}
	sealed := getBuf(int(loc.Length))[:loc.Length]
	defer putBuf(sealed)
	h := backend.Handle{Type: backend.PackFile, Name: loc.Pack.String()}
	var plain []byte
	// Invariant: the blob is verified inside the Load's fn, so that a
	// retrying backend fetches it again when the bytes that arrived are
	// bad (a *CorruptError matches backend.ErrIntegrity), and no bad bytes
	// leave the fn. fn is idempotent: each call overwrites sealed and
	// opens into buf[:0].
	err := r.be.Load(ctx, h, len(sealed), int64(loc.Offset), func(rd io.Reader) error {
		if _, err := io.ReadFull(rd, sealed); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return &CorruptError{What: "blob", ID: id, Pack: loc.Pack, Err: fmt.Errorf("pack is truncated: %w", io.ErrUnexpectedEOF)}
			}
			return err
		}
		var err error
		plain, err = r.OpenBlob(t, id, loc.Pack, loc.Flags, loc.RawLen, sealed, buf)
		return err
	})
	if err != nil {
		var ce *CorruptError
		switch {
		case errors.As(err, &ce):
			return nil, err
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, &CorruptError{What: "blob", ID: id, Pack: loc.Pack, Err: fmt.Errorf("pack is truncated: %w", err)}
		}
		return nil, fmt.Errorf("load blob %s from pack %s: %w", id.Str(), loc.Pack.Str(), err)
	}
	return plain, nil
}

// treePackCacheBytes bounds the tree-pack cache.
const treePackCacheBytes = 32 << 20

// treePack returns a tree pack's bytes from the cache, loading it whole on
// first use; nil (no error) means "too big to cache, read the blob alone",
// and size is then the pack's size.
func (r *Repo) treePack(ctx context.Context, pack ID) ([]byte, int64, error) {
	r.treeMu.Lock()
	b, ok := r.treePacks[pack]
	r.treeMu.Unlock()
	if ok {
		return b, int64(len(b)), nil
	}
	h := backend.Handle{Type: backend.PackFile, Name: pack.String()}
	// Invariant: a cached copy is used only when its hash is its name.
	if b, ok := r.cacheLoad(h, func(b []byte) error {
		if Hash(b) != pack {
			return &CorruptError{What: "pack", ID: pack, Err: errors.New("content does not match its name")}
		}
		return nil
	}); ok {
		r.keepTreePack(pack, b)
		return b, int64(len(b)), nil
	}
	fi, err := r.be.Stat(ctx, h)
	if err != nil {
		return nil, 0, fmt.Errorf("load tree pack %s: %w", pack.Str(), err)
	}
	if fi.Size > treePackCacheBytes/2 {
		return nil, fi.Size, nil
	}
	// The pack is checked against its name inside the Load's fn, so that a
	// retrying backend fetches it again when the bytes that arrived are
	// bad. A pack damaged at rest is not cached: each of its blobs is then
	// read and verified alone, and only the damaged ones fail.
	err = r.be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		data, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if Hash(data) != pack {
			return &CorruptError{What: "pack", ID: pack, Err: errors.New("content does not match its name")}
		}
		b = data
		return nil
	})
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			return nil, fi.Size, nil
		}
		return nil, 0, fmt.Errorf("load tree pack %s: %w", pack.Str(), err)
	}
	r.cacheSave(h, b)
	r.keepTreePack(pack, b)
	return b, int64(len(b)), nil
}

// keepTreePack keeps a verified tree pack in memory, within
// treePackCacheBytes.
func (r *Repo) keepTreePack(pack ID, b []byte) {
	r.treeMu.Lock()
	defer r.treeMu.Unlock()
	if r.treeBytes+len(b) > treePackCacheBytes {
		r.treePacks, r.treeBytes = nil, 0
	}
	if r.treePacks == nil {
		r.treePacks = map[ID][]byte{}
	}
	r.treePacks[pack] = b
	r.treeBytes += len(b)
}

// OpenBlob decrypts, decompresses and verifies a sealed blob, appending the
// plaintext to buf[:0]. Scratch space comes from a pool, so steady-state
// restores allocate nothing per blob.
func (r *Repo) OpenBlob(t BlobType, id, pack ID, flags uint8, rawLen uint32, sealed, buf []byte) ([]byte, error) {
	var plain []byte
	var err error
	if flags&FlagCompressed != 0 {
		scratch := getBuf(len(sealed))
		defer putBuf(scratch)
		var z []byte
		z, err = r.key.Open(scratch[:0], sealed, blobAD(t, id))
		if err != nil {
			return nil, &CorruptError{What: "blob", ID: id, Pack: pack, Err: err}
		}
		if cap(buf) < int(rawLen) {
			buf = make([]byte, 0, rawLen)
		}
		plain, err = r.dec.DecodeAll(z, buf[:0])
		if err != nil {
			return nil, &CorruptError{What: "blob", ID: id, Pack: pack, Err: fmt.Errorf("decompress: %w", err)}
		}
	} else {
		plain, err = r.key.Open(buf[:0], sealed, blobAD(t, id))
		if err != nil {
			return nil, &CorruptError{What: "blob", ID: id, Pack: pack, Err: err}
		}
	}
	if uint32(len(plain)) != rawLen {
		return nil, &CorruptError{What: "blob", ID: id, Pack: pack, Err: fmt.Errorf("length %d, indexed as %d", len(plain), rawLen)}
	}
	if r.idOf(t, plain) != id {
		return nil, &CorruptError{What: "blob", ID: id, Pack: pack, Err: errors.New("content does not match its id")}
	}
	return plain, nil
}
