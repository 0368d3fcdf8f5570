package restorer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/restorer"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// packLoads counts pack reads, can flip one byte of a pack on every read
// covering it (damage at rest), and can hang reads until their context
// ends.
type packLoads struct {
	backend.Backend
	mu       sync.Mutex
	reads    int
	flipPack string
	flipAt   int64
	hang     atomic.Bool
	hanging  atomic.Int32
}

func (p *packLoads) Unwrap() backend.Backend { return p.Backend }

func (p *packLoads) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if h.Type != backend.PackFile {
		return p.Backend.Load(ctx, h, length, offset, fn)
	}
	p.mu.Lock()
	p.reads++
	flip := h.Name == p.flipPack && p.flipAt >= offset && (length == 0 || p.flipAt < offset+int64(length))
	p.mu.Unlock()
	if p.hang.Load() {
		p.hanging.Add(1)
		defer p.hanging.Add(-1)
		<-ctx.Done()
		return ctx.Err()
	}
	return p.Backend.Load(ctx, h, length, offset, func(rd io.Reader) error {
		if !flip {
			return fn(rd)
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		b[p.flipAt-offset] ^= 0x10
		return fn(bytes.NewReader(b))
	})
}

func (p *packLoads) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

// spanSource writes n random files of 64 KiB (one chunk each) in two
// directories, and a copy of each in a third (identical files: one chunk
// used twice), backs it up and returns the backend, snapshot and files.
func spanSource(t *testing.T, n int) (backend.Backend, *snapshot.Snapshot, map[string][]byte) {
	t.Helper()
	src := t.TempDir()
	rnd := rand.New(rand.NewPCG(3, 3))
	want := map[string][]byte{}
	for _, d := range []string{"a", "b", "copy"} {
		if err := os.Mkdir(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		b := make([]byte, 64<<10)
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		name := filepath.Join([]string{"a", "b"}[i%2], fmt.Sprintf("f%03d", i))
		for _, p := range []string{name, filepath.Join("copy", fmt.Sprintf("f%03d", i))} {
			want[p] = b
			if err := os.WriteFile(filepath.Join(src, p), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, m := repotest.NewMem(t)
	r := repotest.Reopen(t, m, repository.Options{})
	a, err := archiver.New(r, archiver.Options{Policy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := a.Backup(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	return m, sn, want
}

func openCounted(t *testing.T, be backend.Backend) (*repository.Repo, *packLoads) {
	t.Helper()
	pl := &packLoads{Backend: be}
	r := repotest.Reopen(t, pl, repository.Options{})
	if err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	return r, pl
}

// A restore reads packs in spans: about one read per pack, not one per
// chunk, and the files, identical ones included, are byte-exact. Without
// read-ahead (ReadAhead < 0) every chunk is one read, as before.
func TestRestoreReadsPacksInSpans(t *testing.T) {
	const n = 60
	m, sn, want := spanSource(t, n)
	owner := false
	packs := 0
	r0, _ := openCounted(t, m)
	for range r0.Index().Packs() {
		packs++
	}
	for _, tc := range []struct {
		name      string
		readAhead int64
		least     int
		most      int
	}{
		{"read-ahead", 0, 1, packs + 2},
		{"every chunk alone", -1, 2 * n, 2*n + packs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, pl := openCounted(t, m)
			target := filepath.Join(t.TempDir(), "restore")
			rs := restorer.New(r, restorer.Options{Owner: &owner, ReadAhead: tc.readAhead})
			res, err := rs.Restore(t.Context(), sn, target)
			if err != nil || res.Err() != nil {
				t.Fatalf("restore: %v, %v", err, res.Err())
			}
			for name, b := range want {
				got, err := os.ReadFile(filepath.Join(target, name))
				if err != nil || !bytes.Equal(got, b) {
					t.Errorf("%s: restored %d bytes (%v), want the %d backed up", name, len(got), err, len(b))
				}
			}
			t.Logf("%d pack reads for %d chunks in %d packs", pl.count(), 2*n, packs)
			if got := pl.count(); got < tc.least || got > tc.most {
				t.Errorf("%d pack reads for %d chunks in %d packs, want %d..%d", got, 2*n, packs, tc.least, tc.most)
			}
		})
	}
}

// A byte damaged at rest in a chunk read as part of a span fails that
// file, named and reported as corruption; the file is never written under
// its name and no temp file is left; every other file is byte-exact.
func TestRestoreCorruptChunkInSpan(t *testing.T) {
	m, sn, want := spanSource(t, 30)
	r, pl := openCounted(t, m)
	// The chunk of a/f010 (and so copy/f010), in the middle of its pack.
	id := r.BlobID(want[filepath.Join("a", "f010")])
	loc, ok := r.Index().Lookup(id)
	if !ok {
		t.Fatal("chunk not indexed")
	}
	pl.flipPack, pl.flipAt = loc.Pack.String(), int64(loc.Offset)+int64(loc.Length)/2
	owner := false
	target := filepath.Join(t.TempDir(), "restore")
	res, err := restorer.New(r, restorer.Options{Owner: &owner}).Restore(t.Context(), sn, target)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Corrupt() {
		t.Errorf("restore not reported corrupt: %v", res.Err())
	}
	var failed []string
	for _, f := range res.Failed {
		failed = append(failed, f.Path)
	}
	if got := strings.Join(failed, " "); got != "a/f010 copy/f010" && got != "copy/f010 a/f010" {
		t.Errorf("failed files %q, want a/f010 and copy/f010", got)
	}
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(target, name))
		switch {
		case strings.HasSuffix(name, "f010"):
			if !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: damaged file is there (%d bytes, %v)", name, len(got), err)
			}
		case err != nil || !bytes.Equal(got, b):
			t.Errorf("%s: restored %d bytes (%v), want the %d backed up", name, len(got), err, len(b))
		}
	}
	_ = filepath.Walk(target, func(p string, _ os.FileInfo, _ error) error {
		if strings.HasPrefix(filepath.Base(p), restorer.TempPrefix) {
			t.Errorf("temp file left: %s", p)
		}
		return nil
	})
}

// Cancelling a restore whose reads hang stops it promptly, and no
// goroutine of it is left.
func TestRestoreCancelledWhileReading(t *testing.T) {
	m, sn, _ := spanSource(t, 30)
	r, pl := openCounted(t, m)
	// Trees first (the plan reads them), then hang the data reads.
	if _, err := snapshot.LoadTree(t.Context(), r, sn.Tree); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	owner := false
	target := filepath.Join(t.TempDir(), "restore")
	pl.hang.Store(true)
	go func() {
		_, err := restorer.New(r, restorer.Options{Owner: &owner}).Restore(ctx, sn, target)
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for pl.hanging.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("restore: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("restore still running 5 s after it was cancelled")
	}
	deadline = time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the restore, %d before", n, before)
	}
}
