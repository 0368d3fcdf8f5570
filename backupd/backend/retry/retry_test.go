package retry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/mem"
	"github.com/meshbackup/backupd/backupd/backend/retry"
)

// scripted wraps a mem backend; before call n (1-based) of an operation it
// asks script, and a non-nil error is returned instead of running it.
type scripted struct {
	*mem.Mem
	mu     sync.Mutex
	calls  map[string]int
	script func(op string, n int) error
}

func newScripted(script func(op string, n int) error) *scripted {
	return &scripted{Mem: mem.New(), calls: map[string]int{}, script: script}
}

func (s *scripted) next(op string) error {
	s.mu.Lock()
	s.calls[op]++
	n := s.calls[op]
	s.mu.Unlock()
	if s.script == nil {
		return nil
	}
	return s.script(op, n)
}

func (s *scripted) count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *scripted) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	if err := s.next(retry.OpSave); err != nil {
		_, _ = io.CopyN(io.Discard, rd, 3) // a failed attempt consumed part of the reader
		return err
	}
	// Read from where the reader is, as a store's upload would: the
	// wrapper must have rewound it.
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	return s.Mem.Save(ctx, h, bytes.NewReader(b))
}

func (s *scripted) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := s.next(retry.OpLoad); err != nil {
		return err
	}
	return s.Mem.Load(ctx, h, length, offset, fn)
}

func (s *scripted) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := s.next(retry.OpStat); err != nil {
		return backend.FileInfo{}, err
	}
	return s.Mem.Stat(ctx, h)
}

func (s *scripted) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := s.next(retry.OpList); err != nil {
		return err
	}
	return s.Mem.List(ctx, t, fn)
}

func (s *scripted) Remove(ctx context.Context, h backend.Handle) error {
	if err := s.next(retry.OpRemove); err != nil {
		return err
	}
	return s.Mem.Remove(ctx, h)
}

// noSleep records the delays instead of sleeping.
type noSleep struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (n *noSleep) sleep(ctx context.Context, d time.Duration) error {
	n.mu.Lock()
	n.delays = append(n.delays, d)
	n.mu.Unlock()
	return ctx.Err()
}

var (
	errPlain     = errors.New("permission denied")
	errTransient = backend.Transient(errors.New("503 Service Unavailable"))
)

func failFirst(k int, err error) func(string, int) error {
	return func(_ string, n int) error {
		if n <= k {
			return err
		}
		return nil
	}
}

var testHandle = backend.Handle{Type: backend.SnapshotFile, Name: "abc"}

// runOp runs op once through be and returns its error.
func runOp(ctx context.Context, be backend.Backend, op string) error {
	switch op {
	case retry.OpSave:
		return be.Save(ctx, backend.Handle{Type: backend.SnapshotFile, Name: "new"}, strings.NewReader("content"))
	case retry.OpLoad:
		_, err := backend.LoadAll(ctx, be, testHandle)
		return err
	case retry.OpStat:
		_, err := be.Stat(ctx, testHandle)
		return err
	case retry.OpList:
		return be.List(ctx, backend.SnapshotFile, func(backend.FileInfo) error { return nil })
	case retry.OpRemove:
		return be.Remove(ctx, testHandle)
	}
	panic(op)
}

