// Package impact measures what a backup costs the workload beside it: a
// writer that behaves like a mesh proxy's access logger, appending one
// 300–500 byte line and fsyncing it every 10 ms to a file on the file
// system of the backed-up source, and timing each append and fsync. The
// fault benchmark's impact scenario runs it with no backup (the baseline)
// and during each tool's backup, and reports the latencies as
// faults.Latency.
//
// Imports: bench/faults for the result type; no engine, collector or
// exporter code (docs/DESIGN.md §2.3).
package impact

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/meshbackup/backupd/bench/faults"
)

// Line lengths, newline included: an Envoy access-log line with headers.
const (
	MinLine = 300
	MaxLine = 500
)

// Options configure a Writer.
type Options struct {
	// Path is the file appended to; Start creates or truncates it.
	Path string
	// Source, if set, is the directory being backed up: Start refuses a
	// Path on another file system, where the backup's I/O would not meet
	// the writer's.
	Source string
	// Interval is the time between two appends: 10 ms.
	Interval time.Duration
	// Seed makes the lines reproducible.
	Seed uint64
}

// Writer is a running probe. Its methods may be called from any
// goroutine.
type Writer struct {
	f      *os.File
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	samples []time.Duration
	err     error
}

// Start opens opt.Path and starts appending, until ctx ends or Stop.
func Start(ctx context.Context, opt Options) (*Writer, error) {
	if opt.Interval == 0 {
		opt.Interval = 10 * time.Millisecond
	}
	if opt.Path == "" {
		return nil, errors.New("impact writer: no path")
	}
	if opt.Source != "" {
		same, err := SameFileSystem(filepath.Dir(opt.Path), opt.Source)
		if err != nil {
			return nil, fmt.Errorf("impact writer: %w", err)
		}
		if !same {
			return nil, fmt.Errorf("impact writer: %s is not on the file system of the source %s", opt.Path, opt.Source)
		}
	}
	f, err := os.OpenFile(opt.Path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("impact writer: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Writer{f: f, cancel: cancel, done: make(chan struct{})}
	go w.run(ctx, opt)
	return w, nil
}

// run appends a line and fsyncs it at every tick until ctx ends or a
// write fails. A tick missed because the previous append was still going
// is dropped, as a logger that blocks on its file does.
func (w *Writer) run(ctx context.Context, opt Options) {
	defer close(w.done)
	rng := rand.New(rand.NewPCG(opt.Seed, 0x1a7e))
	t := time.NewTicker(opt.Interval)
	defer t.Stop()
	buf := make([]byte, 0, MaxLine)
	for seq := uint64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		buf = accessLine(buf[:0], rng, seq, time.Now())
		start := time.Now()
		_, err := w.f.Write(buf)
		if err == nil {
			err = w.f.Sync()
		}
		took := time.Since(start)
		w.mu.Lock()
		if err != nil {
			w.err = fmt.Errorf("impact writer: append to %s: %w", w.f.Name(), err)
		} else {
			w.samples = append(w.samples, took)
		}
		w.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Latency summarises the appends so far.
func (w *Writer) Latency() faults.Latency {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Summarize(w.samples)
}

// Samples returns the latency of every append so far, in order (to merge
// the samples of several writers, with Summarize).
func (w *Writer) Samples() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.samples)
}

// Stop stops the writer, closes its file and returns the summary of every
// append, and the error that stopped it early, if one did.
func (w *Writer) Stop() (faults.Latency, error) {
	w.cancel()
	<-w.done
	cerr := w.f.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.err
	if err == nil && cerr != nil {
		err = fmt.Errorf("impact writer: %w", cerr)
	}
	return Summarize(w.samples), err
}

// BucketBounds are the upper bounds, in seconds, of the histogram of
// Summarize; the last, 0, stands for +Inf. From 100 µs (an fsync on an idle
// SSD) to 2.5 s (a stall a proxy's clients would time out on).
var BucketBounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 0}

// Summarize returns the count, median, 99th percentile (nearest rank),
// maximum and histogram (counts per bucket of BucketBounds, each sample
// in the first bucket whose bound it does not exceed) of samples.
func Summarize(samples []time.Duration) faults.Latency {
	l := faults.Latency{Samples: len(samples), BucketBounds: slices.Clone(BucketBounds), BucketCounts: make([]int, len(BucketBounds))}
	if len(samples) == 0 {
		return l
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[max(i, 0)].Seconds()
	}
	l.P50Seconds, l.P99Seconds, l.MaxSeconds = rank(0.5), rank(0.99), s[len(s)-1].Seconds()
	for _, d := range s {
		i, _ := slices.BinarySearch(BucketBounds[:len(BucketBounds)-1], d.Seconds())
		l.BucketCounts[i]++
	}
	return l
}

// SameFileSystem reports whether the paths a and b are on one file system
// (the same st_dev).
func SameFileSystem(a, b string) (bool, error) {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev, nil
}

var (
	methods = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	paths   = []string{"/api/v1/orders", "/api/v1/users", "/healthz", "/api/v2/catalog/items", "/grpc.health.v1.Health/Check"}
	codes   = []string{"200", "200", "200", "201", "204", "404", "503"}
)

// accessLine appends one Envoy-style access-log line of MinLine to MaxLine
// bytes, newline included, to b.
func accessLine(b []byte, r *rand.Rand, seq uint64, now time.Time) []byte {
	start := len(b)
	target := MinLine + r.IntN(MaxLine-MinLine+1)
	b = append(b, '[')
	b = now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, "] seq="...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ` "`...)
	b = append(b, methods[r.IntN(len(methods))]...)
	b = append(b, ' ')
	b = append(b, paths[r.IntN(len(paths))]...)
	b = append(b, ` HTTP/1.1" `...)
	b = append(b, codes[r.IntN(len(codes))]...)
	b = append(b, " - via_upstream - \"-\" "...)
	b = strconv.AppendInt(b, int64(r.IntN(5000)), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.IntN(90000)), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.IntN(300)), 10)
	b = append(b, ` "10.`...)
	b = strconv.AppendInt(b, int64(r.IntN(256)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(r.IntN(256)), 10)
	b = append(b, `.7" "envoy/1.31" "`...)
	for range 4 {
		b = strconv.AppendUint(b, r.Uint64(), 16)
	}
	b = append(b, `" "outbound|8080||orders.mesh.svc.cluster.local" ua=`...)
	for len(b)-start < target-1 {
		b = append(b, "abcdefghijklmnopqrstuvwxyz0123456789"[r.IntN(36)])
	}
	return append(b[:start+target-1], '\n')
}
