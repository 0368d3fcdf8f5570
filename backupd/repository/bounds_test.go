package repository_test

import (
	"errors"
	"runtime"
	"testing"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

// allocated returns the bytes fn allocated.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Issue 15 finding 13: a crafted index entry (length 0xFFFFFFF0) made a
// restore allocate 4 GB. Every length from repository data is bounded.
func TestCraftedLengthsRefused(t *testing.T) {
	id := repository.Hash([]byte("blob"))
	for _, tc := range []struct {
		name string
		pb   repository.PackBlob
	}{
		{"huge stored length", repository.PackBlob{Type: repository.DataBlob, ID: id, Length: 0xFFFFFFF0, RawLen: 100}},
		{"huge compressed length", repository.PackBlob{Type: repository.DataBlob, Flags: repository.FlagCompressed, ID: id, Length: 0xFFFFFFF0, RawLen: 100}},
		{"huge raw length", repository.PackBlob{Type: repository.DataBlob, Flags: repository.FlagCompressed, ID: id, Length: 100, RawLen: 0xFFFFFFF0}},
		{"huge tree", repository.PackBlob{Type: repository.TreeBlob, Flags: repository.FlagCompressed, ID: id, Length: 100, RawLen: repository.MaxTreeSize + 1}},
		{"shorter than the envelope", repository.PackBlob{Type: repository.DataBlob, ID: id, Length: 4, RawLen: 0}},
		{"offset overflows", repository.PackBlob{Type: repository.DataBlob, ID: id, Offset: 0xFFFFFFF0, Length: 128, RawLen: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &repository.IndexFile{Packs: []repository.IndexPack{{ID: repository.Hash([]byte("p")), Blobs: []repository.PackBlob{tc.pb}}}}
			if _, err := repository.DecodeIndexFile(f.Encode()); !errors.Is(err, repository.ErrFormat) {
				t.Fatalf("index entry accepted: %v", err)
			}
			if tc.pb.Offset != 0 {
				return
			}
			tr := repository.EncodeTrailer([]repository.PackBlob{tc.pb})
			if _, err := repository.DecodeTrailer(tr, int64(tc.pb.Length)); !errors.Is(err, repository.ErrFormat) {
				t.Fatalf("trailer entry accepted: %v", err)
			}
		})
	}
}

func TestCraftedIndexEntryIsCorruptionNotAllocation(t *testing.T) {
	ctx := t.Context()
	r, be := repotest.NewMem(t)
	data := []byte("some data blob that is long enough to be compressed maybe, or not at all")
	id := r.BlobID(data)
	if _, _, err := r.SaveBlob(ctx, repository.DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := repotest.Reopen(t, be, repository.Options{})
	if err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	loc, _ := r2.Index().Lookup(id)
	// An entry that got into the index without the decoder (AddPack is
	// what the decoders feed): LoadBlob bounds it before allocating.
	rc := repotest.Reopen(t, be, repository.Options{})
	rc.Index().AddPack(loc.Pack, []repository.PackBlob{{Type: repository.DataBlob, ID: id, Length: 0xFFFFFFF0, RawLen: loc.RawLen}})
	var err error
	if n := allocated(func() { _, err = rc.LoadBlob(ctx, repository.DataBlob, id, nil) }); n > 16<<20 {
		t.Fatalf("LoadBlob of a crafted entry allocated %d bytes", n)
	}
	var ce *repository.CorruptError
	if !errors.As(err, &ce) || ce.ID != id || ce.Pack != loc.Pack {
		t.Fatalf("LoadBlob of a crafted entry: %v", err)
	}

	// The same entry in a sealed index file: LoadIndex names the file and
	// calls it corruption.
	bad := &repository.IndexFile{Packs: []repository.IndexPack{{ID: loc.Pack, Blobs: []repository.PackBlob{{Type: repository.DataBlob, ID: id, Length: 0xFFFFFFF0, RawLen: loc.RawLen}}}}}
	badID, err := r2.SaveIndexFile(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	r3 := repotest.Reopen(t, be, repository.Options{})
	if n := allocated(func() { err = r3.LoadIndex(ctx) }); n > 16<<20 {
		t.Fatalf("LoadIndex of a crafted entry allocated %d bytes", n)
	}
	var ie *repository.IndexFileError
	if !errors.Is(err, repository.ErrCorrupt) || !errors.As(err, &ie) || ie.Name != badID.String() {
		t.Fatalf("LoadIndex with a crafted entry: %v", err)
	}
}
