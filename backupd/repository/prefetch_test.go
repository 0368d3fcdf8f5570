package repository_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/retry"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

// packReads counts the reads of packs and the bytes asked for by the
// reads in flight, and can slow them, fail one, flip bytes at rest, or
// hang until the context ends.
type packReads struct {
	backend.Backend
	delay time.Duration
	hang  atomic.Bool
	// failFirst makes the first read of each pack fail with a transient
	// error, once.
	failFirst bool
	// flip, if set, is a byte of a pack flipped on every read covering it.
	flipPack string
	flipAt   int64

	mu               sync.Mutex
	reads            int
	inFlight, most   int64
	failed           map[string]bool
	hanging, started atomic.Int32
}

func (p *packReads) Unwrap() backend.Backend { return p.Backend }

func (p *packReads) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if h.Type != backend.PackFile {
		return p.Backend.Load(ctx, h, length, offset, fn)
	}
	p.mu.Lock()
	p.reads++
	p.inFlight += int64(length)
	p.most = max(p.most, p.inFlight)
	fail := p.failFirst && !p.failed[h.Name]
	if fail {
		if p.failed == nil {
			p.failed = map[string]bool{}
		}
		p.failed[h.Name] = true
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inFlight -= int64(length)
		p.mu.Unlock()
	}()
	p.started.Add(1)
	if p.hang.Load() {
		p.hanging.Add(1)
		defer p.hanging.Add(-1)
		<-ctx.Done()
		return ctx.Err()
	}
	if p.delay > 0 {
		time.Sleep(p.delay)
	}
	if fail {
		return backend.Transient(errors.New("connection reset by peer"))
	}
	return p.Backend.Load(ctx, h, length, offset, func(rd io.Reader) error {
		if h.Name != p.flipPack || p.flipAt < offset || length > 0 && p.flipAt >= offset+int64(length) {
			return fn(rd)
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if i := p.flipAt - offset; i < int64(len(b)) {
			b[i] ^= 0x10
		}
		return fn(bytes.NewReader(b))
	})
}

func (p *packReads) counts() (reads int, most int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads, p.most
}

// prefetchRepo stores n random 16 KiB data blobs (incompressible) in
// 256 KiB packs and returns the backend, the blobs and their ids.
func prefetchRepo(t *testing.T, n int) (backend.Backend, [][]byte, []repository.ID) {
	t.Helper()
	r, m := repotest.NewMem(t)
	rnd := rand.New(rand.NewPCG(7, 7))
	var blobs [][]byte
	var ids []repository.ID
	for range n {
		b := make([]byte, 16<<10)
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		id := r.BlobID(b)
		if _, _, err := r.SaveBlob(t.Context(), repository.DataBlob, id, b); err != nil {
			t.Fatal(err)
		}
		blobs, ids = append(blobs, b), append(ids, id)
	}
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	return m, blobs, ids
}

// files groups chunks into files of k chunks each; each file appears
// twice, the second copy after all the first ones (identical files far
// apart: deduplicated content read again).
func dupFiles(ids []repository.ID, k int) [][]int {
	var files [][]int
	for i := 0; i < len(ids); i += k {
		var f []int
		for j := i; j < min(i+k, len(ids)); j++ {
			f = append(f, j)
		}
		files = append(files, f)
	}
	return append(files, files...)
}

// consume takes every chunk of every file from pf with the given number
// of workers, each taking whole files in order, and checks the bytes.
func consume(ctx context.Context, t *testing.T, pf *repository.Prefetcher, files [][]int, ids []repository.ID, blobs [][]byte, workers int, slow time.Duration) []error {
	t.Helper()
	next := make(chan int)
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var buf []byte
			for f := range next {
				for i, c := range files[f] {
					var err error
					buf, err = pf.Blob(ctx, f, i, ids[c], buf)
					if err != nil {
						errs[f] = fmt.Errorf("file %d chunk %d: %w", f, i, err)
						break
					}
					if !bytes.Equal(buf, blobs[c]) {
						t.Errorf("file %d chunk %d: wrong bytes", f, i)
					}
					time.Sleep(slow)
				}
				pf.Done(f)
			}
		})
	}
	for f := range files {
		next <- f
	}
	close(next)
	wg.Wait()
	return errs
}

func plan(pf *repository.Prefetcher, files [][]int, ids []repository.ID) {
	for _, f := range files {
		content := make([]repository.ID, len(f))
		for i, c := range f {
			content[i] = ids[c]
		}
		pf.AddFile(content)
	}
}

