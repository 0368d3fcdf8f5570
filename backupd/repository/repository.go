package repository

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/crypto"
	"github.com/meshbackup/backupd/backupd/faultpoint"
)

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
	indexIDs  []ID    // index files loaded or written
	damage    *Damage // loaded by LoadIndex
	// cache holds local copies of immutable objects (cache.go); nil for
	// none.
	cache Cache
	// treePacks caches whole tree packs (see treePack).
	treeMu    sync.Mutex
	treePacks map[ID][]byte
	treeBytes int
	// packWG tracks the packs being uploaded (finishPack in an upload
	// goroutine); uploads holds a token per upload in flight, at most
	// Options.Uploads; cancelUpload cancels each one's context, by a
	// sequence number (under mu). packErr is the first upload's failure:
	// SaveBlob and Flush return it from then on.
	packWG       sync.WaitGroup
	uploads      chan struct{}
	cancelUpload map[uint64]context.CancelFunc
	uploadSeq    uint64
	packErr      error
	// clockOffset is the store's clock minus the host's, measured by
	// lockNow when the backend implements backend.ServerClock.
	clockMu       sync.Mutex
	clockOffset   time.Duration
	clockMeasured bool
	// released are the locks this process gave up whose objects are left
	// (shared by the Repos Fresh makes, see lock.go).
	released *releasedLocks
	// ownLocks are the lock objects this Repo wrote and has not removed,
	// with their content (lock.go).
	lockMu   sync.Mutex
	ownLocks map[string]LockInfo
	// keyName is the key file the password opened (keys.go).
	keyMu   sync.Mutex
	keyName string
	// packWriteback: packs are written in the backend's own temp
	// directory, where Save fsyncs them and links them into place, so
	// their writeback is started as they grow (packer.go).
	packWriteback bool
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
		zstd.WithDecoderMaxMemory(MaxTreeSize)) // the largest blob a writer may store
	if err != nil {
		return nil, err
	}
	return &Repo{
		be: be, key: key, cfg: cfg, opt: opt, idx: NewIndex(),
		table: chunker.NewTable(key.Chunker), enc: enc, dec: dec,
		log:     opt.Logger.With("component", "repository"),
		packers: make(map[BlobType]*packer), pending: make(map[ID]struct{}),
		uploads: make(chan struct{}, max(opt.Uploads, 1)), cancelUpload: map[uint64]context.CancelFunc{},
		lastIndex: opt.Now(), released: &releasedLocks{},
		packWriteback: inBackendTemp(be, opt.TempDir),
	}, nil
}

// inBackendTemp reports whether dir is the backend's temp directory.
func inBackendTemp(be backend.Backend, dir string) bool {
	td, ok := backend.As[backend.TempDirer](be)
	return ok && td.TempDir() == dir
}

// Fresh returns a Repo on the same backend and key with an empty in-memory
// index and no open packs. A long-running process uses one per operation:
// an index kept across a prune would name deleted packs.
func (r *Repo) Fresh() (*Repo, error) {
	nr, err := newRepo(r.be, r.key, r.cfg, r.opt)
	if err != nil {
		return nil, err
	}
	nr.keyName = r.KeyName()
	nr.released = r.released
	nr.cache = r.cache
	return nr, nil
}

// FreshUncached is Fresh without the local cache (Options.Cache): every
// object is read from the backend. Check, repair and restore drills use it:
// they judge the repository's own copies, which an intact copy in the
// cache would hide.
func (r *Repo) FreshUncached() (*Repo, error) {
	nr, err := r.Fresh()
	if err != nil {
		return nil, err
	}
	nr.cache = nil
	return nr, nil
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
