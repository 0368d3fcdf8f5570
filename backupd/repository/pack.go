package repository

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/crypto"
)

// A pack is blob ciphertexts back to back, then the sealed trailer, then the
// trailer's sealed length as 4 bytes little endian, then the magic. The
// trailer lists every blob, so the index can be rebuilt from packs alone.
//
//	pack    = blob* sealed(trailer) u32le(len(sealed trailer)) "BKP1"
//	trailer = 0x01 u32le(count) entry*
//	entry   = u8(type) u8(flags) u32le(length) u32le(raw length) id[32]
//
// Blob offsets follow from the lengths: the first blob starts at 0.
const (
	packMagic        = "BKP1"
	packTailSize     = 4 + len(packMagic)
	trailerEntrySize = 1 + 1 + 4 + 4 + 32
	trailerVersion   = 1
)

// Blob flags.
const (
	FlagCompressed uint8 = 1
)

// ErrFormat means repository data did not decode; it is wrapped with what was
// being decoded.
var ErrFormat = errors.New("malformed repository data")

// PackBlob is one blob of a pack.
type PackBlob struct {
	Type   BlobType
	Flags  uint8
	ID     ID
	Offset uint32
	Length uint32 // stored (sealed) length
	RawLen uint32 // plaintext length after decompression
}

var trailerAD = []byte("backupd pack trailer v1")

// MaxTreeSize bounds the plaintext of a tree blob (one encoded directory);
// data blobs are at most chunker.MaxSize. Every length read from
// repository data is checked against these bounds (and, where it is
// known, the pack's size) before anything is allocated for it.
const MaxTreeSize = 256 << 20

// checkBlobLengths validates the lengths an index entry or a pack trailer
// gives a blob: the plaintext within the format's maximum for its type, the
// stored length that of a sealed copy of it (the plaintext plus the
// envelope when stored raw, less than that when compressed).
func checkBlobLengths(t BlobType, flags uint8, length, rawLen uint32) error {
	maxRaw := uint32(chunker.MaxSize)
	if t == TreeBlob {
		maxRaw = MaxTreeSize
	}
	switch {
	case rawLen > maxRaw:
		return fmt.Errorf("%s blob of %d bytes exceeds the maximum of %d", t, rawLen, maxRaw)
	case length < crypto.Overhead:
		return fmt.Errorf("stored length %d is shorter than the %d-byte envelope", length, crypto.Overhead)
	case flags&FlagCompressed == 0 && uint64(length) != uint64(rawLen)+crypto.Overhead:
		return fmt.Errorf("stored length %d does not fit an uncompressed blob of %d bytes", length, rawLen)
	case flags&FlagCompressed != 0 && length-crypto.Overhead > rawLen:
		return fmt.Errorf("stored length %d exceeds the %d bytes of the compressed blob it holds", length, rawLen)
	}
	return nil
}

// EncodeTrailer returns the plaintext trailer of blobs (offsets are implied).
func EncodeTrailer(blobs []PackBlob) []byte {
	b := make([]byte, 0, 5+len(blobs)*trailerEntrySize)
	b = append(b, trailerVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(blobs)))
	for _, pb := range blobs {
		b = append(b, byte(pb.Type), pb.Flags)
		b = binary.LittleEndian.AppendUint32(b, pb.Length)
		b = binary.LittleEndian.AppendUint32(b, pb.RawLen)
		b = append(b, pb.ID[:]...)
	}
	return b
}

// DecodeTrailer parses a plaintext trailer; dataLen is the number of bytes
// before the sealed trailer, which the blobs must exactly fill.
func DecodeTrailer(b []byte, dataLen int64) ([]PackBlob, error) {
	if len(b) < 5 {
		return nil, fmt.Errorf("pack trailer: %w: %w", ErrFormat, io.ErrUnexpectedEOF)
	}
	if b[0] != trailerVersion {
		return nil, fmt.Errorf("pack trailer: %w: version %d, want %d", ErrFormat, b[0], trailerVersion)
	}
	n := binary.LittleEndian.Uint32(b[1:5])
	b = b[5:]
	if uint64(len(b)) != uint64(n)*trailerEntrySize {
		return nil, fmt.Errorf("pack trailer: %w: %d entries need %d bytes, have %d", ErrFormat, n, uint64(n)*trailerEntrySize, len(b))
	}
	blobs := make([]PackBlob, n)
	var off uint64
	for i := range blobs {
		e := b[i*trailerEntrySize:]
		pb := PackBlob{Type: BlobType(e[0]), Flags: e[1],
			Length: binary.LittleEndian.Uint32(e[2:6]), RawLen: binary.LittleEndian.Uint32(e[6:10]), Offset: uint32(off)}
		copy(pb.ID[:], e[10:42])
		if pb.Type != DataBlob && pb.Type != TreeBlob {
			return nil, fmt.Errorf("pack trailer: %w: entry %d has unknown type %d", ErrFormat, i, e[0])
		}
		if pb.Flags&^FlagCompressed != 0 {
			return nil, fmt.Errorf("pack trailer: %w: entry %d has unknown flags %#x", ErrFormat, i, pb.Flags)
		}
		if err := checkBlobLengths(pb.Type, pb.Flags, pb.Length, pb.RawLen); err != nil {
			return nil, fmt.Errorf("pack trailer: %w: entry %d: %w", ErrFormat, i, err)
		}
		off += uint64(pb.Length)
		if off > uint64(dataLen) {
			return nil, fmt.Errorf("pack trailer: %w: entry %d ends at %d, past the blob area of %d bytes", ErrFormat, i, off, dataLen)
		}
		blobs[i] = pb
	}
	if off != uint64(dataLen) {
		return nil, fmt.Errorf("pack trailer: %w: blobs fill %d of %d bytes", ErrFormat, off, dataLen)
	}
	return blobs, nil
}

