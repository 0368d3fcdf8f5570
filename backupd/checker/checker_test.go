package checker_test

import (
	"encoding/json"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/checker"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

// A check reading packs in parallel reports exactly what a sequential one
// does, on a repository with packs damaged in several ways, and its
// progress still counts up one by one.
func TestParallelCheckMatchesSequential(t *testing.T) {
	ctx := t.Context()
	r, m := repotest.NewMem(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 60 {
		b := make([]byte, 40<<10)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		if _, _, err := r.SaveBlob(ctx, repository.DataBlob, r.BlobID(b), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	packs := repository.SortedIDs(r.Index().Packs())
	if len(packs) < 6 {
		t.Fatalf("only %d packs", len(packs))
	}
	h := func(id repository.ID) backend.Handle {
		return backend.Handle{Type: backend.PackFile, Name: id.String()}
	}
	blobs := r.Index().Packs()
	m.Mutate(h(packs[0]), func(b []byte) []byte { b[blobs[packs[0]][1].Offset+7] ^= 1; return b }) // a blob
	m.Mutate(h(packs[2]), func(b []byte) []byte { return b[:len(b)/2] })                           // truncated
	m.Mutate(h(packs[3]), func(b []byte) []byte { b[len(b)-20] ^= 1; return b })                   // trailer
	if err := m.Remove(ctx, h(packs[4])); err != nil {                                             // missing
		t.Fatal(err)
	}

	report := func(reads int) []byte {
		var mu sync.Mutex
		last := 0
		rep, err := checker.Check(ctx, repotest.Reopen(t, m, repository.Options{}), checker.Options{
			ReadData: true, NoRecord: true, Reads: reads,
			Progress: func(done, total int) {
				mu.Lock()
				defer mu.Unlock()
				if done != last+1 || total != len(packs)-1 {
					t.Errorf("reads %d: progress %d/%d after %d", reads, done, total, last)
				}
				last = done
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() || rep.CorruptBlobs == 0 {
			t.Fatalf("reads %d: damage not found: %+v", reads, rep)
		}
		b, err := json.MarshalIndent(rep, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	seq := report(1)
	for _, reads := range []int{2, 8, 64} {
		if par := report(reads); string(par) != string(seq) {
			t.Errorf("reads %d: report differs from the sequential one:\n%s\nwant:\n%s", reads, par, seq)
		}
	}
}