func TestAttempts(t *testing.T) {
	t.Parallel()
	ops := []string{retry.OpSave, retry.OpLoad, retry.OpStat, retry.OpList, retry.OpRemove}
	cases := []struct {
		name      string
		script    func(string, int) error
		wantCalls int
		wantErr   error // nil: success
	}{
		{"success", nil, 1, nil},
		{"transient twice then ok", failFirst(2, errTransient), 3, nil},
		{"reset then ok", failFirst(1, fmt.Errorf("read: %w", syscall.ECONNRESET)), 2, nil},
		{"transient always: bounded", failFirst(100, errTransient), 4, errTransient},
		{"not found not retried", failFirst(100, fmt.Errorf("x: %w", backend.ErrNotFound)), 1, backend.ErrNotFound},
		{"exists not retried", failFirst(100, fmt.Errorf("x: %w", backend.ErrExists)), 1, backend.ErrExists},
		{"plain error not retried", failFirst(100, errPlain), 1, errPlain},
		{"integrity of a transient-marked error not retried", failFirst(100, backend.Transient(backend.ErrIntegrity)), 1, backend.ErrIntegrity},
	}
	for _, op := range ops {
		for _, tc := range cases {
			t.Run(op+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				sb := newScripted(tc.script)
				if err := sb.Mem.Save(t.Context(), testHandle, strings.NewReader("snapshot")); err != nil {
					t.Fatal(err)
				}
				var retries []int
				var ns noSleep
				be := retry.New(sb, retry.Options{RetryFor: -1,
					MaxAttempts: 4, IntegrityRefetches: -1, Sleep: ns.sleep,
					OnRetry: func(gotOp string, attempt int, _ error) {
						if gotOp != op {
							t.Errorf("OnRetry op %q, want %q", gotOp, op)
						}
						retries = append(retries, attempt)
					},
				})
				err := runOp(t.Context(), be, op)
				if tc.wantErr == nil && err != nil {
					t.Fatalf("got %v, want success", err)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				if got := sb.count(op); got != tc.wantCalls {
					t.Errorf("%d calls, want %d", got, tc.wantCalls)
				}
				want := make([]int, 0)
				for i := 1; i < tc.wantCalls; i++ {
					want = append(want, i)
				}
				if !slices.Equal(append([]int{}, retries...), want) {
					t.Errorf("OnRetry attempts %v, want %v", retries, want)
				}
				if len(ns.delays) != tc.wantCalls-1 {
					t.Errorf("%d sleeps, want %d", len(ns.delays), tc.wantCalls-1)
				}
			})
		}
	}
}

// maxSource makes every jitter draw the largest possible.
type maxSource struct{}

func (maxSource) Uint64() uint64 { return ^uint64(0) }

func TestBackoff(t *testing.T) {
	t.Parallel()
	const base, maxDelay = 100 * time.Millisecond, time.Second
	caps := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i := range caps {
		caps[i] *= time.Millisecond
	}
	delays := func(src rand.Source) []time.Duration {
		var ns noSleep
		be := retry.New(newScripted(failFirst(100, errTransient)), retry.Options{RetryFor: -1,
			MaxAttempts: len(caps) + 1, Base: base, Max: maxDelay, Rand: src, Sleep: ns.sleep,
		})
		if _, err := be.Stat(t.Context(), testHandle); !errors.Is(err, errTransient) {
			t.Fatalf("stat: %v", err)
		}
		return ns.delays
	}

	t.Run("grows to Max and no further", func(t *testing.T) {
		t.Parallel()
		got := delays(maxSource{})
		if len(got) != len(caps) {
			t.Fatalf("%d delays, want %d", len(got), len(caps))
		}
		for i, d := range got {
			if d > caps[i] || d < caps[i]*99/100 {
				t.Errorf("retry %d: delay %v, want just under %v", i+1, d, caps[i])
			}
		}
	})
	t.Run("jitter deterministic with a seed", func(t *testing.T) {
		t.Parallel()
		a, b := delays(rand.NewPCG(1, 2)), delays(rand.NewPCG(1, 2))
		if !slices.Equal(a, b) {
			t.Errorf("same seed, different delays: %v vs %v", a, b)
		}
		if c := delays(rand.NewPCG(3, 4)); slices.Equal(a, c) {
			t.Errorf("different seeds, same delays %v", a)
		}
		for i, d := range a {
			if d < 0 || d >= caps[i] {
				t.Errorf("retry %d: delay %v outside [0, %v)", i+1, d, caps[i])
			}
		}
	})
}

// hanging wraps a backend: the first hang calls of each operation block
// until their context ends and return its error.
type hanging struct {
	backend.Backend
	mu    sync.Mutex
	hang  int
	calls int
}

func (h *hanging) block(ctx context.Context) error {
	h.mu.Lock()
	h.calls++
	n := h.calls
	h.mu.Unlock()
	if n <= h.hang {
		<-ctx.Done()
		return fmt.Errorf("request: %w", ctx.Err())
	}
	return nil
}

func (h *hanging) Load(ctx context.Context, hd backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := h.block(ctx); err != nil {
		return err
	}
	return h.Backend.Load(ctx, hd, length, offset, fn)
}

