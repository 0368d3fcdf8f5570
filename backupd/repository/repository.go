package repository

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/crypto"
	"github.com/meshbackup/backupd/backupd/faultpoint"
)

// Options tune a repository. Zero values take the defaults in applyDefaults.
type Options struct {
	// PackSize is the size at which a pack is closed: 16 MiB keeps the
	// object count low on object storage while bounding what one lost
	// upload costs.
	PackSize int64
	// IndexEveryPacks and IndexEvery bound how much work an interrupted
	// backup loses before resume finds it through an index: 8 packs
	// (128 MiB) or 2 minutes.
	IndexEveryPacks int
	IndexEvery      time.Duration
	// TempDir holds packs being written. Default: the backend's TempDir
	// when it has one, else os.TempDir().
	TempDir string
	// KDF is used by Init.
	KDF crypto.KDFParams
	// Lock lease: a lock not refreshed within StaleAfter is stale.
	LockRefresh time.Duration
	StaleAfter  time.Duration
	// Now is the clock; time.Now by default.
	Now    func() time.Time
	Faults *faultpoint.Set
	Logger *slog.Logger
	// Hostname is recorded in locks and snapshots.
	Hostname string
	// IndexLoaded, if set, is told how many blobs the index holds after
	// LoadIndex, so the caller can size its memory budget.
	IndexLoaded func(blobs int)
}

func (o *Options) applyDefaults(be backend.Backend) {
	if o.PackSize == 0 {
		o.PackSize = 16 << 20
	}
	if o.IndexEveryPacks == 0 {
		o.IndexEveryPacks = 8
	}
	if o.IndexEvery == 0 {
		o.IndexEvery = 2 * time.Minute
	}
	if o.TempDir == "" {
		if td, ok := backend.As[backend.TempDirer](be); ok {
			o.TempDir = td.TempDir()
		} else {
			o.TempDir = os.TempDir()
		}
	}
	if o.KDF == (crypto.KDFParams{}) {
		o.KDF = crypto.DefaultKDF
	}
	if o.LockRefresh == 0 {
		o.LockRefresh = time.Minute
	}
	if o.StaleAfter == 0 {
		o.StaleAfter = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
}

// Repo is an open repository.
type Repo struct {
	be    backend.Backend
	key   *crypto.Key
	cfg   Config
	opt   Options
	idx   *Index
	table *chunker.Table
	enc   *zstd.Encoder
	dec   *zstd.Decoder
	log   *slog.Logger

	mu        sync.Mutex
	packers   map[BlobType]*packer
	pending   map[ID]struct{} // blobs handed to a packer, not yet in idx
	delta     []IndexPack     // packs stored but not yet in an index file
	lastIndex time.Time
	indexIDs  []ID // index files loaded or written
	// treePacks caches whole tree packs (see treePack).
	treeMu    sync.Mutex
	treePacks map[ID][]byte
	treeBytes int
	// packWG tracks packs being finalized outside mu.
	packWG  sync.WaitGroup
	packErr error
}

// Init creates a repository on an empty backend.
func Init(ctx context.Context, be backend.Backend, password []byte, opt Options) (*Repo, error) {
	opt.applyDefaults(be)
	if len(password) == 0 {
		return nil, errors.New("init: empty password")
	}
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err == nil {
		return nil, fmt.Errorf("init: %s already holds a repository", be.Location())
	}
	key, err := crypto.NewRandomKey()
	if err != nil {
		return nil, err
	}
	kf, err := crypto.Wrap(key, password, opt.KDF)
	if err != nil {
		return nil, err
	}
	kf.Hostname = opt.Hostname
	kf.Created = opt.Now().UTC().Format(time.RFC3339)
	kb, err := json.Marshal(kf)
	if err != nil {
		return nil, err
	}
	if err := be.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: Hash(kb).String()}, bytes.NewReader(kb)); err != nil {
		return nil, fmt.Errorf("init: save key: %w", err)
	}
	var rid ID
	_, _ = rand.Read(rid[:])
	cfg := Config{Version: FormatVersion, ID: rid.String(), Created: kf.Created}
	cb, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	// Invariant: config is written last, so a repository is either
	// complete or absent.
	if err := be.Save(ctx, backend.Handle{Type: backend.ConfigFile}, bytes.NewReader(cb)); err != nil {
		return nil, fmt.Errorf("init: save config: %w", err)
	}
	return newRepo(be, key, cfg, opt)
}

