package snapshot

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math"
	"sort"

	"github.com/meshbackup/backupd/backupd/repository"
)

// Tree blob encoding (docs/FORMAT.md "Trees"). Binary, because a backup
// decodes every tree of its parent snapshot: JSON cost five times as much
// CPU as the rest of a no-change backup's walk.
//
//	tree = u8(treeVersion) uvarint(count) node*
//	node = u8(type) str(name) uvarint(mode) uvarint(uid) uvarint(gid)
//	       uvarint(size) varint(mtime_ns) varint(ctime_ns) uvarint(inode)
//	       uvarint(tail_runs) body
//	body = file: uvarint(chunks) id*chunks id(hash) |
//	       dir: id(subtree) u8(0 | 1) [id(digest)] | symlink: str(target)
//	str  = uvarint(len) bytes
//
// Nodes are sorted by name, strictly: a decoder refuses duplicates and
// disorder, so one tree has one encoding.
const treeVersion = 1

const (
	codeFile    = 1
	codeDir     = 2
	codeSymlink = 3
)

// Encode returns the tree's encoding, sorting its nodes by name first.
func (t *Tree) Encode() ([]byte, error) {
	sort.Slice(t.Nodes, func(i, j int) bool { return t.Nodes[i].Name < t.Nodes[j].Name })
	size := 1 + binary.MaxVarintLen64
	for i := range t.Nodes {
		n := &t.Nodes[i]
		// Type, nine numbers, the strings, the ids and a directory's digest.
		size += 1 + 11*binary.MaxVarintLen64 + len(n.Name) + len(n.Target) + 32*(len(n.Content)+2) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, treeVersion)
	b = binary.AppendUvarint(b, uint64(len(t.Nodes)))
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if i > 0 && t.Nodes[i-1].Name == n.Name {
			return nil, fmt.Errorf("tree: duplicate entry %q", n.Name)
		}
		var code byte
		switch n.Type {
		case TypeFile:
			if n.Hash == nil {
				return nil, fmt.Errorf("tree: file %q has no content hash", n.Name)
			}
			code = codeFile
		case TypeDir:
			if n.Subtree == nil {
				return nil, fmt.Errorf("tree: directory %q has no subtree", n.Name)
			}
			code = codeDir
		case TypeSymlink:
			code = codeSymlink
		default:
			return nil, fmt.Errorf("tree: entry %q has unknown type %q", n.Name, n.Type)
		}
		if n.Digest != nil && code != codeDir {
			return nil, fmt.Errorf("tree: %s %q has a directory digest", n.Type, n.Name)
		}
		if n.TailRuns < 0 {
			return nil, fmt.Errorf("tree: entry %q has negative tail_runs %d", n.Name, n.TailRuns)
		}
		b = append(b, code)
		b = appendString(b, n.Name)
		b = binary.AppendUvarint(b, uint64(n.Mode))
		b = binary.AppendUvarint(b, uint64(n.UID))
		b = binary.AppendUvarint(b, uint64(n.GID))
		b = binary.AppendUvarint(b, n.Size)
		b = binary.AppendVarint(b, n.MtimeNS)
		b = binary.AppendVarint(b, n.CtimeNS)
		b = binary.AppendUvarint(b, n.Inode)
		b = binary.AppendUvarint(b, uint64(n.TailRuns))
		switch code {
		case codeFile:
			b = binary.AppendUvarint(b, uint64(len(n.Content)))
			for _, id := range n.Content {
				b = append(b, id[:]...)
			}
			b = append(b, n.Hash[:]...)
		case codeDir:
			b = append(b, n.Subtree[:]...)
			if n.Digest != nil {
				b = append(b, 1)
				b = append(b, n.Digest[:]...)
			} else {
				b = append(b, 0)
			}
		case codeSymlink:
			b = appendString(b, n.Target)
		}
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// treeDecoder reads a tree encoding. The first error sticks; later reads
// return zero values.
type treeDecoder struct {
	b   []byte
	s   string // b as one string: names and targets are slices of it
	off int
	err error
}

func (d *treeDecoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *treeDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail(io.ErrUnexpectedEOF)
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *treeDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if !d.checkVarint(n) {
		return 0
	}
	return v
}

func (d *treeDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if !d.checkVarint(n) {
		return 0
	}
	return v
}

// checkVarint consumes a varint of n bytes (binary.Uvarint's result),
// refusing an overlong one (a last byte of zero after others): the encoder
// writes the shortest form, and a tree has one encoding. It reports
// whether the varint was good.
func (d *treeDecoder) checkVarint(n int) bool {
	switch {
	case n == 0:
		d.fail(io.ErrUnexpectedEOF)
	case n < 0:
		d.fail(fmt.Errorf("varint overflows 64 bits at offset %d", d.off))
	case n > 1 && d.b[d.off+n-1] == 0:
		d.fail(fmt.Errorf("overlong varint at offset %d", d.off))
	default:
		d.off += n
		return true
	}
	return false
}

// u32 reads a uvarint that must fit in 32 bits.
func (d *treeDecoder) u32(what string) uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail(fmt.Errorf("%s %d does not fit in 32 bits", what, v))
		return 0
	}
	return uint32(v)
}

