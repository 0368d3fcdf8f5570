// Package backend defines the storage contract the repository is written
// against. A backend stores immutable, named objects grouped by type; it knows
// nothing about packs, encryption or snapshots.
//
// Invariants every implementation keeps:
//   - Save is atomic and durable: when it returns nil the whole object is
//     stored and survives a crash of the writer or of the host; when it
//     returns an error or the process dies, no partial object is visible
//     under the name.
//   - Objects are immutable: Save never replaces an existing object, it
//     reports ErrExists instead.
//   - Not-found is reported as an error matching ErrNotFound.
//   - Backends do not retry; retrying is a wrapper's job: package
//     backend/retry retries what a backend marks Transient (errors.go) and
//     re-fetches a Load whose bytes failed verification (ErrIntegrity).
//
// # Optional features
//
// Backend is the whole contract; a backend may offer more through small,
// named interfaces of this package: TempDirer (a scratch directory on the
// backend's storage) and TempCleaner (removing leftovers from it). A caller
// never asserts a concrete backend type or an anonymous interface: it asks
// As, which finds the feature on the backend or on any backend it wraps.
//
// A wrapper (metering, fault injection, a retry layer) embeds or holds the
// Backend it wraps and implements Unwrapper, returning it. It does not
// forward optional methods: As walks Unwrap, so a wrapper cannot hide a
// feature of the backend underneath by forgetting to forward a method. A
// wrapper that changes what a feature does implements that interface
// itself; As finds the outermost implementation first.
//
// Imports: the standard library only; every other engine package may import
// it, it imports none of them. Like all of the engine it never imports
// Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Sentinel errors of the contract. Match them with errors.Is.
var (
	ErrNotFound = errors.New("backend: not found")
	ErrExists   = errors.New("backend: already exists")
)

// FileType groups the objects of a repository. A backend stores every type
// alike, as opaque named objects; how the objects of a type are encoded is
// the repository's format (docs/FORMAT.md), and what the objects of a type
// that the repository only seals mean belongs to the package that stores
// them.
type FileType string

// The object types of a repository.
const (
	// ConfigFile is the single config object.
	ConfigFile FileType = "config"
	// KeyFile objects hold the master key, wrapped by a password.
	KeyFile FileType = "keys"
	// PackFile objects hold blobs.
	PackFile FileType = "data"
	// IndexFile objects list packs and their blobs.
	IndexFile FileType = "index"
	// SnapshotFile objects are snapshot manifests.
	SnapshotFile FileType = "snapshots"
	// LockFile objects are lock leases.
	LockFile FileType = "locks"
	// MarkerFile objects are marks and hints left for later runs.
	MarkerFile FileType = "markers"
	// ResultFile objects are sealed records that a client of the
	// repository keeps beside its snapshots; the repository stores them as
	// opaque unpacked objects.
	ResultFile FileType = "results"
	// DamagedFile objects are sealed records of blobs and packs that a
	// check found damaged or missing (docs/FORMAT.md "Damage records").
	DamagedFile FileType = "damaged"
)

// Types lists every FileType, in the order a reader should trust them
// (packs first; config last).
var Types = []FileType{PackFile, IndexFile, SnapshotFile, KeyFile, LockFile, MarkerFile, ResultFile, DamagedFile, ConfigFile}

// Handle names one object.
type Handle struct {
	Type FileType
	Name string
}

func (h Handle) String() string {
	if h.Type == ConfigFile {
		return "config"
	}
	return fmt.Sprintf("%s/%s", h.Type, h.Name)
}

// Valid reports whether the handle can name an object.
func (h Handle) Valid() error {
	switch h.Type {
	case ConfigFile:
		return nil
	case KeyFile, PackFile, IndexFile, SnapshotFile, LockFile, MarkerFile, ResultFile, DamagedFile:
	default:
		return fmt.Errorf("invalid object type %q", h.Type)
	}
	if h.Name == "" || len(h.Name) > 128 {
		return fmt.Errorf("invalid object name %q", h.Name)
	}
	for _, c := range h.Name {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '_' || c == '.') || h.Name[0] == '.' {
			return fmt.Errorf("invalid object name %q", h.Name)
		}
	}
	if h.Type == PackFile && len(h.Name) < 2 {
		return fmt.Errorf("invalid pack name %q", h.Name)
	}
	return nil
}

// FileInfo describes a stored object.
type FileInfo struct {
	Name string
	Size int64
}

// Backend stores immutable objects. All methods are safe for concurrent use.
type Backend interface {
	// Save stores rd's content (read from its start) under h. It is atomic
	// and durable (see the package doc) and returns an error matching
	// ErrExists when h is already stored, leaving that object untouched.
	Save(ctx context.Context, h Handle, rd io.ReadSeeker) error

	// Load calls fn with a reader of length bytes of h starting at offset
	// (length 0 means to the end). fn may be called more than once by
	// retrying wrappers, so it must be idempotent. A missing object gives
	// an error matching ErrNotFound; a short object gives
	// io.ErrUnexpectedEOF.
	Load(ctx context.Context, h Handle, length int, offset int64, fn func(rd io.Reader) error) error

	// Stat returns the object's size, or an error matching ErrNotFound.
	Stat(ctx context.Context, h Handle) (FileInfo, error)

	// List calls fn once for every object of type t, in no particular
	// order. An error from fn stops the listing and is returned.
	List(ctx context.Context, t FileType, fn func(FileInfo) error) error

	// Remove deletes h. Removing a missing object is not an error.
	Remove(ctx context.Context, h Handle) error

	// Location describes where the backend stores objects, for messages.
	Location() string
}

// LoadAll reads a whole object into memory.
func LoadAll(ctx context.Context, be Backend, h Handle) ([]byte, error) {
	var buf []byte
	err := be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		b, err := io.ReadAll(rd)
		buf = b
		return err
	})
	if err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadAt reads len(p) bytes of h at offset into p.
func ReadAt(ctx context.Context, be Backend, h Handle, p []byte, offset int64) error {
	return be.Load(ctx, h, len(p), offset, func(rd io.Reader) error {
		_, err := io.ReadFull(rd, p)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	})
}