// Open opens an existing repository with password. It loads no index: call
// LoadIndex.
func Open(ctx context.Context, be backend.Backend, password []byte, opt Options) (*Repo, error) {
	opt.applyDefaults(be)
	cb, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.ConfigFile})
	if errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("open %s: no repository there (no config file); run 'backupd init' first", be.Location())
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	cfg, err := DecodeConfig(cb)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	var key *crypto.Key
	var lastErr error = crypto.ErrWrongPassword
	err = be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		if key != nil {
			return nil
		}
		kb, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.KeyFile, Name: fi.Name})
		if err != nil {
			lastErr = err
			return nil
		}
		var kf crypto.KeyFile
		if err := json.Unmarshal(kb, &kf); err != nil {
			lastErr = fmt.Errorf("key file %s: %w", fi.Name, err)
			return nil
		}
		k, err := crypto.Unwrap(&kf, password)
		if err != nil {
			if !errors.Is(err, crypto.ErrWrongPassword) {
				lastErr = fmt.Errorf("key file %s: %w", fi.Name, err)
			}
			return nil
		}
		key = k
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: list keys: %w", be.Location(), err)
	}
	if key == nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), lastErr)
	}
	return newRepo(be, key, cfg, opt)
}

func newRepo(be backend.Backend, key *crypto.Key, cfg Config, opt Options) (*Repo, error) {
	// No zstd frame checksum: every blob is authenticated by AES-GCM and
	// re-hashed against its BLAKE3 id on read; the checksum cost 3% of a
	// change backup's CPU and protected nothing more.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(2),
		zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(chunker.MaxSize), zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(2), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		return nil, err
	}
	return &Repo{
		be: be, key: key, cfg: cfg, opt: opt, idx: NewIndex(),
		table: chunker.NewTable(key.Chunker), enc: enc, dec: dec,
		log:     opt.Logger.With("component", "repository"),
		packers: make(map[BlobType]*packer), pending: make(map[ID]struct{}),
		lastIndex: opt.Now(),
	}, nil
}

// Fresh returns a Repo on the same backend and key with an empty in-memory
// index and no open packs. A long-running process uses one per operation:
// an index kept across a prune would name deleted packs.
func (r *Repo) Fresh() (*Repo, error) {
	return newRepo(r.be, r.key, r.cfg, r.opt)
}

// Backend returns the backend.
func (r *Repo) Backend() backend.Backend { return r.be }

// Config returns the repository config.
func (r *Repo) Config() Config { return r.cfg }

// Index returns the in-memory index.
func (r *Repo) Index() *Index { return r.idx }

// ChunkerTable returns the repository's gear table.
func (r *Repo) ChunkerTable() *chunker.Table { return r.table }

// IDHasher returns a keyed hasher for blob ids (one per goroutine).
func (r *Repo) IDHasher() *blake3.Hasher { return r.key.IDHasher() }

// BlobID computes the id of a data blob.
func (r *Repo) BlobID(data []byte) ID {
	return r.idOf(DataBlob, data)
}

// TreeID computes the id of a tree blob. Trees are hashed with their own
// key (derived from the id key): a data blob and a tree blob never share an
// id, whatever their bytes.
func (r *Repo) TreeID(data []byte) ID {
	return r.idOf(TreeBlob, data)
}

func (r *Repo) idOf(t BlobType, data []byte) ID {
	h := r.key.IDHasher()
	if t == TreeBlob {
		h = r.key.TreeIDHasher()
	}
	_, _ = h.Write(data)
	var id ID
	h.Sum(id[:0])
	return id
}

// Options returns the effective options.
func (r *Repo) Options() Options { return r.opt }

// Faults returns the armed fault point, if any.
func (r *Repo) Faults() *faultpoint.Set { return r.opt.Faults }

func blobAD(t BlobType, id ID) []byte {
	ad := make([]byte, 33)
	ad[0] = byte(t)
	copy(ad[1:], id[:])
	return ad
}