func (h *hanging) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := h.block(ctx); err != nil {
		return err
	}
	return h.Backend.List(ctx, t, fn)
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		op        string
		hang      int
		timeout   time.Duration
		parent    time.Duration // deadline of the caller's context; 0 none
		wantErr   error
		wantCalls int
	}{
		{"load: attempt deadline retried", retry.OpLoad, 2, 20 * time.Millisecond, 0, nil, 3},
		{"list: wait for a name retried", retry.OpList, 1, 20 * time.Millisecond, 0, nil, 2},
		{"load: parent deadline not retried", retry.OpLoad, 100, time.Hour, 50 * time.Millisecond, context.DeadlineExceeded, 1},
		{"load: attempts bounded", retry.OpLoad, 100, 5 * time.Millisecond, 0, context.DeadlineExceeded, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mem.New()
			if err := m.Save(t.Context(), testHandle, strings.NewReader("snapshot")); err != nil {
				t.Fatal(err)
			}
			hb := &hanging{Backend: m, hang: tc.hang}
			var ns noSleep
			be := retry.New(hb, retry.Options{RetryFor: -1, MaxAttempts: 3, Timeout: tc.timeout, Sleep: ns.sleep})
			ctx := t.Context()
			if tc.parent > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.parent)
				defer cancel()
			}
			err := runOp(ctx, be, tc.op)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("got %v, want success", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if hb.calls != tc.wantCalls {
				t.Errorf("%d calls, want %d", hb.calls, tc.wantCalls)
			}
		})
	}
}

// flipping wraps a backend and flips a byte of the first flips loads.
type flipping struct {
	backend.Backend
	mu    sync.Mutex
	flips int
	loads int
}

func (f *flipping) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	f.mu.Lock()
	f.loads++
	flip := f.loads <= f.flips
	f.mu.Unlock()
	return f.Backend.Load(ctx, h, length, offset, func(rd io.Reader) error {
		if !flip {
			return fn(rd)
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		b[len(b)/2] ^= 0x20
		return fn(bytes.NewReader(b))
	})
}

func TestIntegrityRefetch(t *testing.T) {
	t.Parallel()
	content := []byte("the content of a snapshot, verified by its hash")
	sum := sha256.Sum256(content)
	cases := []struct {
		name       string
		flips      int
		wantErr    error
		wantLoads  int
		wantRetrys int
	}{
		{"clean", 0, nil, 1, 0},
		{"flipped once, re-fetched", 1, nil, 2, 1},
		{"flipped twice, re-fetched", 2, nil, 3, 2},
		{"always flipped: error surfaces", 100, backend.ErrIntegrity, 3, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mem.New()
			if err := m.Save(t.Context(), testHandle, bytes.NewReader(content)); err != nil {
				t.Fatal(err)
			}
			fb := &flipping{Backend: m, flips: tc.flips}
			var ns noSleep
			retries := 0
			be := retry.New(fb, retry.Options{RetryFor: -1, Sleep: ns.sleep, OnRetry: func(op string, _ int, err error) {
				if !errors.Is(err, backend.ErrIntegrity) {
					t.Errorf("retry of %s after %v", op, err)
				}
				retries++
			}})
			var accepted []byte
			err := be.Load(t.Context(), testHandle, 0, 0, func(rd io.Reader) error {
				b, err := io.ReadAll(rd)
				if err != nil {
					return err
				}
				if sha256.Sum256(b) != sum {
					return fmt.Errorf("snapshot abc: hash mismatch: %w", backend.ErrIntegrity)
				}
				accepted = b
				return nil
			})
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				if !bytes.Equal(accepted, content) {
					t.Errorf("accepted %q", accepted)
				}
			} else {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				if accepted != nil {
					t.Errorf("bad bytes handed on: %q", accepted)
				}
			}
			if fb.loads != tc.wantLoads {
				t.Errorf("%d loads, want %d", fb.loads, tc.wantLoads)
			}
			if retries != tc.wantRetrys {
				t.Errorf("%d retries counted, want %d", retries, tc.wantRetrys)
			}
		})
	}
}

func TestCancelStopsRetries(t *testing.T) {
	t.Parallel()
	sb := newScripted(failFirst(100, errTransient))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// A real, context-aware sleep of up to an hour: only cancellation can
	// end it.
	be := retry.New(sb, retry.Options{RetryFor: -1, Base: time.Hour, Max: time.Hour, Rand: maxSource{},
		OnRetry: func(string, int, error) { cancel() }})
	start := time.Now()
	_, err := be.Stat(ctx, testHandle)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v after cancellation", d)
	}
	if n := sb.count(retry.OpStat); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

