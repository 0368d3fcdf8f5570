package repository_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/fault"
	"github.com/meshbackup/backupd/backupd/backend/mem"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

// testBlobs returns n random blobs of 40 KiB, the same for a seed.
func testBlobs(n int) [][]byte {
	rnd := rand.New(rand.NewPCG(7, 8))
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, 40<<10)
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		out[i] = b
	}
	return out
}

// slowSaves delays every pack save, so that uploads overlap, and records
// how many were in flight at most.
type slowSaves struct {
	backend.Backend
	inFlight, most atomic.Int32
}

func (s *slowSaves) Unwrap() backend.Backend { return s.Backend }

func (s *slowSaves) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	if h.Type == backend.PackFile {
		n := s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		for {
			m := s.most.Load()
			if n <= m || s.most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s.Backend.Save(ctx, h, rd)
}

// packing is the index as a user of the repository sees it: for each pack,
// which of the blobs it holds, at which offsets. Pack and blob ids differ
// between repositories (keyed hashes, randomised encryption), so blobs are
// named by their place in blobs, packs by their first blob, and each blob
// by "ordinal@offset+length".
func packing(t *testing.T, r *repository.Repo, blobs [][]byte) map[int][]string {
	t.Helper()
	ordinal := map[repository.ID]int{}
	for i, b := range blobs {
		ordinal[r.BlobID(b)] = i
	}
	out := map[int][]string{}
	for _, pbs := range r.Index().Packs() {
		slices.SortFunc(pbs, func(a, b repository.PackBlob) int { return int(a.Offset) - int(b.Offset) })
		var names []string
		for _, pb := range pbs {
			i, ok := ordinal[pb.ID]
			if !ok {
				t.Fatalf("unknown blob %s indexed", pb.ID.Str())
			}
			names = append(names, fmt.Sprintf("%d@%d+%d", i, pb.Offset, pb.Length))
		}
		out[ordinal[pbs[0].ID]] = names
	}
	return out
}

func TestParallelUploadsIndexTheSame(t *testing.T) {
	blobs := testBlobs(80)
	var want map[int][]string
	for _, uploads := range []int{1, 8} {
		m := mem.New()
		slow := &slowSaves{Backend: m}
		opt := repotest.Options()
		opt.Uploads = uploads
		opt.IndexEveryPacks = 3 // index files written by the upload goroutines too
		r, err := repository.Init(t.Context(), slow, repotest.Password, opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blobs {
			if _, _, err := r.SaveBlob(t.Context(), repository.DataBlob, r.BlobID(b), b); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := int(slow.most.Load()); got > uploads || uploads > 1 && got < 2 {
			t.Errorf("uploads %d: %d pack saves in flight at most", uploads, got)
		}
		// What a new process reads from the index files.
		rr := repotest.Reopen(t, m, repository.Options{})
		if err := rr.LoadIndex(t.Context()); err != nil {
			t.Fatal(err)
		}
		got := packing(t, rr, blobs)
		if len(got) < 10 {
			t.Fatalf("only %d packs", len(got))
		}
		for _, b := range blobs {
			if _, err := rr.LoadBlob(t.Context(), repository.DataBlob, rr.BlobID(b), nil); err != nil {
				t.Fatalf("uploads %d: %v", uploads, err)
			}
		}
		if want == nil {
			want = got
			continue
		}
		if len(got) != len(want) {
			t.Fatalf("uploads %d: %d packs, want %d", uploads, len(got), len(want))
		}
		for first, w := range want {
			if g := got[first]; !slices.Equal(g, w) {
				t.Errorf("uploads %d: pack of blob %d holds %v, want %v", uploads, first, g, w)
			}
		}
	}
}

var errUpload = errors.New("upload failed: 500 Internal Server Error")

// An upload failure under parallel uploads fails the backup (SaveBlob or
// Flush returns it), and no index file, whether written by Flush, by an
// upload goroutine or by Checkpoint, names a pack that was not stored.
func TestParallelUploadFailure(t *testing.T) {
	blobs := testBlobs(80)
	for _, tc := range []struct {
		name       string
		checkpoint bool
	}{{"flush", false}, {"checkpoint", true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := mem.New()
			var mu sync.Mutex
			saves := 0
			fb := &fault.Backend{Backend: m, Hook: func(op fault.Op, h backend.Handle) error {
				if op != fault.OpSave || h.Type != backend.PackFile {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				saves++
				if saves == 4 {
					return errUpload
				}
				return nil
			}}
			slow := &slowSaves{Backend: fb}
			opt := repotest.Options()
			opt.Uploads = 8
			opt.IndexEveryPacks = 2
			opt.TempDir = t.TempDir()
			r, err := repository.Init(t.Context(), slow, repotest.Password, opt)
			if err != nil {
				t.Fatal(err)
			}
			var saveErr error
			for _, b := range blobs {
				if _, _, saveErr = r.SaveBlob(t.Context(), repository.DataBlob, r.BlobID(b), b); saveErr != nil {
					break
				}
			}
			if tc.checkpoint {
				if err := r.Checkpoint(t.Context()); err != nil {
					t.Fatal(err)
				}
			} else if err := r.Flush(t.Context()); !errors.Is(err, errUpload) && !errors.Is(saveErr, errUpload) {
				t.Fatalf("save: %v, flush: %v; want the upload failure", saveErr, err)
			}
			// Whichever way the backup stopped, no pack is left half-written
			// in the temp directory (a daemon lives on after a failed backup).
			if left, _ := filepath.Glob(filepath.Join(opt.TempDir, "pack-*")); len(left) != 0 {
				t.Errorf("after the failure the temp directory holds %v", left)
			}
			rr := repotest.Reopen(t, m, repository.Options{})
			if err := rr.LoadIndex(t.Context()); err != nil {
				t.Fatal(err)
			}
			indexed := rr.Index().Packs()
			if len(indexed) == 0 {
				t.Fatal("nothing indexed: the packs stored before the failure should be")
			}
			for pid := range indexed {
				if _, err := m.Stat(t.Context(), backend.Handle{Type: backend.PackFile, Name: pid.String()}); err != nil {
					t.Errorf("indexed pack %s is not stored: %v", pid.Str(), err)
				}
			}
		})
	}
}

// Checkpoint and Flush give up waiting for uploads when their context
// ends, cancelling them.
func TestWaitForUploadsHonoursContext(t *testing.T) {
	m := mem.New()
	hang := &hangingSaves{Backend: m}
	opt := repotest.Options()
	r, err := repository.Init(t.Context(), hang, repotest.Password, opt)
	if err != nil {
		t.Fatal(err)
	}
	hang.on.Store(true)
	for _, b := range testBlobs(10) { // fills at least one pack
		if _, _, err := r.SaveBlob(t.Context(), repository.DataBlob, r.BlobID(b), b); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := r.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("flush: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("flush took %v", d)
	}
}

// hangingSaves blocks pack saves until their context ends, once on.
type hangingSaves struct {
	backend.Backend
	on atomic.Bool
}

func (h *hangingSaves) Save(ctx context.Context, hd backend.Handle, rd io.ReadSeeker) error {
	if h.on.Load() && hd.Type == backend.PackFile {
		<-ctx.Done()
		return ctx.Err()
	}
	return h.Backend.Save(ctx, hd, rd)
}
