package repository_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/meshbackup/backupd/backupd/crypto"
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
	crafted := seedBlobs()[:1]
	crafted[0].Length = 0xFFFFFFF0 // a crafted length once made restore allocate 4 GB
	f.Add((&repository.IndexFile{Packs: []repository.IndexPack{{ID: repository.Hash([]byte("p")), Blobs: crafted}}}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := repository.DecodeIndexFile(b)
		if err != nil {
			return
		}
		if !bytes.Equal(idx.Encode(), b) {
			t.Fatal("index does not round-trip")
		}
		// Whatever decodes is within the format's bounds: no entry can
		// make a reader allocate more than a blob may hold.
		for _, p := range idx.Packs {
			for _, pb := range p.Blobs {
				if pb.RawLen > repository.MaxTreeSize || uint64(pb.Length) > uint64(pb.RawLen)+64 || uint64(pb.Offset)+uint64(pb.Length) >= 1<<32 {
					t.Fatalf("out-of-bound entry accepted: %+v", pb)
				}
			}
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

func FuzzDecodeDamageRecord(f *testing.F) {
	f.Add([]byte(`{"version":1,"time":"2026-12-01T00:00:00Z","found_by":"check","packs":["` + repository.Hash(nil).String() + `"],"blobs":[{"id":"` + repository.Hash([]byte("b")).String() + `","pack":"` + repository.Hash(nil).String() + `"}]}`))
	f.Add([]byte(`{"version":1,"blobs":[{"id":"00","pack":""}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := repository.DecodeDamageRecord(b)
		if err != nil {
			return
		}
		if d.Version != repository.DamageRecordVersion {
			t.Fatalf("accepted version %d", d.Version)
		}
		for _, e := range append(d.Blobs, d.Resolved...) {
			if e.ID.IsNull() || e.Pack.IsNull() {
				t.Fatal("accepted a null id")
			}
		}
		dm := repository.NewDamage()
		dm.Add(d)
	})
}

func FuzzDecodeKeyFile(f *testing.F) {
	k, _ := crypto.NewRandomKey()
	kf, _ := crypto.Wrap(k, []byte("pw"), crypto.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1})
	b, _ := json.Marshal(kf)
	f.Add(b)
	f.Add([]byte(`{"kdf":"argon2id","params":{"t":1,"m":4294967295,"p":1}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kf, err := crypto.DecodeKeyFile(b)
		if err != nil {
			if !errors.Is(err, crypto.ErrBadKeyFile) {
				t.Fatalf("error does not match ErrBadKeyFile: %v", err)
			}
			return
		}
		// Whatever decodes asks for bounded work.
		if p := kf.Params; p.MemoryKiB > 256<<10 || p.Time > 16 || p.Threads > 16 {
			t.Fatalf("accepted params %+v", p)
		}
	})
}