func TestSaveRewindsAndExists(t *testing.T) {
	t.Parallel()
	h := backend.Handle{Type: backend.PackFile, Name: "0123"}
	content := "pack content"

	t.Run("rewound after a partial attempt", func(t *testing.T) {
		t.Parallel()
		sb := newScripted(failFirst(2, errTransient))
		var ns noSleep
		be := retry.New(sb, retry.Options{RetryFor: -1, Sleep: ns.sleep})
		if err := be.Save(t.Context(), h, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		got, err := backend.LoadAll(t.Context(), sb.Mem, h)
		if err != nil || string(got) != content {
			t.Fatalf("stored %q, %v; want %q", got, err, content)
		}
	})

	t.Run("exists after an ambiguous failure", func(t *testing.T) {
		t.Parallel()
		m := mem.New()
		// The first attempt stores the object, then its answer is lost.
		first := true
		amb := &saveHook{Backend: m, hook: func(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
			if first {
				first = false
				if err := m.Save(ctx, h, rd); err != nil {
					return err
				}
				return backend.Transient(errors.New("connection reset after upload"))
			}
			return m.Save(ctx, h, rd)
		}}
		var ns noSleep
		be := retry.New(amb, retry.Options{RetryFor: -1, Sleep: ns.sleep})
		err := be.Save(t.Context(), h, strings.NewReader(content))
		if !errors.Is(err, backend.ErrExists) {
			t.Fatalf("got %v, want ErrExists", err)
		}
		got, err := backend.LoadAll(t.Context(), m, h)
		if err != nil || string(got) != content {
			t.Fatalf("stored %q, %v; want %q", got, err, content)
		}
	})
}

type saveHook struct {
	backend.Backend
	hook func(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error
}

func (s *saveHook) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	return s.hook(ctx, h, rd)
}

// brokenList delivers the names, failing after the first cut of them on
// its first call.
type brokenList struct {
	backend.Backend
	cut   int
	calls int
}

func (b *brokenList) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	b.calls++
	first := b.calls == 1
	n := 0
	err := b.Backend.List(ctx, t, func(fi backend.FileInfo) error {
		if first && n == b.cut {
			return errTransient
		}
		n++
		return fn(fi)
	})
	return err
}

func TestListRestartsWithoutDuplicates(t *testing.T) {
	t.Parallel()
	m := mem.New()
	var want []string
	for i := range 5 {
		name := fmt.Sprintf("s%d", i)
		want = append(want, name)
		if err := m.Save(t.Context(), backend.Handle{Type: backend.SnapshotFile, Name: name}, strings.NewReader(name)); err != nil {
			t.Fatal(err)
		}
	}
	bl := &brokenList{Backend: m, cut: 3}
	var ns noSleep
	be := retry.New(bl, retry.Options{RetryFor: -1, Sleep: ns.sleep})
	var got []string
	if err := be.List(t.Context(), backend.SnapshotFile, func(fi backend.FileInfo) error {
		got = append(got, fi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("listed %v, want each of %v once", got, want)
	}
	if bl.calls != 2 {
		t.Errorf("%d listings, want 2", bl.calls)
	}

	t.Run("error of fn not retried", func(t *testing.T) {
		bl := &brokenList{Backend: m, cut: -1}
		be := retry.New(bl, retry.Options{RetryFor: -1, Sleep: ns.sleep})
		err := be.List(t.Context(), backend.SnapshotFile, func(backend.FileInfo) error { return errTransient })
		if !errors.Is(err, errTransient) || bl.calls != 1 {
			t.Errorf("got %v after %d listings, want fn's error after 1", err, bl.calls)
		}
	})
}

func TestLogsOneWarningPerRetry(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	var ns noSleep
	be := retry.New(newScripted(failFirst(2, errTransient)), retry.Options{RetryFor: -1,
		Sleep: ns.sleep, Logger: slog.New(slog.NewTextHandler(&buf, nil)),
	})
	if err := be.Remove(t.Context(), testHandle); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2:\n%s", len(lines), buf.String())
	}
	for i, l := range lines {
		for _, want := range []string{"level=WARN", "op=remove", "handle=snapshots/abc", fmt.Sprintf("attempt=%d", i+1), "503"} {
			if !strings.Contains(l, want) {
				t.Errorf("line %q lacks %q", l, want)
			}
		}
	}
}

func TestUnwrap(t *testing.T) {
	t.Parallel()
	m := mem.New()
	be := retry.New(m, retry.Options{RetryFor: -1})
	if got, ok := backend.As[*mem.Mem](be); !ok || got != m {
		t.Errorf("As did not find the wrapped backend")
	}
	if be.Location() != m.Location() {
		t.Errorf("location %q", be.Location())
	}
}

// clockMem is a backend whose store has a clock that fails as scripted.
type clockMem struct {
	*mem.Mem
	fails  int // the first fails reads (and cleans) fail transiently
	reads  int
	cleans int
}

// CleanTemp fails transiently as often as ServerTime is set to.
func (c *clockMem) CleanTemp() error {
	c.cleans++
	if c.cleans <= c.fails {
		return backend.Transient(errors.New("503 on ListMultipartUploads"))
	}
	return nil
}

func (c *clockMem) ServerTime(context.Context) (time.Time, error) {
	c.reads++
	if c.reads <= c.fails {
		return time.Time{}, backend.Transient(errors.New("503 on HEAD"))
	}
	return time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC), nil
}

