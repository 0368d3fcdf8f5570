package restorer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/regfile"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// restoreFile restores one file through a temp name in its directory,
// its chunks from the plan's prefetcher when it has a number (pl may be
// nil). buf is reused across calls.
func (r *Restorer) restoreFile(ctx context.Context, pl *plan, t fileTask, buf []byte) ([]byte, error) {
	n := t.node
	load := func(i int, id repository.ID) ([]byte, error) {
		return r.repo.LoadBlob(ctx, repository.DataBlob, id, buf)
	}
	if pl != nil && t.seq >= 0 {
		// Whatever happens to this file, its chunks not taken free their
		// spans.
		defer pl.pf.Done(t.seq)
		load = func(i int, id repository.ID) ([]byte, error) {
			return pl.pf.Blob(ctx, t.seq, i, id, buf)
		}
	}
	dir := t.dir.Root
	if ok, err := r.alreadyRestored(ctx, t, &buf); err != nil {
		return buf, err
	} else if ok {
		r.Stats.Unchanged.Add(1)
		return buf, nil
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := TempPrefix + hex.EncodeToString(rnd[:]) + "-" + truncate(t.name, 100)
	f, err := dir.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return buf, err
	}
	// Invariant: the temp file never survives a failed restore of this file.
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = dir.Remove(tmp)
		}
	}()
	var written int64
	for i, id := range n.Content {
		// Every chunk is authenticated and checked against its id
		// (OpenBlob), from a span or read alone.
		buf, err = load(i, id)
		if err != nil {
			return buf, fmt.Errorf("chunk %d: %w", i, err)
		}
		if _, err := f.Write(buf); err != nil {
			return buf, err
		}
		written += int64(len(buf))
		if i == 0 {
			r.opt.Faults.Hit(faultpoint.RestoreMidFile)
		}
	}
	if written != int64(n.Size) {
		return buf, fmt.Errorf("restored %d bytes, snapshot records %d", written, n.Size)
	}
	// Every chunk matched its id (OpenBlob); the id list must match the
	// recorded content hash.
	if snapshot.ContentHash(n.Content) != *n.Hash {
		return buf, fmt.Errorf("%w: content hash does not match the recorded hash", repository.ErrCorrupt)
	}
	if *r.opt.Owner {
		if err := f.Chown(int(n.UID), int(n.GID)); err != nil {
			return buf, err
		}
	}
	if err := f.Chmod(fileMode(n)); err != nil {
		return buf, err
	}
	if err := f.Close(); err != nil {
		return buf, err
	}
	mt := time.Unix(0, n.MtimeNS)
	if err := dir.Chtimes(tmp, mt, mt); err != nil {
		return buf, err
	}
	if fi, err := dir.Lstat(t.name); err == nil && fi.IsDir() {
		if err := dir.RemoveAll(t.name); err != nil {
			return buf, err
		}
	}
	if err := dir.Rename(tmp, t.name); err != nil {
		return buf, err
	}
	ok = true
	r.Stats.Files.Add(1)
	r.Stats.Bytes.Add(uint64(written))
	return buf, nil
}

// alreadyRestored reports whether the target already holds this exact file
// (from an interrupted earlier run): same size and mtime, and every chunk
// re-hashed from disk matches.
func (r *Restorer) alreadyRestored(ctx context.Context, t fileTask, buf *[]byte) (bool, error) {
	dir := t.dir.Root
	// Opened before it is looked at (regular, no symlink, never waiting
	// on a FIFO put in its place), so what is checked is what is read.
	f, fi, err := regfile.OpenInRoot(dir, t.name)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	if fi.Size() != int64(t.node.Size) || fi.ModTime().UnixNano() != t.node.MtimeNS {
		return false, nil
	}
	ok, err := snapshot.VerifyFile(ctx, r.repo, f, t.node, buf)
	if err != nil || !ok {
		return false, nil
	}
	if err := r.setMeta(dir, t.name, t.node); err != nil {
		return false, err
	}
	return true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
