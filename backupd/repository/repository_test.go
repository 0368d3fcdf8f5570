package repository_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/mem"
	"github.com/meshbackup/backupd/backupd/crypto"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

func TestBlobRoundTripAcrossReopen(t *testing.T) {
	r, be := repotest.NewMem(t)
	ctx := t.Context()
	blobs := map[repository.ID][]byte{}
	for i := range 40 {
		data := bytes.Repeat([]byte{byte(i)}, 10_000+i*1000) // compressible
		if i%3 == 0 {
			data = []byte(strings.Repeat("x", i)) // tiny
		}
		id := r.BlobID(data)
		if _, _, err := r.SaveBlob(ctx, repository.DataBlob, id, data); err != nil {
			t.Fatal(err)
		}
		blobs[id] = data
	}
	// Saving again is a no-op.
	for id, data := range blobs {
		stored, _, err := r.SaveBlob(ctx, repository.DataBlob, id, data)
		if err != nil || stored {
			t.Fatalf("second save of %s: stored=%v err=%v", id.Str(), stored, err)
		}
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := repotest.Reopen(t, be, repository.Options{})
	if err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range blobs {
		got, err := r2.LoadBlob(ctx, repository.DataBlob, id, nil)
		if err != nil {
			t.Fatalf("load %s: %v", id.Str(), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("blob %s differs after reopen", id.Str())
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
	_, be := repotest.NewMem(t)
	if _, err := repository.Open(ctx, be, []byte("wrong"), repotest.Options()); !errors.Is(err, crypto.ErrWrongPassword) {
		t.Fatalf("wrong password: got %v", err)
	}
	if _, err := repository.Open(ctx, mem.New(), repotest.Password, repotest.Options()); err == nil || !strings.Contains(err.Error(), "no repository") {
		t.Fatalf("empty backend: got %v", err)
	}
	// A config of another version, from the future or version 1 (JSON
	// trees, scrypt keys), is refused before any key is tried.
	for _, v := range []int{repository.FormatVersion + 1, 1} {
		other := mem.New()
		_ = other.Save(ctx, backend.Handle{Type: backend.ConfigFile}, bytes.NewReader([]byte(fmt.Sprintf(`{"version":%d,"id":"%s"}`, v, strings.Repeat("a", 64)))))
		_, err := repository.Open(ctx, other, repotest.Password, repotest.Options())
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("format version %d is not supported", v)) {
			t.Fatalf("version %d: got %v", v, err)
		}
	}
}

func TestCorruptBlobIsReportedNotReturned(t *testing.T) {
	r, be := repotest.NewMem(t)
	ctx := t.Context()
	data := []byte(strings.Repeat("mesh access log line\n", 5000))
	id := r.BlobID(data)
	if _, _, err := r.SaveBlob(ctx, repository.DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	loc, _ := r.Index().Lookup(id)
	be.Mutate(backend.Handle{Type: backend.PackFile, Name: loc.Pack.String()}, func(b []byte) []byte {
		b[loc.Offset+20] ^= 0x04
		return b
	})
	_, err := r.LoadBlob(ctx, repository.DataBlob, id, nil)
	var ce *repository.CorruptError
	if !errors.As(err, &ce) || ce.ID != id || ce.Pack != loc.Pack || !errors.Is(err, repository.ErrCorrupt) {
		t.Fatalf("want CorruptError naming blob and pack, got %v", err)
	}
}

func TestTrailerAndIndexDecoding(t *testing.T) {
	blobs := []repository.PackBlob{
		{Type: repository.DataBlob, Flags: repository.FlagCompressed, ID: repository.Hash([]byte("a")), Length: 100, RawLen: 300},
		{Type: repository.TreeBlob, ID: repository.Hash([]byte("b")), Offset: 100, Length: 50, RawLen: 22},
	}
	enc := repository.EncodeTrailer(blobs)
	got, err := repository.DecodeTrailer(enc, 150)
	if err != nil || len(got) != 2 || got[1] != blobs[1] || got[0] != blobs[0] {
		t.Fatalf("trailer round trip: %v %+v", err, got)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		dataLen int64
	}{
		{"truncated", enc[:len(enc)-3], 150},
		{"wrong area", enc, 151},
		{"bad version", append([]byte{9}, enc[1:]...), 150},
		{"empty", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := repository.DecodeTrailer(tc.data, tc.dataLen); !errors.Is(err, repository.ErrFormat) {
				t.Fatalf("want ErrFormat, got %v", err)
			}
		})
	}
	idx := &repository.IndexFile{Supersedes: []repository.ID{repository.Hash([]byte("old"))},
		Packs: []repository.IndexPack{{ID: repository.Hash([]byte("p")), Blobs: blobs}}}
	b := idx.Encode()
	f, err := repository.DecodeIndexFile(b)
	if err != nil || len(f.Packs) != 1 || len(f.Packs[0].Blobs) != 2 || f.Supersedes[0] != idx.Supersedes[0] {
		t.Fatalf("index round trip: %v", err)
	}
	for i := 0; i < len(b); i++ {
		if _, err := repository.DecodeIndexFile(b[:i]); !errors.Is(err, repository.ErrFormat) {
			t.Fatalf("prefix of %d bytes: want ErrFormat, got %v", i, err)
		}
	}
	if _, err := repository.DecodeIndexFile(b[:len(b)-1]); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated index: want io.ErrUnexpectedEOF in chain, got %v", err)
	}
}

// An index file that cannot be read or decoded is reported by LoadIndex,
// named, whatever comes before or after it in the listing.
func TestLoadIndexReportsDamagedIndexFile(t *testing.T) {
	r, be := repotest.NewMem(t)
	ctx := t.Context()
	data := []byte(strings.Repeat("x", 1000))
	if _, _, err := r.SaveBlob(ctx, repository.DataBlob, r.BlobID(data), data); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	junk := []byte("not a sealed index file")
	name := repository.Hash(junk).String()
	if err := be.Save(ctx, backend.Handle{Type: backend.IndexFile, Name: name}, bytes.NewReader(junk)); err != nil {
		t.Fatal(err)
	}
	err := repotest.Reopen(t, be, repository.Options{}).LoadIndex(ctx)
	if err == nil || !strings.Contains(err.Error(), name[:8]) {
		t.Fatalf("want an error naming index file %s, got %v", name[:8], err)
	}
}
