package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
)

// LoadTree loads and decodes a tree blob.
func LoadTree(ctx context.Context, r *repository.Repo, id repository.ID) (*Tree, error) {
	b, err := r.LoadBlob(ctx, repository.TreeBlob, id, nil)
	if err != nil {
		return nil, fmt.Errorf("load tree %s: %w", id.Str(), err)
	}
	t, err := DecodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", id.Str(), err)
	}
	return t, nil
}

// Save stores a snapshot manifest and sets s.ID.
func Save(ctx context.Context, r *repository.Repo, s *Snapshot) error {
	s.Version = 1
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	id, err := r.SaveUnpacked(ctx, backend.SnapshotFile, b)
	if err != nil {
		return err
	}
	s.ID = id
	return nil
}

// Load loads one snapshot.
func Load(ctx context.Context, r *repository.Repo, id repository.ID) (*Snapshot, error) {
	b, err := r.LoadUnpacked(ctx, backend.SnapshotFile, id)
	if err != nil {
		return nil, err
	}
	s, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id.Str(), err)
	}
	s.ID = id
	return s, nil
}

// LoadAll loads every snapshot, sorted oldest first by (Seq, Time, ID). An
// unreadable snapshot is returned in bad, not as a failure of the listing.
func LoadAll(ctx context.Context, r *repository.Repo) (snaps []*Snapshot, bad map[repository.ID]error, err error) {
	ids, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, nil, err
	}
	bad = map[repository.ID]error{}
	for _, id := range ids {
		s, err := Load(ctx, r, id)
		if errors.Is(err, backend.ErrNotFound) {
			continue // forgotten meanwhile
		}
		if err != nil {
			bad[id] = err
			continue
		}
		snaps = append(snaps, s)
	}
	Sort(snaps)
	return snaps, bad, nil
}

// Sort orders snapshots oldest first. Sequence numbers order the snapshots of
// a policy whatever the clock did (docs/DESIGN.md §8 scenario 12).
func Sort(snaps []*Snapshot) {
	sort.SliceStable(snaps, func(i, j int) bool {
		a, b := snaps[i], snaps[j]
		if a.Policy != b.Policy {
			return a.Policy < b.Policy
		}
		if a.Seq != b.Seq {
			return a.Seq < b.Seq
		}
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		return a.ID.String() < b.ID.String()
	})
}

// Latest returns the newest snapshot matching the filter (empty fields match
// anything), or nil.
func Latest(snaps []*Snapshot, policy, source, hostname string) *Snapshot {
	var best *Snapshot
	for _, s := range snaps {
		if policy != "" && s.Policy != policy || source != "" && s.Source != source || hostname != "" && s.Hostname != hostname {
			continue
		}
		if best == nil || s.Seq > best.Seq || s.Seq == best.Seq && s.Time.After(best.Time) {
			best = s
		}
	}
	return best
}

// LatestHealthy is Latest among the snapshots that are not Suspect.
func LatestHealthy(snaps []*Snapshot, policy, source, hostname string) *Snapshot {
	var healthy []*Snapshot
	for _, s := range snaps {
		if s.Suspect == "" {
			healthy = append(healthy, s)
		}
	}
	return Latest(healthy, policy, source, hostname)
}

// NextSeq returns the sequence number of the next snapshot of policy.
func NextSeq(snaps []*Snapshot, policy string) uint64 {
	var m uint64
	for _, s := range snaps {
		if s.Policy == policy && s.Seq > m {
			m = s.Seq
		}
	}
	return m + 1
}

// Find resolves "latest" or a unique id prefix (at least 4 hex characters)
// among snaps. bad are the snapshots LoadAll could not read: a reference
// that may mean one of them is an error wrapping repository.ErrCorrupt that
// names it, never a silent choice of another snapshot.
func Find(snaps []*Snapshot, bad map[repository.ID]error, ref, policy string) (*Snapshot, error) {
	if ref == "latest" {
		if id, err := firstBad(bad, ""); err != nil {
			return nil, fmt.Errorf("%w: cannot tell which snapshot is the latest: snapshot %s is unreadable: %v", repository.ErrCorrupt, id.Str(), err)
		}
		s := Latest(snaps, policy, "", "")
		if s == nil {
			if policy != "" {
				return nil, fmt.Errorf("no snapshot of policy %q", policy)
			}
			return nil, errors.New("the repository has no snapshots")
		}
		return s, nil
	}
	if err := CheckRef(ref); err != nil {
		return nil, err
	}
	prefix := strings.ToLower(ref)
	if id, err := firstBad(bad, prefix); err != nil {
		return nil, fmt.Errorf("%w: snapshot %s is unreadable: %v", repository.ErrCorrupt, id.Str(), err)
	}
	var found *Snapshot
	for _, s := range snaps {
		if policy != "" && s.Policy != policy {
			continue
		}
		if strings.HasPrefix(s.ID.String(), prefix) {
			if found != nil {
				return nil, fmt.Errorf("snapshot id %q is ambiguous", ref)
			}
			found = s
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no snapshot with id %q", ref)
	}
	return found, nil
}

// CheckRef refuses a reference that can name no snapshot: it must be
// "latest" or at least 4 hex characters of an id.
func CheckRef(ref string) error {
	if ref != "latest" && (len(ref) < 4 || strings.Trim(strings.ToLower(ref), "0123456789abcdef") != "") {
		return fmt.Errorf("snapshot %q: give 'latest' or at least 4 hex characters of a snapshot id", ref)
	}
	return nil
}

// firstBad returns the unreadable snapshot with the smallest id that starts
// with prefix, and why it is unreadable; a nil error when there is none.
func firstBad(bad map[repository.ID]error, prefix string) (repository.ID, error) {
	var best repository.ID
	var bestErr error
	for id, err := range bad {
		if strings.HasPrefix(id.String(), prefix) && (bestErr == nil || id.String() < best.String()) {
			best, bestErr = id, err
		}
	}
	return best, bestErr
}

// Walk calls fn for every file of the tree id and its subtrees, in name
// order, with the file's path below dir. It stops at the first error from
// loading a tree, from fn, or from ctx.
func Walk(ctx context.Context, r *repository.Repo, id repository.ID, dir string, fn func(path string, n *Node) error) error {
	t, err := LoadTree(ctx, r, id)
	if err != nil {
		return err
	}
	for i := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := &t.Nodes[i]
		p := path.Join(dir, n.Name)
		switch n.Type {
		case TypeDir:
			if err := Walk(ctx, r, *n.Subtree, p, fn); err != nil {
				return err
			}
		case TypeFile:
			if err := fn(p, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove deletes the snapshot manifest id: forgetting it. The data it
// references stays until prune finds it unreferenced.
func Remove(ctx context.Context, r *repository.Repo, id repository.ID) error {
	if err := r.Backend().Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: id.String()}); err != nil {
		return fmt.Errorf("forget snapshot %s: %w", id.Str(), err)
	}
	return nil
}