// LoadIndex reads every index file into the in-memory index. Index files
// named as superseded by another are skipped. An unreadable index file is
// an error (check reports each one separately, see ReadIndexFiles).
func (r *Repo) LoadIndex(ctx context.Context) error {
	files, err := r.ReadIndexFiles(ctx)
	if err != nil {
		return err
	}
	superseded := map[ID]bool{}
	for _, f := range files {
		if f.Err != nil {
			return fmt.Errorf("load index: %w", f.Err)
		}
		for _, s := range f.File.Supersedes {
			superseded[s] = true
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
	if r.opt.IndexLoaded != nil {
		r.opt.IndexLoaded(r.idx.Len())
	}
	return nil
}

// LoadedIndex is one index file as read, or the error reading it.
type LoadedIndex struct {
	ID   ID
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
	out := make([]LoadedIndex, 0, len(names))
	for _, n := range names {
		li := LoadedIndex{}
		id, err := ParseID(n)
		if err != nil {
			li.Err = fmt.Errorf("index file %s: bad name: %w", n, err)
			out = append(out, li)
			continue
		}
		li.ID = id
		plain, err := r.loadSealed(ctx, backend.Handle{Type: backend.IndexFile, Name: n}, indexAD)
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

// CorruptError reports data that failed authentication or its hash check.
type CorruptError struct {
	What string // "blob", "pack", "index", "snapshot"
	ID   ID
	Pack ID
	Err  error
}

func (e *CorruptError) Error() string {
	if !e.Pack.IsNull() {
		return fmt.Sprintf("%s %s in pack %s is corrupt: %v", e.What, e.ID.Str(), e.Pack.Str(), e.Err)
	}
	return fmt.Sprintf("%s %s is corrupt: %v", e.What, e.ID.Str(), e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// ErrCorrupt is matched (errors.Is) by every CorruptError.
var ErrCorrupt = errors.New("repository data is corrupt")

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

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

// LoadBlob returns a blob's plaintext, appended to buf[:0]. It
// authenticates the ciphertext and checks the plaintext against the id; a
// failure is a *CorruptError naming the blob and pack.
func (r *Repo) LoadBlob(ctx context.Context, t BlobType, id ID, buf []byte) ([]byte, error) {
	loc, ok := r.idx.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("load %s blob %s: not in index", t, id.Str())
	}
	if loc.Type != t {
		return nil, fmt.Errorf("load blob %s: indexed as %s, wanted %s", id.Str(), loc.Type, t)
	}
	if t == TreeBlob {
		// Trees are small and read in bursts (a backup walks the parent
		// snapshot's trees one by one): read their packs whole, once.
		pack, err := r.treePack(ctx, loc.Pack)
		if err != nil {
			return nil, err
		}
		if pack != nil {
			end := uint64(loc.Offset) + uint64(loc.Length)
			if end > uint64(len(pack)) {
				return nil, &CorruptError{What: "blob", ID: id, Pack: loc.Pack, Err: fmt.Errorf("pack is truncated: %w", io.ErrUnexpectedEOF)}
			}
			return r.OpenBlob(t, id, loc.Pack, loc.Flags, loc.RawLen, pack[loc.Offset:end], buf)
		}
	}
	sealed := getBuf(int(loc.Length))[:loc.Length]
	defer putBuf(sealed)
	h := backend.Handle{Type: backend.PackFile, Name: loc.Pack.String()}
	if err := backend.ReadAt(ctx, r.be, h, sealed, int64(loc.Offset)); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &CorruptError{What: "blob", ID: id, Pack: loc.Pack, Err: fmt.Errorf("pack is truncated: %w", err)}
		}
		return nil, fmt.Errorf("load blob %s from pack %s: %w", id.Str(), loc.Pack.Str(), err)
	}
	return r.OpenBlob(t, id, loc.Pack, loc.Flags, loc.RawLen, sealed, buf)
}

// treePackCacheBytes bounds the tree-pack cache.
const treePackCacheBytes = 32 << 20

// treePack returns a tree pack's bytes from the cache, loading it whole on
// first use; nil (no error) means "too big to cache, read the blob alone".
func (r *Repo) treePack(ctx context.Context, pack ID) ([]byte, error) {
	r.treeMu.Lock()
	b, ok := r.treePacks[pack]
	r.treeMu.Unlock()
	if ok {
		return b, nil
	}
	h := backend.Handle{Type: backend.PackFile, Name: pack.String()}
	fi, err := r.be.Stat(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("load tree pack %s: %w", pack.Str(), err)
	}
	if fi.Size > treePackCacheBytes/2 {
		return nil, nil
	}
	b, err = backend.LoadAll(ctx, r.be, h)
	if err != nil {
		return nil, fmt.Errorf("load tree pack %s: %w", pack.Str(), err)
	}
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
	return b, nil
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

var bufPool sync.Pool

func getBuf(n int) []byte {
	if b, ok := bufPool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, max(n, 64<<10))
}

func putBuf(b []byte) {
	if cap(b) > chunker.MaxSize+chunker.MaxSize/8 {
		return
	}
	bufPool.Put(&b)
}

// packer appends sealed blobs to a temp file and hashes them on the way.
type packer struct {
	f     *os.File
	w     *bufio.Writer
	h     *blake3.Hasher
	blobs []PackBlob
	size  int64
}

func newPacker(dir string) (*packer, error) {
	f, err := os.CreateTemp(dir, "pack-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create pack temp file: %w", err)
	}
	return &packer{f: f, w: bufio.NewWriterSize(f, 256<<10), h: blake3.New()}, nil
}

func (p *packer) write(b []byte) error {
	_, _ = p.h.Write(b)
	_, err := p.w.Write(b)
	p.size += int64(len(b))
	return err
}

func (p *packer) add(pb PackBlob, sealed []byte) error {
	pb.Offset = uint32(p.size)
	if err := p.write(sealed); err != nil {
		return err
	}
	p.blobs = append(p.blobs, pb)
	return nil
}

func (p *packer) discard() {
	name := p.f.Name()
	_ = p.f.Close()
	_ = os.Remove(name)
}

// finishPack seals the trailer, stores the pack and records it in the
// in-memory index and the pending delta.
func (r *Repo) finishPack(ctx context.Context, p *packer) error {
	defer p.discard()
	trailer := r.key.Seal(nil, EncodeTrailer(p.blobs), trailerAD)
	var tail [packTailSize]byte
	tail[0], tail[1], tail[2], tail[3] = byte(len(trailer)), byte(len(trailer)>>8), byte(len(trailer)>>16), byte(len(trailer)>>24)
	copy(tail[4:], packMagic)
	if err := p.write(trailer); err != nil {
		return fmt.Errorf("write pack trailer: %w", err)
	}
	if err := p.write(tail[:]); err != nil {
		return fmt.Errorf("write pack trailer: %w", err)
	}
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("write pack: %w", err)
	}
	var id ID
	p.h.Sum(id[:0])
	err := r.be.Save(ctx, backend.Handle{Type: backend.PackFile, Name: id.String()}, p.f)
	if err != nil && !errors.Is(err, backend.ErrExists) {
		return fmt.Errorf("save pack %s: %w", id.Str(), err)
	}
	r.opt.Faults.Hit(faultpoint.AfterPackPut)
	r.idx.AddPack(id, p.blobs)
	r.mu.Lock()
	for _, pb := range p.blobs {
		delete(r.pending, pb.ID)
	}
	r.delta = append(r.delta, IndexPack{ID: id, Blobs: p.blobs})
	due := len(r.delta) >= r.opt.IndexEveryPacks || r.opt.Now().Sub(r.lastIndex) >= r.opt.IndexEvery
	r.mu.Unlock()
	if due {
		return r.writeDelta(ctx)
	}
	return nil
}

// writeDelta writes the packs stored since the last index file.
func (r *Repo) writeDelta(ctx context.Context) error {
	r.mu.Lock()
	delta := r.delta
	r.delta = nil
	r.lastIndex = r.opt.Now()
	r.mu.Unlock()
	if len(delta) == 0 {
		return nil
	}
	id, err := r.SaveIndexFile(ctx, &IndexFile{Packs: delta})
	if err != nil {
		r.mu.Lock()
		r.delta = append(delta, r.delta...)
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	r.indexIDs = append(r.indexIDs, id)
	r.mu.Unlock()
	return nil
}

// SaveIndexFile stores an index file.
func (r *Repo) SaveIndexFile(ctx context.Context, f *IndexFile) (ID, error) {
	id, err := r.saveSealed(ctx, backend.IndexFile, f.Encode(), indexAD)
	if err != nil {
		return id, fmt.Errorf("save index: %w", err)
	}
	r.opt.Faults.Hit(faultpoint.AfterIndexWrite)
	return id, nil
}

// IndexFileIDs returns the index files loaded (superseded ones included) or
// written by this Repo.
func (r *Repo) IndexFileIDs() []ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ID(nil), r.indexIDs...)
}

