package repository

import (
	"log/slog"
	"os"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
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
	// Uploads bounds the full packs uploaded at once, in the background
	// of the SaveBlob calls that filled them: 4 by default, so that an
	// object store's per-request latency and per-connection bandwidth
	// are overlapped, while the packs waiting on disk stay few. SaveBlob
	// blocks while Uploads packs are in flight (backpressure). 1 uploads
	// one pack at a time, still in the background.
	Uploads int
	// TempDir holds packs being written. Default: the backend's TempDir
	// when it has one, else ScratchDir, else os.TempDir().
	TempDir string
	// ScratchDir, if set, returns the process's own temp directory
	// (package tempdir), for packs being written to a backend without a
	// TempDir of its own (object storage): a process killed mid-backup
	// leaves its packs there, and the next process to acquire one removes
	// them. It is called only for such a backend, so a repository in a
	// directory makes none; "" falls back to os.TempDir().
	ScratchDir func() string
	// KDF is used by Init.
	KDF crypto.KDFParams
	// Lock lease: a lock not refreshed within StaleAfter is stale.
	LockRefresh time.Duration
	StaleAfter  time.Duration
	// SharedLockWait is how long Lock keeps trying a shared lock (a
	// backup's) while another holder's exclusive lock (forget, prune:
	// the retention a node agents' leader applies to every volume) is in
	// the way, before it fails with ErrLocked: retention is short, and a
	// backup that fails waits for its next activation. It tries again
	// after 1, 2, 4, then every 5 seconds (with up to a second of jitter).
	// 0, the default: it fails at once. An exclusive lock waits only as
	// ExclusiveLockWait says.
	SharedLockWait time.Duration
	// ExclusiveLockWait is how long an exclusive lock (forget, prune)
	// that finds only shared locks (backups) in its way waits for them to
	// end instead of failing with ErrLocked. Its lock object is written
	// before it waits, so backups starting meanwhile see it and wait
	// (SharedLockWait) rather than keep it out for ever: without this, a
	// repository whose backups follow one another never gets its
	// retention. Another exclusive lock is never waited for. It is checked
	// again after 250 ms, doubling to every 2 seconds. 0, the default:
	// fail at once. At most LockRefresh/2 (the lock object is not
	// refreshed while it waits).
	ExclusiveLockWait time.Duration
	// MaxClockSkew is how far in the future a lock may be dated (another
	// host's clock running ahead) and still be honoured; a lock dated
	// later is stale. 5 minutes by default.
	MaxClockSkew time.Duration
	// Now is the clock; time.Now by default.
	Now    func() time.Time
	Faults *faultpoint.Set
	Logger *slog.Logger
	// Hostname is recorded in locks and snapshots.
	Hostname string
	// Cache, if set, opens the local cache of the repository whose config
	// id is repoID (see Cache); Open and Init call it once. A cache that
	// cannot be opened is logged and not used. Nil: no cache (the default:
	// a repository in a directory is its own cache).
	Cache func(repoID string) (Cache, error)
	// IndexLoaded, if set, is told how many blobs the index holds after
	// LoadIndex, so the caller can size its memory budget.
	IndexLoaded func(blobs int)
}

func (o *Options) applyDefaults(be backend.Backend) {
	if o.PackSize == 0 {
		o.PackSize = 16 << 20
	}
	if o.Uploads <= 0 {
		o.Uploads = 4
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
		} else if o.ScratchDir != nil {
			o.TempDir = o.ScratchDir()
		}
		if o.TempDir == "" {
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
	o.ExclusiveLockWait = min(o.ExclusiveLockWait, o.LockRefresh/2)
	if o.MaxClockSkew == 0 {
		o.MaxClockSkew = 5 * time.Minute
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
