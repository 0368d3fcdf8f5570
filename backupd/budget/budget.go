package budget

import (
	"context"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// Limits are what one backup may use; zero fields limit nothing.
type Limits struct {
	// ReadRate is the most bytes per second read from the source.
	ReadRate int64
	// CPU is the most CPU time the process uses per second of wall
	// time, in cores (0.5: half a core).
	CPU float64
}

// MinCPU is the smallest CPU limit: below it a backup would mostly wait.
const MinCPU = 0.01

// Validate reports a limit out of range.
func (l Limits) Validate() error {
	switch {
	case l.ReadRate < 0:
		return fmt.Errorf("read rate %d: want a positive rate", l.ReadRate)
	case l.CPU != 0 && !(l.CPU >= MinCPU):
		return fmt.Errorf("cpu %g: want at least %g cores", l.CPU, MinCPU)
	}
	return nil
}

// Budget enforces Limits for one backup. A nil *Budget limits nothing; its
// methods may be called from any goroutine.
type Budget struct {
	read  *rate.Limiter
	burst int
	cpu   *cpuThrottle
}

// New returns the budget of l, starting now, or nil when l limits nothing.
// The read bucket starts empty: the first bytes are not free, so a backup
// that reads N bytes takes at least N / ReadRate.
func New(l Limits) *Budget {
	if l.ReadRate <= 0 && l.CPU <= 0 {
		return nil
	}
	b := &Budget{}
	if l.ReadRate > 0 {
		// A tenth of a second's worth, within [64 KiB, 4 MiB]: reads are
		// cut to this size, so the disk sees a steady stream, not bursts
		// of the chunker's 5 MiB window.
		b.burst = int(min(max(l.ReadRate/10, 64<<10), 4<<20))
		b.read = rate.NewLimiter(rate.Limit(l.ReadRate), b.burst)
		b.read.AllowN(time.Now(), b.burst)
	}
	if l.CPU > 0 {
		b.cpu = newCPUThrottle(l.CPU, time.Now, processCPU)
	}
	return b
}

// Wait blocks while the process is over its CPU limit, until ctx ends.
func (b *Budget) Wait(ctx context.Context) error {
	if b == nil || b.cpu == nil {
		return nil
	}
	return b.cpu.wait(ctx)
}

// waitRead takes n bytes' worth of read tokens, blocking until they are
// there or ctx ends.
func (b *Budget) waitRead(ctx context.Context, n int) error {
	if b.read == nil || n <= 0 {
		return nil
	}
	return sleep(ctx, b.read.ReserveN(time.Now(), n).Delay())
}

// File is what a backup reads a source file through.
type File interface {
	io.Reader
	io.ReaderAt
}

// Reader returns f read within the budget: each read waits for the CPU
// limit before it and for the read rate after it (cut to the bucket's
// size), until ctx ends, whose error it then returns. Without a budget it
// returns f itself. The reader keeps ctx: use it for one file, within the
// call that got it.
func (b *Budget) Reader(ctx context.Context, f File) File {
	if b == nil {
		return f
	}
	return &limited{ctx: ctx, b: b, f: f}
}

type limited struct {
	ctx context.Context
	b   *Budget
	f   File
}

func (l *limited) cut(p []byte) ([]byte, error) {
	if err := l.b.Wait(l.ctx); err != nil {
		return nil, err
	}
	if err := l.ctx.Err(); err != nil {
		return nil, err
	}
	if l.b.read != nil && len(p) > l.b.burst {
		p = p[:l.b.burst]
	}
	return p, nil
}

func (l *limited) Read(p []byte) (int, error) {
	p, err := l.cut(p)
	if err != nil {
		return 0, err
	}
	n, err := l.f.Read(p)
	if werr := l.b.waitRead(l.ctx, n); werr != nil && err == nil {
		err = werr
	}
	return n, err
}

// ReadAt fills p as io.ReaderAt must (in several reads when p is longer
// than the bucket).
func (l *limited) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		q, err := l.cut(p[done:])
		if err != nil {
			return done, err
		}
		n, err := l.f.ReadAt(q, off+int64(done))
		done += n
		if werr := l.b.waitRead(l.ctx, n); werr != nil && err == nil {
			err = werr
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