// Wrap retries the store's clock and CleanTemp like any operation, and
// offers them only over a backend that has them; As still finds the
// retrying Backend.
func TestWrapRetriesTheOptionalFeatures(t *testing.T) {
	t.Parallel()
	instant := func(context.Context, time.Duration) error { return nil }
	var retried []string
	cm := &clockMem{Mem: mem.New(), fails: 2}
	be := retry.Wrap(cm, retry.Options{RetryFor: -1, Sleep: instant, OnRetry: func(op string, _ int, _ error) { retried = append(retried, op) }})
	sc, ok := backend.As[backend.ServerClock](be)
	if !ok {
		t.Fatal("no server clock through the wrapper")
	}
	if st, err := sc.ServerTime(t.Context()); err != nil || st.IsZero() {
		t.Fatalf("ServerTime after two transient failures: %v, %v", st, err)
	}
	if cm.reads != 3 || len(retried) != 2 || retried[0] != retry.OpServerTime {
		t.Errorf("%d reads, retries %v; want 3 reads and 2 retries of %s", cm.reads, retried, retry.OpServerTime)
	}
	if _, ok := backend.As[*retry.Backend](be); !ok {
		t.Error("As does not find the retrying backend")
	}
	tc, ok := backend.As[backend.TempCleaner](be)
	if !ok {
		t.Fatal("no TempCleaner through the wrapper")
	}
	if err := tc.CleanTemp(); err != nil || cm.cleans != 3 {
		t.Errorf("CleanTemp after two transient failures: %v after %d calls, want success after 3", err, cm.cleans)
	}
	cm = &clockMem{Mem: mem.New(), fails: 100}
	sc, _ = backend.As[backend.ServerClock](retry.Wrap(cm, retry.Options{RetryFor: -1, Sleep: instant}))
	if _, err := sc.ServerTime(t.Context()); !backend.IsTransient(err) || cm.reads != retry.DefaultMaxAttempts {
		t.Errorf("a clock that keeps failing: %v after %d reads, want a transient error after %d", err, cm.reads, retry.DefaultMaxAttempts)
	}
	if _, ok := backend.As[backend.ServerClock](retry.Wrap(mem.New(), retry.Options{RetryFor: -1})); ok {
		t.Error("Wrap offers a server clock over a backend without one")
	}
	if _, ok := backend.As[backend.TempCleaner](retry.Wrap(mem.New(), retry.Options{RetryFor: -1})); ok {
		t.Error("Wrap offers CleanTemp over a backend without it")
	}
}

// Do retries an operation outside the Backend interface as the wrapper
// retries its own: transient failures up to MaxAttempts, others not.
func TestDo(t *testing.T) {
	t.Parallel()
	instant := func(context.Context, time.Duration) error { return nil }
	for _, tc := range []struct {
		name      string
		fail      error
		fails     int
		wantCalls int
		wantErr   bool
	}{
		{"transient, then success", backend.Transient(errors.New("503")), 2, 3, false},
		{"transient for ever", backend.Transient(errors.New("503")), 100, retry.DefaultMaxAttempts, true},
		{"not transient", errors.New("access denied"), 100, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := retry.Do(t.Context(), retry.Options{RetryFor: -1, Sleep: instant}, "open", func(context.Context) error {
				calls++
				if calls <= tc.fails {
					return tc.fail
				}
				return nil
			})
			if calls != tc.wantCalls || (err != nil) != tc.wantErr {
				t.Fatalf("%d calls, err %v; want %d calls, error %v", calls, err, tc.wantCalls, tc.wantErr)
			}
		})
	}
}

