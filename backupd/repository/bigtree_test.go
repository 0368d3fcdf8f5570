package repository_test

import (
	"bytes"
	"testing"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

// A tree blob over 64 MiB (a directory of some 600,000 entries) is
// stored compressed and must read back: the decoder allows what a writer
// may store (MaxTreeSize), not less.
func TestLargeTreeBlobReadsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 140 MiB")
	}
	r, be := repotest.NewMem(t)
	plain := bytes.Repeat([]byte("entry name, mode, owner, times, chunk ids; "), (70<<20)/44)
	id := r.TreeID(plain)
	if _, _, err := r.SaveBlob(t.Context(), repository.TreeBlob, id, plain); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	fresh := repotest.Reopen(t, be, repository.Options{})
	if err := fresh.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := fresh.LoadBlob(t.Context(), repository.TreeBlob, id, nil)
	if err != nil {
		t.Fatalf("a %d MiB tree blob does not read back: %v", len(plain)>>20, err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatal("the tree blob read back differs")
	}
}
