package budget

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Limits
		ok   bool
	}{
		{"none", Limits{}, true},
		{"both", Limits{ReadRate: 50 << 20, CPU: 0.5}, true},
		{"negative rate", Limits{ReadRate: -1}, false},
		{"tiny cpu", Limits{CPU: 0.001}, false},
		{"negative cpu", Limits{CPU: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.l.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate(%+v) = %v, want ok %v", tc.l, err, tc.ok)
			}
		})
	}
}

func TestNoLimitsIsNoBudget(t *testing.T) {
	if b := New(Limits{}); b != nil {
		t.Fatalf("New(no limits) = %v, want nil", b)
	}
	var b *Budget
	r := bytes.NewReader([]byte("abc"))
	if got := b.Reader(t.Context(), r); got != File(r) {
		t.Error("a nil budget's Reader is not the file itself")
	}
	if err := b.Wait(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestReadRateIsALowerBound reads N bytes at a rate R by Read and by
// ReadAt: each takes at least N/R (the bucket starts empty), and the bytes
// come through unchanged.
func TestReadRateIsALowerBound(t *testing.T) {
	const n, rate = 3 << 20, 4 << 20 // 0.75 s at least
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	for _, tc := range []struct {
		name string
		read func(File) ([]byte, error)
	}{
		{"Read", func(f File) ([]byte, error) { return io.ReadAll(f) }},
		{"ReadAt", func(f File) ([]byte, error) {
			b := make([]byte, n)
			// Two big ReadAts, each longer than the bucket.
			if _, err := f.ReadAt(b[:n/2], 0); err != nil {
				return nil, err
			}
			_, err := f.ReadAt(b[n/2:], n/2)
			return b, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Limits{ReadRate: rate})
			start := time.Now()
			got, err := tc.read(b.Reader(t.Context(), bytes.NewReader(data)))
			if err != nil {
				t.Fatal(err)
			}
			if el, want := time.Since(start), time.Duration(float64(n)/rate*float64(time.Second)); el < want {
				t.Errorf("read %d bytes at %d B/s in %s, want at least %s", n, rate, el, want)
			}
			if !bytes.Equal(got, data) {
				t.Error("the bytes read through the budget differ")
			}
		})
	}
}

func TestReadStopsWhenContextEnds(t *testing.T) {
	b := New(Limits{ReadRate: 64 << 10})
	ctx, cancel := context.WithCancel(t.Context())
	r := b.Reader(ctx, bytes.NewReader(make([]byte, 4<<20)))
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := io.ReadAll(r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
}

// fakeCPU is a process whose clock and CPU time the test moves: sleeping
// advances the clock, working advances both (at the cores that work).
type fakeCPU struct {
	mu   sync.Mutex
	now  time.Time
	used time.Duration
}

func (f *fakeCPU) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fakeCPU) cpu() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.used
}
func (f *fakeCPU) sleep(_ context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	return nil
}
func (f *fakeCPU) work(wall time.Duration, cores float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(wall)
	f.used += time.Duration(float64(wall) * cores)
}

// TestCPUThrottleKeepsTheAverage runs a worker on a fake clock that burns
// two cores between waits, in steps of different lengths, with idle spells
// (waiting on I/O) between: over the run, CPU time per wall second stays
// within the limit, give or take the burst.
func TestCPUThrottleKeepsTheAverage(t *testing.T) {
	for _, cores := range []float64{0.25, 0.5, 1.5} {
		f := &fakeCPU{now: time.Unix(1e9, 0)}
		c := newCPUThrottle(cores, f.clock, f.cpu)
		c.sleep = f.sleep
		start := f.now
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range 5000 {
			if err := c.wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			f.work(time.Duration(rng.IntN(20)+1)*time.Millisecond, 2)
			if i%100 == 0 {
				f.work(time.Second, 0) // idle: the bucket fills, to its burst only
			}
		}
		wall, used := f.now.Sub(start), f.used
		limit := cores*wall.Seconds() + cores*cpuBurst.Seconds()*50 + 2*0.02 // 50 idle spells' bursts, one step
		if used.Seconds() > limit {
			t.Errorf("cores %g: %.2f CPU-s in %.2f s (%.3f cores), want at most %.2f CPU-s", cores, used.Seconds(), wall.Seconds(), used.Seconds()/wall.Seconds(), limit)
		}
		// Apart from the 50 idle seconds, the worker wants more than the
		// limit all the time: it must get nearly all of it.
		if busy := wall - 50*time.Second; used.Seconds() < 0.9*cores*busy.Seconds() {
			t.Errorf("cores %g: only %.2f CPU-s in %.2f s: the throttle holds back more than the limit", cores, used.Seconds(), wall.Seconds())
		}
	}
}

// TestCPUThrottleForgivesOldDebt: CPU burned elsewhere in the process
// (not by the throttled work) costs a waiter at most the debt limit.
func TestCPUThrottleForgivesOldDebt(t *testing.T) {
	f := &fakeCPU{now: time.Unix(1e9, 0)}
	c := newCPUThrottle(0.5, f.clock, f.cpu)
	c.sleep = f.sleep
	f.work(time.Minute, 2) // two cores for a minute, not waiting
	before := f.now
	if err := c.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if slept := f.now.Sub(before); slept > cpuDebtLimit+time.Millisecond {
		t.Errorf("slept %s, want at most %s", slept, cpuDebtLimit)
	}
}

// TestCPULimitOnARealProcess burns CPU on two goroutines that wait on the
// budget between steps of about a millisecond, for two seconds: the
// process's CPU time per wall second stays near the limit.
func TestCPULimitOnARealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("burns CPU for 2 s")
	}
	const cores = 0.25
	b := New(Limits{CPU: cores})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	cpu0, start := processCPU(), time.Now()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			x := 1.0
			for ctx.Err() == nil {
				if b.Wait(ctx) != nil {
					break
				}
				for end := time.Now().Add(time.Millisecond); time.Now().Before(end); {
					x = x*1.0000001 + 1
				}
			}
			_ = x
		})
	}
	wg.Wait()
	used, wall := (processCPU() - cpu0).Seconds(), time.Since(start).Seconds()
	if got := used / wall; got > cores*1.4 {
		t.Errorf("%.3f CPU-s in %.2f s = %.3f cores, want at most about %g", used, wall, got, cores)
	}
	if used < 0.1 {
		t.Errorf("only %.3f CPU-s in %.2f s: the workers hardly ran", used, wall)
	}
}