// count reads a length and checks that count items of at least min bytes
// each fit in what is left, so a damaged length cannot demand memory.
func (d *treeDecoder) count(min int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if v > uint64(len(d.b)-d.off)/uint64(min) {
		d.fail(fmt.Errorf("count %d at offset %d does not fit in the %d bytes left: %w", v, d.off, len(d.b)-d.off, io.ErrUnexpectedEOF))
		return 0
	}
	return int(v)
}

func (d *treeDecoder) str() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	s := d.s[d.off : d.off+n]
	d.off += n
	return s
}

func (d *treeDecoder) id(ids *[]repository.ID) *repository.ID {
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < len(repository.ID{}) {
		d.fail(io.ErrUnexpectedEOF)
		return nil
	}
	*ids = (*ids)[:len(*ids)+1]
	id := &(*ids)[len(*ids)-1]
	d.off += copy(id[:], d.b[d.off:])
	return id
}

// minNodeSize is the smallest encoded node: a symlink with a one-byte name
// and empty target, every number one byte.
const minNodeSize = 12

// maxPrealloc bounds the nodes allocated before any is decoded: a damaged
// count must not cost memory out of proportion to the input.
const maxPrealloc = 1024

// DecodeTree parses and validates a tree blob. Truncated input is an
// io.ErrUnexpectedEOF, every failure an ErrFormat.
func DecodeTree(b []byte) (*Tree, error) {
	t, err := decodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("tree: %w: %w", repository.ErrFormat, err)
	}
	return t, nil
}

func decodeTree(b []byte) (*Tree, error) {
	d := &treeDecoder{b: b, s: string(b)}
	if v := d.byte(); d.err == nil && v != treeVersion {
		return nil, fmt.Errorf("encoding version %d, want %d", v, treeVersion)
	}
	count := d.count(minNodeSize)
	if d.err != nil {
		return nil, d.err
	}
	// Every id takes 32 bytes of input, so this never reallocates and the
	// pointers into it stay valid.
	ids := make([]repository.ID, 0, (len(b)-d.off)/32)
	t := &Tree{Nodes: make([]Node, 0, min(count, maxPrealloc))}
	for i := range count {
		t.Nodes = append(t.Nodes, Node{})
		n := &t.Nodes[i]
		code := d.byte()
		n.Name = d.str()
		mode := d.u32("mode")
		n.Mode = fs.FileMode(mode)
		n.UID = d.u32("uid")
		n.GID = d.u32("gid")
		n.Size = d.uvarint()
		n.MtimeNS = d.varint()
		n.CtimeNS = d.varint()
		n.Inode = d.uvarint()
		tail := d.uvarint()
		if d.err != nil {
			return nil, d.err
		}
		if tail > math.MaxInt32 {
			return nil, fmt.Errorf("entry %q: tail_runs %d out of range", n.Name, tail)
		}
		n.TailRuns = int(tail)
		if err := ValidName(n.Name); err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			if t.Nodes[i-1].Name == n.Name {
				return nil, fmt.Errorf("duplicate entry %q", n.Name)
			}
			return nil, fmt.Errorf("entries %q and %q out of order", t.Nodes[i-1].Name, n.Name)
		}
		switch code {
		case codeFile:
			n.Type = TypeFile
			chunks := d.count(32)
			start := len(ids)
			for range chunks {
				d.id(&ids)
			}
			if chunks > 0 {
				n.Content = ids[start:len(ids):len(ids)]
			}
			n.Hash = d.id(&ids)
		case codeDir:
			n.Type = TypeDir
			n.Subtree = d.id(&ids)
			switch has := d.byte(); {
			case d.err != nil:
			case has == 1:
				n.Digest = d.id(&ids)
			case has != 0:
				return nil, fmt.Errorf("directory %q: digest flag %d, want 0 or 1", n.Name, has)
			}
		case codeSymlink:
			n.Type = TypeSymlink
			n.Target = d.str()
		default:
			return nil, fmt.Errorf("entry %q has unknown type %d", n.Name, code)
		}
		if d.err != nil {
			return nil, d.err
		}
	}
	if d.off != len(b) {
		return nil, fmt.Errorf("%d bytes after the last entry", len(b)-d.off)
	}
	return t, nil
}
