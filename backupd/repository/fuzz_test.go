package repository_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/meshbackup/backupd/backupd/repository"
)

func seedBlobs() []repository.PackBlob {
	return []repository.PackBlob{
		{Type: repository.DataBlob, Flags: repository.FlagCompressed, ID: repository.Hash([]byte("a")), Length: 100, RawLen: 300},
		{Type: repository.TreeBlob, ID: repository.Hash([]byte("b")), Offset: 100, Length: 50, RawLen: 22},
	}
}

func FuzzDecodeTrailer(f *testing.F) {
	f.Add(repository.EncodeTrailer(seedBlobs()), int64(150))
	f.Add(repository.EncodeTrailer(nil), int64(0))
	f.Add([]byte{1, 255, 255, 255, 255}, int64(1<<40))
	f.Fuzz(func(t *testing.T, b []byte, dataLen int64) {
		blobs, err := repository.DecodeTrailer(b, dataLen)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes and stay
		// inside the blob area.
		if !bytes.Equal(repository.EncodeTrailer(blobs), b) {
			t.Fatal("trailer does not round-trip")
		}
		for _, pb := range blobs {
			if int64(pb.Offset)+int64(pb.Length) > dataLen {
				t.Fatalf("blob %s beyond the area", pb.ID.Str())
			}
		}
	})
}

func FuzzDecodeIndexFile(f *testing.F) {
	f.Add((&repository.IndexFile{Packs: []repository.IndexPack{{ID: repository.Hash([]byte("p")), Blobs: seedBlobs()}}}).Encode())
	f.Add((&repository.IndexFile{Supersedes: []repository.ID{repository.Hash(nil)}}).Encode())
	f.Add([]byte{1, 0, 0, 0, 0, 255, 255, 255, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := repository.DecodeIndexFile(b)
		if err != nil {
			return
		}
		if !bytes.Equal(idx.Encode(), b) {
			t.Fatal("index does not round-trip")
		}
	})
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`{"version":` + fmt.Sprint(repository.FormatVersion) + `,"id":"` + repository.Hash(nil).String() + `","created":"2026-11-22T00:00:00Z"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := repository.DecodeConfig(b)
		if err != nil {
			return
		}
		if c.Version != repository.FormatVersion {
			t.Fatalf("accepted version %d", c.Version)
		}
		if _, err := repository.ParseID(c.ID); err != nil {
			t.Fatalf("accepted id %q", c.ID)
		}
	})
}

func FuzzParsePackTail(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 'B', 'K', 'P', '1'}, int64(100))
	f.Add([]byte{255, 255, 255, 255, 'B', 'K', 'P', '1'}, int64(8))
	f.Fuzz(func(t *testing.T, tail []byte, size int64) {
		off, n, err := repository.ParsePackTail(tail, size)
		if err != nil {
			return
		}
		if off < 0 || off+int64(n)+8 != size {
			t.Fatalf("trailer at %d+%d does not end 8 bytes before %d", off, n, size)
		}
	})
}
