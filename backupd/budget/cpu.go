package budget

import (
	"context"
	"math"
	"time"
)

// cpuThrottle keeps the process's CPU time per wall-clock second at most
// cores, as a bucket of CPU time: it fills at cores per second of wall
// time, up to burst, and each wait pays for the CPU the process used since
// the last one (measured with getrusage, exact to the microsecond). A wait
// that finds the bucket in debt sleeps until it is paid; one waiter at a
// time measures and sleeps, the others queue behind it, so every goroutine
// of the backup that waits stops while the process is over.
type cpuThrottle struct {
	cores float64
	now   func() time.Time
	used  func() time.Duration
	sleep func(context.Context, time.Duration) error

	gate    chan struct{} // held by the goroutine measuring
	last    time.Time
	lastCPU time.Duration
	credit  time.Duration // CPU time allowed and not used; negative: debt
}

// cpuBurst is the wall time whose worth of CPU the bucket holds at most: a
// backup that waited on I/O gets no more than this much CPU at once
// afterwards.
const cpuBurst = 100 * time.Millisecond

// cpuDebtLimit is the wall time whose worth of debt the bucket keeps at
// most. Debt beyond it is forgiven, so that CPU used by something else in
// the process (another run, the exporter) slows a backup down to a wait of
// this long per read, not to a halt.
const cpuDebtLimit = 2 * time.Second

func newCPUThrottle(cores float64, now func() time.Time, used func() time.Duration) *cpuThrottle {
	c := &cpuThrottle{cores: cores, now: now, used: used, sleep: sleep, gate: make(chan struct{}, 1)}
	c.last, c.lastCPU = now(), used()
	return c
}

func (c *cpuThrottle) wait(ctx context.Context) error {
	select {
	case c.gate <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.gate }()
	for {
		now, cpu := c.now(), c.used()
		c.credit += time.Duration(float64(now.Sub(c.last))*c.cores) - (cpu - c.lastCPU)
		c.last, c.lastCPU = now, cpu
		c.credit = min(c.credit, time.Duration(float64(cpuBurst)*c.cores))
		c.credit = max(c.credit, -time.Duration(float64(cpuDebtLimit)*c.cores))
		if c.credit >= 0 {
			return nil
		}
		// Rounded up, and not shorter than a tenth of a millisecond:
		// enough for the debt to be paid when it is over.
		d := max(time.Duration(math.Ceil(float64(-c.credit)/c.cores)), 100*time.Microsecond)
		if err := c.sleep(ctx, d); err != nil {
			return err
		}
	}
}