// Chunks are read in spans: a restore of N chunks in P packs makes about
// P reads (one per span), not N, and returns the exact bytes, identical
// files included, whatever the number of consumers and the budget; the
// bytes of span buffers held, and of the reads in flight, never exceed
// the budget.
func TestPrefetcherReadsSpansWithinBudget(t *testing.T) {
	m, blobs, ids := prefetchRepo(t, 120)
	for _, tc := range []struct {
		name    string
		opt     repository.PrefetchOptions
		workers int
		slow    time.Duration
		// reads bounds the pack reads of the whole plan.
		reads int
	}{
		// 120 × 16 KiB in 256 KiB packs: 8 packs; each file is planned
		// twice: the second copies are taken from the spans of the first
		// when within the window (defaults), read again when beyond it
		// (the small budgets below).
		{"defaults", repository.PrefetchOptions{}, 8, 0, 2 * 8},
		{"one consumer", repository.PrefetchOptions{}, 1, 0, 2 * 8},
		{"spans of 64 KiB", repository.PrefetchOptions{MaxSpan: 64 << 10}, 4, 0, 2 * 2 * 120 * 16 / 64},
		// Tight budgets: 8 consumers need more spans than fit, and some
		// chunks are read alone; never more than one read per chunk.
		{"budget of 4 spans, slow consumers", repository.PrefetchOptions{Budget: 256 << 10, MaxSpan: 64 << 10}, 8, time.Millisecond, 2 * 120 * 2 / 3},
		{"budget of one span", repository.PrefetchOptions{Budget: 64 << 10, MaxSpan: 64 << 10, Reads: 2}, 3, 0, 2 * 120},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := &packReads{Backend: m, delay: 2 * time.Millisecond}
			r := repotest.Reopen(t, pr, repository.Options{})
			if err := r.LoadIndex(t.Context()); err != nil {
				t.Fatal(err)
			}
			pf := r.NewPrefetcher(tc.opt)
			files := dupFiles(ids, 5)
			plan(pf, files, ids)
			pf.Start(t.Context())
			errs := consume(t.Context(), t, pf, files, ids, blobs, tc.workers, tc.slow)
			pf.Close()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			st := pf.Stats()
			reads, most := pr.counts()
			budget := tc.opt.Budget
			if budget == 0 {
				budget = 16 << 20
			}
			t.Logf("%d reads for %d chunks: %d spans, %d alone; peak %d bytes", reads, 2*len(ids), st.Spans, st.Alone, st.PeakBytes)
			if reads > tc.reads {
				t.Errorf("%d pack reads for %d chunks, want at most %d", reads, 2*len(ids), tc.reads)
			}
			if st.PeakBytes > budget || most > budget+int64(st.Alone)*(16<<10+64) {
				t.Errorf("%d bytes of spans held, %d in flight, budget %d", st.PeakBytes, most, budget)
			}
		})
	}
}

// A byte damaged at rest in one blob of a span fails that blob only, as
// the CorruptError LoadBlob reports (after re-reading it alone); the
// other blobs of the span are returned. A span whose read fails once
// (a reset connection) is read again by the retry layer.
func TestPrefetcherCorruptAndTransient(t *testing.T) {
	m, blobs, ids := prefetchRepo(t, 40)
	r0 := repotest.Reopen(t, m, repository.Options{})
	if err := r0.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	bad := 13
	loc, _ := r0.Index().Lookup(ids[bad])
	for _, tc := range []struct {
		name    string
		pr      *packReads
		corrupt bool
	}{
		{"damaged at rest", &packReads{Backend: m, flipPack: loc.Pack.String(), flipAt: int64(loc.Offset) + int64(loc.Length)/2}, true},
		{"first read of each pack fails", &packReads{Backend: m, failFirst: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			retries := atomic.Int32{}
			be := retry.New(tc.pr, retry.Options{RetryFor: -1, Base: time.Millisecond, Max: time.Millisecond,
				OnRetry: func(string, int, error) { retries.Add(1) }})
			r := repotest.Reopen(t, be, repository.Options{})
			if err := r.LoadIndex(t.Context()); err != nil {
				t.Fatal(err)
			}
			pf := r.NewPrefetcher(repository.PrefetchOptions{})
			files := dupFiles(ids, 1)[:len(ids)]
			plan(pf, files, ids)
			pf.Start(t.Context())
			errs := consume(t.Context(), t, pf, files, ids, blobs, 4, 0)
			pf.Close()
			for f, err := range errs {
				switch {
				case tc.corrupt && f == bad:
					var ce *repository.CorruptError
					if !errors.As(err, &ce) || ce.ID != ids[bad] {
						t.Errorf("damaged blob: %v, want a CorruptError naming it", err)
					}
				case err != nil:
					t.Errorf("file %d: %v", f, err)
				}
			}
			if !tc.corrupt && retries.Load() == 0 {
				t.Error("no read was retried")
			}
			if st := pf.Stats(); !tc.corrupt && st.Alone > 0 {
				t.Errorf("%d blobs read alone, want every one from its span (retried)", st.Alone)
			}
		})
	}
}

// A cancelled context stops consumers waiting for a span and the reads in
// flight at once, and Close leaves no goroutine behind.
func TestPrefetcherCancel(t *testing.T) {
	m, _, ids := prefetchRepo(t, 40)
	pr := &packReads{Backend: m}
	pr.hang.Store(true)
	r := repotest.Reopen(t, pr, repository.Options{})
	if err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	pf := r.NewPrefetcher(repository.PrefetchOptions{Reads: 4})
	pf.AddFile(ids)
	pf.Start(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := pf.Blob(ctx, 0, 0, ids[0], nil)
		done <- err
	}()
	for pr.hanging.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Blob after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Blob still waiting 5 s after the context was cancelled")
	}
	pf.Close()
	if n := pr.hanging.Load(); n != 0 {
		t.Errorf("%d reads still in flight after Close", n)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before Start", n, before)
	}
}
