package daemon

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// usage is what one run cost. For a run in the daemon's process it is the
// process's deltas (meter): runs are serialized (one at a time per daemon,
// unless Options.MaxRuns allows more), so they are the run's; with
// overlapping in-process runs they include the others'. A backup in a child
// process (Options.Isolate) is the child's own (backupInChild).
type usage struct {
	CPUSeconds   float64
	MaxRSS       uint64
	ReadIOBytes  uint64
	WriteIOBytes uint64
}

// meter samples the process while a run lasts.
type meter struct {
	proc       *process.Process
	cpu0       float64
	rd0, wr0   uint64
	mu         sync.Mutex
	maxRSS     uint64
	stop, done chan struct{}
}

func startMeter(ctx context.Context) *meter {
	p, err := process.NewProcessWithContext(ctx, int32(os.Getpid()))
	m := &meter{proc: p, stop: make(chan struct{}), done: make(chan struct{})}
	if err != nil {
		close(m.done)
		return m
	}
	if t, err := p.TimesWithContext(ctx); err == nil {
		m.cpu0 = t.User + t.System
	}
	if io, err := p.IOCountersWithContext(ctx); err == nil {
		m.rd0, m.wr0 = io.ReadBytes, io.WriteBytes
	}
	m.sample(ctx)
	go func() {
		defer close(m.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.sample(ctx)
			}
		}
	}()
	return m
}

func (m *meter) sample(ctx context.Context) {
	if mi, err := m.proc.MemoryInfoWithContext(ctx); err == nil {
		m.mu.Lock()
		m.maxRSS = max(m.maxRSS, mi.RSS)
		m.mu.Unlock()
	}
}

// finish stops sampling and returns the run's usage.
func (m *meter) finish(ctx context.Context) usage {
	select {
	case <-m.done:
	default:
		close(m.stop)
		<-m.done
	}
	var u usage
	if m.proc == nil {
		return u
	}
	m.sample(ctx)
	if t, err := m.proc.TimesWithContext(ctx); err == nil {
		u.CPUSeconds = t.User + t.System - m.cpu0
	}
	if io, err := m.proc.IOCountersWithContext(ctx); err == nil {
		u.ReadIOBytes, u.WriteIOBytes = io.ReadBytes-m.rd0, io.WriteBytes-m.wr0
	}
	m.mu.Lock()
	u.MaxRSS = m.maxRSS
	m.mu.Unlock()
	return u
}
