package repository

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// An index file lists packs and their blobs. Backups write delta index files
// (only the packs they added); prune writes full ones that supersede others.
//
//	index  = 0x01 u32le(nsuper) id[32]* u32le(npacks) pack*
//	pack   = id[32] u32le(nblobs) entry*
//	entry  = u8(type) u8(flags) u32le(offset) u32le(length) u32le(raw length) id[32]
//
// The file is sealed (AD "backupd index v1") and named by the BLAKE3 of its
// sealed bytes.
const (
	indexVersion   = 1
	indexEntrySize = 1 + 1 + 4 + 4 + 4 + 32
	maxIndexPacks  = 1 << 24
)

// IndexPack is one pack of an index file.
type IndexPack struct {
	ID    ID
	Blobs []PackBlob
}

// IndexFile is the decoded form of an index file.
type IndexFile struct {
	Supersedes []ID
	Packs      []IndexPack
}

// Encode returns the plaintext of an index file.
func (f *IndexFile) Encode() []byte {
	n := 9 + len(f.Supersedes)*32
	for _, p := range f.Packs {
		n += 36 + len(p.Blobs)*indexEntrySize
	}
	b := make([]byte, 0, n)
	b = append(b, indexVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Supersedes)))
	for _, id := range f.Supersedes {
		b = append(b, id[:]...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Packs)))
	for _, p := range f.Packs {
		b = append(b, p.ID[:]...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Blobs)))
		for _, pb := range p.Blobs {
			b = append(b, byte(pb.Type), pb.Flags)
			b = binary.LittleEndian.AppendUint32(b, pb.Offset)
			b = binary.LittleEndian.AppendUint32(b, pb.Length)
			b = binary.LittleEndian.AppendUint32(b, pb.RawLen)
			b = append(b, pb.ID[:]...)
		}
	}
	return b
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = io.ErrUnexpectedEOF
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.take(4)
	if v == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(v)
}

func (d *decoder) id() (id ID) {
	copy(id[:], d.take(32))
	return id
}

// DecodeIndexFile parses the plaintext of an index file.
func DecodeIndexFile(b []byte) (*IndexFile, error) {
	d := &decoder{b: b}
	v := d.take(1)
	if d.err == nil && v[0] != indexVersion {
		return nil, fmt.Errorf("index: %w: version %d, want %d", ErrFormat, v[0], indexVersion)
	}
	f := &IndexFile{}
	ns := d.u32()
	if d.err == nil && uint64(ns)*32 > uint64(len(d.b)) {
		return nil, fmt.Errorf("index: %w: %d superseded ids: %w", ErrFormat, ns, io.ErrUnexpectedEOF)
	}
	for i := uint32(0); i < ns && d.err == nil; i++ {
		f.Supersedes = append(f.Supersedes, d.id())
	}
	np := d.u32()
	if d.err == nil && (np > maxIndexPacks || uint64(np)*36 > uint64(len(d.b))) {
		return nil, fmt.Errorf("index: %w: %d packs do not fit in %d bytes: %w", ErrFormat, np, len(d.b), io.ErrUnexpectedEOF)
	}
	for i := uint32(0); i < np && d.err == nil; i++ {
		p := IndexPack{ID: d.id()}
		nb := d.u32()
		if d.err == nil && uint64(nb)*indexEntrySize > uint64(len(d.b)) {
			d.err = io.ErrUnexpectedEOF
			break
		}
		p.Blobs = make([]PackBlob, 0, nb)
		for j := uint32(0); j < nb && d.err == nil; j++ {
			e := d.take(indexEntrySize)
			if e == nil {
				break
			}
			pb := PackBlob{Type: BlobType(e[0]), Flags: e[1],
				Offset: binary.LittleEndian.Uint32(e[2:6]), Length: binary.LittleEndian.Uint32(e[6:10]),
				RawLen: binary.LittleEndian.Uint32(e[10:14])}
			copy(pb.ID[:], e[14:46])
			if pb.Type != DataBlob && pb.Type != TreeBlob {
				return nil, fmt.Errorf("index: %w: pack %s blob %d has unknown type %d", ErrFormat, p.ID.Str(), j, e[0])
			}
			if pb.Flags&^FlagCompressed != 0 {
				return nil, fmt.Errorf("index: %w: pack %s blob %d has unknown flags %#x", ErrFormat, p.ID.Str(), j, pb.Flags)
			}
			if err := checkBlobLengths(pb.Type, pb.Flags, pb.Length, pb.RawLen); err != nil {
				return nil, fmt.Errorf("index: %w: pack %s blob %s: %w", ErrFormat, p.ID.Str(), pb.ID.Str(), err)
			}
			if uint64(pb.Offset)+uint64(pb.Length) > 1<<32-1 {
				return nil, fmt.Errorf("index: %w: pack %s blob %s: offset %d + length %d overflows", ErrFormat, p.ID.Str(), pb.ID.Str(), pb.Offset, pb.Length)
			}
			p.Blobs = append(p.Blobs, pb)
		}
		f.Packs = append(f.Packs, p)
	}
	if d.err != nil {
		return nil, fmt.Errorf("index: %w: %w", ErrFormat, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("index: %w: %d trailing bytes", ErrFormat, len(d.b))
	}
	return f, nil
}

// Location is where a blob is stored.
type Location struct {
	Pack   ID
	Type   BlobType
	Flags  uint8
	Offset uint32
	Length uint32
	RawLen uint32
	// Damaged means this copy is recorded damaged (see Damage): Has
	// reports false for it.
	Damaged bool
}

type entry struct {
	pack    uint32
	offset  uint32
	length  uint32
	rawLen  uint32
	typ     BlobType
	flags   uint8
	damaged bool
}

// Index is the in-memory index of every blob the repository holds. It is safe
// for concurrent use.
type Index struct {
	mu     sync.RWMutex
	packs  []ID
	packNo map[ID]uint32
	blobs  map[ID]entry
	damage *Damage
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{packNo: make(map[ID]uint32), blobs: make(map[ID]entry)}
}

// SetDamage tells the index which copies of blobs are recorded damaged.
// Call it before AddPack: copies added afterwards that d names are indexed
// as damaged.
func (x *Index) SetDamage(d *Damage) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.damage = d
}

