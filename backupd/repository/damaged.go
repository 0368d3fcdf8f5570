package repository

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
)

// A damage record (an unpacked object of type damaged/, AD "backupd damaged
// v1") lists blobs and packs that a check or a verify run found damaged or
// missing. Records are only ever added; together they are the repository's
// memory of lost data:
//
//   - LoadIndex marks every blob a record names as damaged where it is
//     indexed (at the pack recorded for it, or anywhere in a lost pack):
//     Has reports false for it, so the next backup stores it again from the
//     source instead of deduplicating against the lost copy, and a copy
//     stored again replaces the damaged location in the index.
//   - IndexOrphanPacks never adopts a pack a record names.
//   - repair index leaves recorded blobs out of the index it rebuilds.
//   - Resolved pairs are damaged blobs that no snapshot refers to any more
//     (repair snapshots removed the references): they no longer make
//     backups walk every directory.
//
// See docs/FORMAT.md "Damage records".

// DamageRecordVersion is the version of the damage records this build
// writes and reads.
const DamageRecordVersion = 1

// maxDamageEntries bounds the entries one record may hold.
const maxDamageEntries = 1 << 22

// DamagedBlob is one damaged blob and the pack whose copy of it is damaged.
type DamagedBlob struct {
	ID   ID `json:"id"`
	Pack ID `json:"pack"`
}

// DamageRecord is the decoded form of a damage record.
type DamageRecord struct {
	Version  int       `json:"version"`
	Time     time.Time `json:"time"`
	Hostname string    `json:"hostname,omitempty"`
	// FoundBy names what found the damage ("check", "verify", "repair
	// index").
	FoundBy string `json:"found_by"`
	// Packs are lost packs (missing, or their trailer unreadable): every
	// blob indexed in them is damaged.
	Packs []ID `json:"packs,omitempty"`
	// Blobs are damaged copies of blobs.
	Blobs []DamagedBlob `json:"blobs,omitempty"`
	// Resolved are damaged copies no snapshot refers to any more.
	Resolved []DamagedBlob `json:"resolved,omitempty"`
}

// DecodeDamageRecord parses and validates the plaintext of a damage record.
func DecodeDamageRecord(b []byte) (*DamageRecord, error) {
	var d DamageRecord
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("damage record: %w: %w", ErrFormat, err)
	}
	if d.Version != DamageRecordVersion {
		return nil, fmt.Errorf("damage record: %w: version %d, want %d", ErrFormat, d.Version, DamageRecordVersion)
	}
	if n := len(d.Packs) + len(d.Blobs) + len(d.Resolved); n > maxDamageEntries {
		return nil, fmt.Errorf("damage record: %w: %d entries, at most %d", ErrFormat, n, maxDamageEntries)
	}
	for _, e := range append(append([]DamagedBlob(nil), d.Blobs...), d.Resolved...) {
		if e.ID.IsNull() || e.Pack.IsNull() {
			return nil, fmt.Errorf("damage record: %w: entry with a null blob or pack id", ErrFormat)
		}
	}
	return &d, nil
}

// Damage is the union of the damage records of a repository.
type Damage struct {
	// Records are the ids of the records read.
	Records []ID
	// Packs are the lost packs.
	Packs map[ID]bool
	// Blobs maps a damaged blob to the packs whose copies of it are
	// damaged.
	Blobs map[ID]map[ID]bool
	// Resolved holds the damaged copies no snapshot refers to any more.
	Resolved map[DamagedBlob]bool
	// named holds every pack of Packs and Blobs.
	named map[ID]bool
}

// NewDamage returns an empty Damage.
func NewDamage() *Damage {
	return &Damage{Packs: map[ID]bool{}, Blobs: map[ID]map[ID]bool{}, Resolved: map[DamagedBlob]bool{}, named: map[ID]bool{}}
}