// Flush stores every open pack and writes an index file for all packs not
// yet indexed. After Flush returns nil, every blob SaveBlob accepted is
// durable and indexed: a snapshot may now refer to it.
func (r *Repo) Flush(ctx context.Context) error {
	r.packWG.Wait()
	r.mu.Lock()
	if err := r.packErr; err != nil {
		r.mu.Unlock()
		return err
	}
	var open []*packer
	for t, p := range r.packers {
		open = append(open, p)
		delete(r.packers, t)
	}
	r.mu.Unlock()
	var firstErr error
	for _, p := range open {
		if firstErr != nil {
			p.discard()
			continue
		}
		if err := r.finishPack(ctx, p); err != nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return firstErr
	}
	return r.writeDelta(ctx)
}

// Checkpoint is Abort plus an index file for the packs already stored, for
// a backup that stops early: its stored work is indexed and reused.
func (r *Repo) Checkpoint(ctx context.Context) error {
	r.Abort()
	return r.writeDelta(ctx)
}

// Abort discards open packs without storing them.
func (r *Repo) Abort() {
	r.packWG.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, p := range r.packers {
		p.discard()
		delete(r.packers, t)
	}
}

// ReadPackTrailer reads and decodes the trailer of a stored pack of the given
// size.
func (r *Repo) ReadPackTrailer(ctx context.Context, id ID, size int64) ([]PackBlob, error) {
	h := backend.Handle{Type: backend.PackFile, Name: id.String()}
	if size < int64(packTailSize) {
		return nil, &CorruptError{What: "pack", ID: id, Err: fmt.Errorf("%w: %d bytes is too short for a pack", ErrFormat, size)}
	}
	tail := make([]byte, packTailSize)
	if err := backend.ReadAt(ctx, r.be, h, tail, size-int64(packTailSize)); err != nil {
		return nil, fmt.Errorf("read pack %s tail: %w", id.Str(), err)
	}
	off, n, err := ParsePackTail(tail, size)
	if err != nil {
		return nil, &CorruptError{What: "pack", ID: id, Err: err}
	}
	sealed := make([]byte, n)
	if err := backend.ReadAt(ctx, r.be, h, sealed, off); err != nil {
		return nil, fmt.Errorf("read pack %s trailer: %w", id.Str(), err)
	}
	plain, err := r.key.Open(nil, sealed, trailerAD)
	if err != nil {
		return nil, &CorruptError{What: "pack", ID: id, Err: fmt.Errorf("trailer: %w", err)}
	}
	blobs, err := DecodeTrailer(plain, off)
	if err != nil {
		return nil, &CorruptError{What: "pack", ID: id, Err: err}
	}
	return blobs, nil
}