// AddPack records a pack's blobs. A blob already indexed keeps its first
// location, unless that copy is damaged and this one is not.
func (x *Index) AddPack(pack ID, blobs []PackBlob) {
	x.mu.Lock()
	defer x.mu.Unlock()
	no, ok := x.packNo[pack]
	if !ok {
		no = uint32(len(x.packs))
		x.packs = append(x.packs, pack)
		x.packNo[pack] = no
	}
	for _, pb := range blobs {
		bad := x.damage.IsDamaged(pb.ID, pack)
		if old, ok := x.blobs[pb.ID]; ok && (!old.damaged || bad) {
			continue
		}
		x.blobs[pb.ID] = entry{pack: no, offset: pb.Offset, length: pb.Length, rawLen: pb.RawLen, typ: pb.Type, flags: pb.Flags, damaged: bad}
	}
}

// Lookup returns a blob's location.
func (x *Index) Lookup(id ID) (Location, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.blobs[id]
	if !ok {
		return Location{}, false
	}
	return Location{Pack: x.packs[e.pack], Type: e.typ, Flags: e.flags, Offset: e.offset, Length: e.length, RawLen: e.rawLen, Damaged: e.damaged}, true
}

// Has reports whether a blob is indexed and its copy is not recorded
// damaged: whether a backup may deduplicate against it.
func (x *Index) Has(id ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.blobs[id]
	return ok && !e.damaged
}

// Damaged returns how many indexed blobs have only a damaged copy.
func (x *Index) Damaged() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := 0
	for _, e := range x.blobs {
		if e.damaged {
			n++
		}
	}
	return n
}

// HasPack reports whether a pack is indexed.
func (x *Index) HasPack(id ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.packNo[id]
	return ok
}

// Len returns the number of blobs.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.blobs)
}

// Packs returns the blobs of each pack, as indexed.
func (x *Index) Packs() map[ID][]PackBlob {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[ID][]PackBlob, len(x.packs))
	for _, p := range x.packs {
		out[p] = nil
	}
	for id, e := range x.blobs {
		p := x.packs[e.pack]
		out[p] = append(out[p], PackBlob{Type: e.typ, Flags: e.flags, ID: id, Offset: e.offset, Length: e.length, RawLen: e.rawLen})
	}
	return out
}
