// Package chunker splits a byte stream into content-defined chunks with
// FastCDC (normalized chunking, gear hash). The gear table is derived from a
// per-repository secret so chunk boundaries do not leak content to someone
// who sees only blob sizes.
//
// Sizes: min 256 KiB, average 1 MiB, max 4 MiB (docs/DESIGN.md §3.1). A stream shorter
// than the minimum is one chunk.
//
// Imports: the standard library only. Like all of the engine it never imports
// Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package chunker

import (
	"errors"
	"io"
)

// Size limits of a chunk.
const (
	MinSize = 256 << 10
	AvgSize = 1 << 20
	MaxSize = 4 << 20
)

const (
	// Masks test the top bits of the fingerprint, which depend on the last
	// 64 bytes read. A harder mask (22 bits) before the average size and an
	// easier one (18 bits) after it normalize sizes around 1 MiB.
	maskS = uint64(1<<22-1) << 42
	maskL = uint64(1<<18-1) << 46
)

// Table is a gear table.
type Table [256]uint64

// NewTable derives the gear table from a seed with splitmix64.
func NewTable(seed uint64) *Table {
	var t Table
	x := seed
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		t[i] = z ^ z>>31
	}
	return &t
}

// Cut returns the length of the first chunk of data. data must hold
// MaxSize bytes, or the whole rest of the stream.
func (t *Table) Cut(data []byte) int {
	n := len(data)
	if n <= MinSize {
		return n
	}
	if n > MaxSize {
		n = MaxSize
	}
	normal := AvgSize
	if n < normal {
		normal = n
	}
	var fp uint64
	i := MinSize
	for ; i < normal; i++ {
		fp = fp<<1 + t[data[i]]
		if fp&maskS == 0 {
			return i + 1
		}
	}
	for ; i < n; i++ {
		fp = fp<<1 + t[data[i]]
		if fp&maskL == 0 {
			return i + 1
		}
	}
	return n
}

// Chunker reads a stream and returns its chunks.
type Chunker struct {
	t          *Table
	rd         io.Reader
	buf        []byte
	start, end int
	eof        bool
}

// New returns a chunker over rd using buf as its window; buf is grown to
// MaxSize+1 MiB if smaller. Reuse the window across files to keep memory
// flat.
func New(t *Table, rd io.Reader, buf []byte) *Chunker {
	const size = MaxSize + 1<<20
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	return &Chunker{t: t, rd: rd, buf: buf[:size]}
}

// Reset points the chunker at another stream, keeping its window.
func (c *Chunker) Reset(rd io.Reader) {
	c.rd, c.start, c.end, c.eof = rd, 0, 0, false
}

// Buffer returns the window, for reuse.
func (c *Chunker) Buffer() []byte { return c.buf }

// Next returns the next chunk, valid until the next call, or io.EOF at the
// end of the stream.
func (c *Chunker) Next() ([]byte, error) {
	if c.end-c.start < MaxSize && !c.eof {
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
	if c.start == c.end {
		return nil, io.EOF
	}
	n := c.t.Cut(c.buf[c.start:c.end])
	chunk := c.buf[c.start : c.start+n]
	c.start += n
	return chunk, nil
}

func (c *Chunker) fill() error {
	copy(c.buf, c.buf[c.start:c.end])
	c.end -= c.start
	c.start = 0
	for c.end < len(c.buf) {
		n, err := c.rd.Read(c.buf[c.end:])
		c.end += n
		if errors.Is(err, io.EOF) {
			c.eof = true
			return nil
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrNoProgress
		}
	}
	return nil
}
