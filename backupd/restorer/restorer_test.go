package restorer_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/restorer"
)

// slowLoads makes every pack read take a while, as on object storage, and
// records how many were in flight at most.
type slowLoads struct {
	backend.Backend
	on             atomic.Bool
	inFlight, most atomic.Int32
}

func (s *slowLoads) Unwrap() backend.Backend { return s.Backend }

func (s *slowLoads) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if s.on.Load() && h.Type == backend.PackFile {
		n := s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		for {
			m := s.most.Load()
			if n <= m || s.most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s.Backend.Load(ctx, h, length, offset, fn)
}

// Reads, not the CPU count, sets how many blob reads a restore keeps in
// flight; an explicit Workers alone still bounds them. Every case restores
// the same bytes.
func TestRestoreReadConcurrency(t *testing.T) {
	src := t.TempDir()
	rnd := rand.New(rand.NewPCG(1, 1))
	want := map[string][]byte{}
	for i := range 24 {
		b := make([]byte, 20<<10)
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		name := fmt.Sprintf("f%02d", i)
		want[name] = b
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, m := repotest.NewMem(t)
	slow := &slowLoads{Backend: m}
	r := repotest.Reopen(t, slow, repository.Options{})
	a, err := archiver.New(r, archiver.Options{Policy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := a.Backup(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		opt   restorer.Options
		least int32
		most  int32
	}{
		{"defaults", restorer.Options{}, 2, int32(max(8, runtime.GOMAXPROCS(0)))},
		{"reads 8, one CPU worker", restorer.Options{Workers: 1, Reads: 8}, 2, 8},
		{"workers alone bound reads", restorer.Options{Workers: 1}, 1, 1},
		{"reads below workers", restorer.Options{Workers: 4, Reads: 2}, 2, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rr := repotest.Reopen(t, slow, repository.Options{})
			if err := rr.LoadIndex(t.Context()); err != nil {
				t.Fatal(err)
			}
			slow.most.Store(0)
			slow.on.Store(true)
			defer slow.on.Store(false)
			owner := false
			tc.opt.Owner = &owner
			target := filepath.Join(t.TempDir(), "restore")
			res, err := restorer.New(rr, tc.opt).Restore(t.Context(), sn, target)
			if err != nil || res.Err() != nil {
				t.Fatalf("restore: %v, %v", err, res.Err())
			}
			if got := slow.most.Load(); got < tc.least || got > tc.most {
				t.Errorf("%d pack reads in flight at most, want %d..%d", got, tc.least, tc.most)
			}
			for name, b := range want {
				got, err := os.ReadFile(filepath.Join(target, name))
				if err != nil || !bytes.Equal(got, b) {
					t.Errorf("%s: restored %d bytes (%v), want the %d backed up", name, len(got), err, len(b))
				}
			}
		})
	}
}

// What a restore adds to the soft memory limit follows its read-ahead and
// its number of file workers.
func TestOptionsMemory(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  restorer.Options
		want int64
	}{
		{"defaults: 16 MiB read-ahead, 8 workers", restorer.Options{}, 16<<20 + 8<<20},
		{"no read-ahead", restorer.Options{ReadAhead: -1}, 8 << 20},
		{"one worker", restorer.Options{Workers: 1, ReadAhead: 4 << 20}, 4<<20 + 1<<20},
		{"more readers than workers", restorer.Options{Workers: 2, Reads: 16, ReadAhead: 32 << 20}, 32<<20 + 16<<20},
	} {
		if got := tc.opt.Memory(); got != tc.want {
			t.Errorf("%s: Memory() = %d, want %d", tc.name, got, tc.want)
		}
	}
}