// fakeClock is the clock of RetryFor: its sleep advances it instead of
// waiting.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

// A store that is down (every attempt fails transiently) for a while: an
// outage shorter than RetryFor is ridden out by every operation, one longer
// fails it once RetryFor has passed, not before and not much later, after a
// bounded number of attempts.
func TestRetryFor(t *testing.T) {
	t.Parallel()
	const outage = 30 * time.Second
	cases := []struct {
		name     string
		retryFor time.Duration // 0: the default
		ok       bool
	}{
		{"outage shorter than the default", 0, true},
		{"outage longer than RetryFor", 10 * time.Second, false},
		{"RetryFor off: MaxAttempts alone", -1, false},
	}
	for _, op := range []string{retry.OpSave, retry.OpLoad, retry.OpStat, retry.OpList, retry.OpRemove} {
		for _, tc := range cases {
			t.Run(op+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				clock := &fakeClock{now: time.Unix(1e9, 0)}
				start := clock.Now()
				sb := newScripted(func(string, int) error {
					if clock.Now().Sub(start) < outage {
						return backend.Transient(errors.New("connection refused"))
					}
					return nil
				})
				if err := sb.Mem.Save(t.Context(), testHandle, strings.NewReader("snapshot")); err != nil {
					t.Fatal(err)
				}
				be := retry.New(sb, retry.Options{RetryFor: tc.retryFor, Sleep: clock.sleep, Now: clock.Now})
				err := runOp(t.Context(), be, op)
				took := clock.Now().Sub(start)
				if tc.ok {
					if err != nil {
						t.Fatalf("a %s outage with RetryFor %s: %v", outage, retry.DefaultRetryFor, err)
					}
					if took < outage {
						t.Fatalf("succeeded after %s, within the outage", took)
					}
					return
				}
				if err == nil {
					t.Fatalf("a %s outage ridden out with RetryFor %s", outage, tc.retryFor)
				}
				if !strings.Contains(err.Error(), "gave up after") {
					t.Errorf("error %q does not say it gave up", err)
				}
				if tc.retryFor > 0 && (took < tc.retryFor || took > tc.retryFor+retry.DefaultMax) {
					t.Errorf("gave up after %s, want between %s and %s", took, tc.retryFor, tc.retryFor+retry.DefaultMax)
				}
				if tc.retryFor < 0 && sb.count(op) != retry.DefaultMaxAttempts {
					t.Errorf("%d attempts with RetryFor off, want %d", sb.count(op), retry.DefaultMaxAttempts)
				}
				if n := sb.count(op); n > 100 {
					t.Errorf("%d attempts in %s: not bounded by the backoff", n, took)
				}
			})
		}
	}
}

// Once an operation has given up on a store that stays down, the next
// ones (a failed run's cleanup) give up after MaxAttempts instead of
// waiting out RetryFor each; an operation that succeeds brings RetryFor
// back.
func TestRetryForOncePerOutage(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	down := true
	sb := newScripted(func(string, int) error {
		if down {
			return backend.Transient(errors.New("connection refused"))
		}
		return nil
	})
	if err := sb.Mem.Save(t.Context(), testHandle, strings.NewReader("snapshot")); err != nil {
		t.Fatal(err)
	}
	be := retry.New(sb, retry.Options{RetryFor: 30 * time.Second, Sleep: clock.sleep, Now: clock.Now})
	elapsed := func(f func() error) (time.Duration, error) {
		start := clock.Now()
		err := f()
		return clock.Now().Sub(start), err
	}
	stat := func() error { _, err := be.Stat(t.Context(), testHandle); return err }
	took, err := elapsed(stat)
	if err == nil || took < 30*time.Second {
		t.Fatalf("first operation on a dead store: %v after %s, want a failure after 30s", err, took)
	}
	before := sb.count(retry.OpStat)
	took, err = elapsed(stat)
	if err == nil || took >= 30*time.Second || sb.count(retry.OpStat)-before != retry.DefaultMaxAttempts {
		t.Fatalf("second operation: %v after %s and %d attempts, want a failure after %d attempts", err, took, sb.count(retry.OpStat)-before, retry.DefaultMaxAttempts)
	}
	down = false
	if err := stat(); err != nil {
		t.Fatal(err)
	}
	down = true
	took, err = elapsed(stat)
	if err == nil || took < 30*time.Second {
		t.Fatalf("after a success, an operation on a dead store: %v after %s, want RetryFor again", err, took)
	}
}
