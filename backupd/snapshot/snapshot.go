// Package snapshot defines the tree and snapshot records stored in a
// repository and their encodings. A tree is one directory: its entries sorted
// by name, each with full metadata; files list their chunk blob ids and a
// content hash; directories name their subtree.
//
// Imports: repository and backend. Like all of the engine it never imports
// Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package snapshot

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/zeebo/blake3"

	"github.com/meshbackup/backupd/backupd/repository"
)

// Node types.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// Node is one directory entry.
type Node struct {
	Name    string          `json:"name"`
	Type    string          `json:"type"`
	Mode    fs.FileMode     `json:"mode"`
	UID     uint32          `json:"uid"`
	GID     uint32          `json:"gid"`
	Size    uint64          `json:"size,omitempty"`
	MtimeNS int64           `json:"mtime_ns"`
	CtimeNS int64           `json:"ctime_ns"`
	Inode   uint64          `json:"inode,omitempty"`
	Target  string          `json:"target,omitempty"`
	Content []repository.ID `json:"content,omitempty"`
	// Hash is the content hash: BLAKE3-256 over the concatenated chunk ids
	// (see ContentHash). A restored file is proved by re-hashing it at the
	// recorded chunk boundaries.
	Hash    *repository.ID `json:"hash,omitempty"`
	Subtree *repository.ID `json:"subtree,omitempty"`
	// Digest (directories) is the source scan's digest of everything
	// below the directory: names, types and stat metadata, recursively
	// (archiver.Scan). A later backup whose scan gives the same digest
	// reuses Subtree without walking it. Absent when a file below could not
	// be read.
	Digest *repository.ID `json:"digest,omitempty"`
	// TailRuns counts consecutive backups that read only the appended tail
	// of this file; at the limit the next backup reads it whole.
	TailRuns int `json:"tail_runs,omitempty"`
}

// ContentHash is the per-file hash recorded in a node.
func ContentHash(content []repository.ID) repository.ID {
	h := blake3.New()
	for _, id := range content {
		_, _ = h.Write(id[:])
	}
	var out repository.ID
	h.Sum(out[:0])
	return out
}

// Tree is a directory listing.
type Tree struct {
	Nodes []Node `json:"nodes"`
}

// ValidName reports whether name can be a directory entry: restore must never
// write outside its target, so separators, "." and ".." are refused.
func ValidName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid entry name %q", name)
	}
	return nil
}

// Totals summarize a backup run.
type Totals struct {
	Files          uint64  `json:"files"`
	Dirs           uint64  `json:"dirs"`
	FilesNew       uint64  `json:"files_new"`
	FilesChanged   uint64  `json:"files_changed"`
	FilesUnchanged uint64  `json:"files_unchanged"`
	FilesSkipped   uint64  `json:"files_skipped"`
	Errors         uint64  `json:"errors"`
	BytesTotal     uint64  `json:"bytes_total"`
	BytesRead      uint64  `json:"bytes_read"`
	BytesWritten   uint64  `json:"bytes_written"`
	BlobsWritten   uint64  `json:"blobs_written"`
	DurationSec    float64 `json:"duration_seconds"`
}

// Snapshot is a manifest, written after everything it refers to.
type Snapshot struct {
	Version  int       `json:"version"`
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Policy   string    `json:"policy"`
	Source   string    `json:"source"`
	Hostname string    `json:"hostname"`
	// Tags are labels the backup was given (--tag, a policy's tags).
	Tags   []string       `json:"tags,omitempty"`
	Parent *repository.ID `json:"parent,omitempty"`
	Tree   repository.ID  `json:"tree"`
	Totals Totals         `json:"totals"`
	// DigestRuns counts consecutive backups of the policy that reused
	// unchanged subtrees by their digest instead of checking every file
	// against the index; at the archiver's limit a backup walks everything.
	DigestRuns int    `json:"digest_runs,omitempty"`
	Program    string `json:"program,omitempty"`
	// Root is the source directory's own metadata, which a restore gives
	// the target directory. Snapshots made before 2026-12-01 lack it; their
	// restores leave the target's metadata alone.
	Root *RootMeta `json:"root,omitempty"`
	// Suspect, when set, says why this snapshot may not be the data the
	// policy is meant to hold (its source moved to another device, or was
	// empty and accepted as such). Retention never lets a suspect snapshot
	// push out the newest one that is not.
	Suspect string `json:"suspect,omitempty"`
	// Repaired is set on a snapshot that repair snapshots wrote in place
	// of one that referred to lost data (see Repair).
	Repaired *RepairInfo `json:"repaired,omitempty"`

	// ID is the object id; not stored.
	ID repository.ID `json:"-"`
}

// RootMeta is the metadata of a snapshot's source directory itself.
type RootMeta struct {
	// Dev is the device (st_dev) the source directory was on; 0 in
	// snapshots made before it was recorded.
	Dev     uint64      `json:"dev,omitempty"`
	Mode    fs.FileMode `json:"mode"`
	UID     uint32      `json:"uid"`
	GID     uint32      `json:"gid"`
	MtimeNS int64       `json:"mtime_ns"`
}

// Node returns the root as a directory node, for restoring its metadata.
func (m *RootMeta) Node() Node {
	return Node{Name: ".", Type: TypeDir, Mode: m.Mode, UID: m.UID, GID: m.GID, MtimeNS: m.MtimeNS}
}

// dirModeBits are the mode bits a directory may have.
const dirModeBits = fs.ModeDir | fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// Decode parses and validates a snapshot manifest.
func Decode(b []byte) (*Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("snapshot: %w: %w", repository.ErrFormat, err)
	}
	if s.Version != 1 {
		return nil, fmt.Errorf("snapshot: %w: version %d, want 1", repository.ErrFormat, s.Version)
	}
	if s.Policy == "" {
		return nil, fmt.Errorf("snapshot: %w: no policy", repository.ErrFormat)
	}
	if s.DigestRuns < 0 {
		return nil, fmt.Errorf("snapshot: %w: digest_runs %d is negative", repository.ErrFormat, s.DigestRuns)
	}
	if s.Tree.IsNull() {
		return nil, fmt.Errorf("snapshot: %w: no tree", repository.ErrFormat)
	}
	if s.Root != nil && (!s.Root.Mode.IsDir() || s.Root.Mode&^dirModeBits != 0) {
		return nil, fmt.Errorf("snapshot: %w: root mode %v is not a directory's", repository.ErrFormat, s.Root.Mode)
	}
	return &s, nil
}