// ParsePackTail parses the last packTailSize bytes of a pack of size
// packSize and returns the sealed trailer's offset and length.
func ParsePackTail(tail []byte, packSize int64) (off int64, length int, err error) {
	if len(tail) != packTailSize || packSize < int64(packTailSize) {
		return 0, 0, fmt.Errorf("pack tail: %w: pack of %d bytes is too short", ErrFormat, packSize)
	}
	if string(tail[4:]) != packMagic {
		return 0, 0, fmt.Errorf("pack tail: %w: bad magic %q", ErrFormat, tail[4:])
	}
	l := binary.LittleEndian.Uint32(tail[:4])
	off = packSize - int64(packTailSize) - int64(l)
	if off < 0 {
		return 0, 0, fmt.Errorf("pack tail: %w: trailer length %d exceeds pack size %d", ErrFormat, l, packSize)
	}
	return off, int(l), nil
}

// ReadPackTrailer reads and decodes the trailer of a stored pack of the given
// size. Each part is verified inside its Load's fn, so that a retrying
// backend fetches it again when the bytes that arrived are bad (a
// *CorruptError matches backend.ErrIntegrity).
func (r *Repo) ReadPackTrailer(ctx context.Context, id ID, size int64) ([]PackBlob, error) {
	if size < int64(packTailSize) {
		return nil, &CorruptError{What: "pack", ID: id, Err: fmt.Errorf("%w: %d bytes is too short for a pack", ErrFormat, size)}
	}
	h := backend.Handle{Type: backend.PackFile, Name: id.String()}
	return r.readTrailer(id, size, func(part string, off int64, n int, use func([]byte) error) error {
		b := make([]byte, n)
		err := r.be.Load(ctx, h, n, off, func(rd io.Reader) error {
			if _, err := io.ReadFull(rd, b); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
			return use(b)
		})
		var ce *CorruptError
		if err != nil && !errors.As(err, &ce) {
			return fmt.Errorf("read pack %s %s: %w", id.Str(), part, err)
		}
		return err
	})
}

// LoadPack reads pack id whole. Its content is checked against its name
// inside the Load's fn, so that a retrying backend fetches it again when the
// bytes that arrived are bad. When every fetch disagrees with the name,
// LoadPack returns the last bytes fetched with hashOK false and no error:
// the pack is damaged at rest, and the caller (check, repair) tells which
// of its blobs are intact by opening each one (OpenBlob) before it uses
// any. Errors are the backend's, with context.
func (r *Repo) LoadPack(ctx context.Context, id ID) (data []byte, hashOK bool, err error) {
	h := backend.Handle{Type: backend.PackFile, Name: id.String()}
	err = r.be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		data = b
		if Hash(b) != id {
			return &CorruptError{What: "pack", ID: id, Err: errors.New("content does not match its name")}
		}
		return nil
	})
	var ce *CorruptError
	switch {
	case err == nil:
		return data, true, nil
	case errors.As(err, &ce) && data != nil:
		return data, false, nil
	}
	return nil, false, fmt.Errorf("read pack %s: %w", id.Str(), err)
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
	return r.readTrailer(id, int64(len(data)), func(_ string, off int64, n int, use func([]byte) error) error {
		return use(data[off : off+int64(n)])
	})
}

// readTrailer reads, opens and decodes the trailer of pack id, size bytes
// long (at least packTailSize). read calls use with n bytes of the pack at
// off and returns use's error; part ("tail", "trailer") says which part it
// reads, for its errors. Errors of read are returned as they are; what
// fails to parse, authenticate or decode is a *CorruptError, returned by
// use.
func (r *Repo) readTrailer(id ID, size int64, read func(part string, off int64, n int, use func([]byte) error) error) ([]PackBlob, error) {
	var off int64
	var n int
	if err := read("tail", size-int64(packTailSize), packTailSize, func(tail []byte) error {
		var err error
		off, n, err = ParsePackTail(tail, size)
		if err != nil {
			return &CorruptError{What: "pack", ID: id, Err: err}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var blobs []PackBlob
	if err := read("trailer", off, n, func(sealed []byte) error {
		plain, err := r.key.Open(nil, sealed, trailerAD)
		if err != nil {
			return &CorruptError{What: "pack", ID: id, Err: fmt.Errorf("trailer: %w", err)}
		}
		blobs, err = DecodeTrailer(plain, off)
		if err != nil {
			return &CorruptError{What: "pack", ID: id, Err: err}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return blobs, nil
}