// DecodePack splits a whole pack's bytes into its blob list, checking the
// pack's name against its content.
func (r *Repo) DecodePack(id ID, data []byte) ([]PackBlob, error) {
	if Hash(data) != id {
		return nil, &CorruptError{What: "pack", ID: id, Err: errors.New("content does not match its name")}
	}
	if len(data) < packTailSize {
		return nil, &CorruptError{What: "pack", ID: id, Err: io.ErrUnexpectedEOF}
	}
	off, n, err := ParsePackTail(data[len(data)-packTailSize:], int64(len(data)))
	if err != nil {
		return nil, &CorruptError{What: "pack", ID: id, Err: err}
	}
	plain, err := r.key.Open(nil, data[off:off+int64(n)], trailerAD)
	if err != nil {
		return nil, &CorruptError{What: "pack", ID: id, Err: fmt.Errorf("trailer: %w", err)}
	}
	blobs, err := DecodeTrailer(plain, off)
	if err != nil {
		return nil, &CorruptError{What: "pack", ID: id, Err: err}
	}
	return blobs, nil
}

// OrphanHintPrefix starts the names of markers that say "a backup stored
// packs it could not index".
const OrphanHintPrefix = "orphans-"

// MarkOrphans leaves a hint that packs no index lists may exist.
func (r *Repo) MarkOrphans(ctx context.Context) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	b, _ := json.Marshal(map[string]any{"time": r.opt.Now().UTC(), "hostname": r.opt.Hostname})
	return r.be.Save(ctx, backend.Handle{Type: backend.MarkerFile, Name: OrphanHintPrefix + hex.EncodeToString(rnd[:])}, bytes.NewReader(b))
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
func (r *Repo) IndexOrphanPacks(ctx context.Context) (int, error) {
	var orphans []backend.FileInfo
	if err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		id, err := ParseID(fi.Name)
		if err == nil && !r.idx.HasPack(id) {
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