// Add merges a record into d.
func (d *Damage) Add(rec *DamageRecord) {
	for _, p := range rec.Packs {
		d.Packs[p] = true
		d.named[p] = true
	}
	for _, b := range rec.Blobs {
		d.addBlob(b)
	}
	for _, b := range rec.Resolved {
		d.Resolved[b] = true
	}
}

func (d *Damage) addBlob(b DamagedBlob) {
	m := d.Blobs[b.ID]
	if m == nil {
		m = map[ID]bool{}
		d.Blobs[b.ID] = m
	}
	m[b.Pack] = true
	d.named[b.Pack] = true
}

// IsDamaged reports whether the copy of blob in pack is recorded damaged.
func (d *Damage) IsDamaged(blob, pack ID) bool {
	if d == nil {
		return false
	}
	return d.Packs[pack] || d.Blobs[blob][pack]
}

// Names reports whether a record names pack (lost, or holding a damaged
// copy of a blob).
func (d *Damage) Names(pack ID) bool {
	if d == nil {
		return false
	}
	return d.named[pack]
}

// Empty reports whether nothing is recorded.
func (d *Damage) Empty() bool { return d == nil || len(d.Packs) == 0 && len(d.Blobs) == 0 }

// Pairs returns every recorded damaged copy, resolved or not.
func (d *Damage) Pairs() []DamagedBlob {
	var out []DamagedBlob
	for _, b := range SortedIDs(d.Blobs) {
		for _, p := range SortedIDs(d.Blobs[b]) {
			out = append(out, DamagedBlob{ID: b, Pack: p})
		}
	}
	return out
}

// LoadDamage reads every damage record. A record that cannot be read is an
// error: ignoring it would let backups deduplicate against lost data.
func (r *Repo) LoadDamage(ctx context.Context) (*Damage, error) {
	d := NewDamage()
	var names []string
	if err := r.be.List(ctx, backend.DamagedFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list damage records: %w", err)
	}
	for _, n := range names {
		id, err := ParseID(n)
		if err != nil {
			r.log.Warn("ignoring damage record with a malformed name", "name", n)
			continue
		}
		b, err := r.LoadUnpacked(ctx, backend.DamagedFile, id)
		if errors.Is(err, backend.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("damage record damaged/%s: %w", id, err)
		}
		rec, err := DecodeDamageRecord(b)
		if err != nil {
			return nil, &CorruptError{What: "damage record", ID: id, Err: err}
		}
		d.Records = append(d.Records, id)
		d.Add(rec)
	}
	return d, nil
}

// SaveDamageRecord stores a damage record (Version, Time and Hostname are
// filled in) and returns its id.
func (r *Repo) SaveDamageRecord(ctx context.Context, rec *DamageRecord) (ID, error) {
	rec.Version = DamageRecordVersion
	if rec.Time.IsZero() {
		rec.Time = r.opt.Now().UTC()
	}
	if rec.Hostname == "" {
		rec.Hostname = r.opt.Hostname
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return ID{}, err
	}
	id, err := r.SaveUnpacked(ctx, backend.DamagedFile, b)
	if err != nil {
		return id, fmt.Errorf("record damage: %w", err)
	}
	r.mu.Lock()
	if r.damage != nil {
		r.damage.Add(rec)
	}
	r.mu.Unlock()
	return id, nil
}

// Damage returns the damage loaded by LoadIndex (nil before).
func (r *Repo) Damage() *Damage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.damage
}

// UnhealedDamage returns how many recorded damaged blobs have no healthy
// indexed copy and are not resolved: snapshots may still refer to them.
// A backup then walks every directory (a subtree reused whole by its
// digest could name them) so that it stores again what the source still
// holds.
func (r *Repo) UnhealedDamage() int {
	d := r.Damage()
	if d == nil {
		return 0
	}
	n := 0
	for b, packs := range d.Blobs {
		if r.idx.Has(b) {
			continue
		}
		for p := range packs {
			if !d.Resolved[DamagedBlob{ID: b, Pack: p}] {
				n++
				break
			}
		}
	}
	return n
}
