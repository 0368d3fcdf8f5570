package impact

import (
	"bufio"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(v ...float64) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x*float64(time.Millisecond)))
		}
		return d
	}
	for _, tc := range []struct {
		name          string
		samples       []time.Duration
		p50, p99, max float64 // ms
		// counts of the buckets with upper bounds 1 ms, 10 ms, +Inf
		le1, le10, inf int
	}{
		{name: "none"},
		{name: "one", samples: ms(3), p50: 3, p99: 3, max: 3, le10: 1},
		{name: "odd", samples: ms(5, 1, 3), p50: 3, p99: 5, max: 5, le1: 1, le10: 2},
		{name: "a stall", samples: append(ms(make([]float64, 99)...), ms(4000)...), p50: 0, p99: 0, max: 4000, le1: 99, inf: 1},
		{name: "bound is inclusive", samples: ms(1, 10), p50: 1, p99: 10, max: 10, le1: 1, le10: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := Summarize(tc.samples)
			if l.Samples != len(tc.samples) {
				t.Errorf("samples %d, want %d", l.Samples, len(tc.samples))
			}
			for _, c := range []struct {
				what      string
				got, want float64
			}{{"p50", l.P50Seconds, tc.p50}, {"p99", l.P99Seconds, tc.p99}, {"max", l.MaxSeconds, tc.max}} {
				if d := c.got*1000 - c.want; d > 1e-6 || d < -1e-6 {
					t.Errorf("%s %g ms, want %g ms", c.what, c.got*1000, c.want)
				}
			}
			if len(l.BucketBounds) != len(l.BucketCounts) || l.BucketBounds[len(l.BucketBounds)-1] != 0 {
				t.Fatalf("buckets %v %v: want one count per bound, the last bound 0 (+Inf)", l.BucketBounds, l.BucketCounts)
			}
			sum := 0
			got := map[float64]int{}
			for i, n := range l.BucketCounts {
				sum += n
				b := l.BucketBounds[i]
				switch {
				case b == 0:
					got[0] += n
				case b <= 0.001:
					got[0.001] += n
				case b <= 0.01:
					got[0.01] += n
				default:
					got[0] += n
				}
			}
			if sum != len(tc.samples) || got[0.001] != tc.le1 || got[0.01] != tc.le10 || got[0] != tc.inf {
				t.Errorf("buckets %v: ≤1ms %d, ≤10ms %d, more %d; want %d, %d, %d", l.BucketCounts, got[0.001], got[0.01], got[0], tc.le1, tc.le10, tc.inf)
			}
		})
	}
}

func TestAccessLineLengths(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for seq := range uint64(2000) {
		b := accessLine(nil, r, seq, time.Unix(1.8e9, 0))
		if len(b) < MinLine || len(b) > MaxLine || b[len(b)-1] != '\n' || strings.Count(string(b), "\n") != 1 {
			t.Fatalf("line %d: %d bytes %q", seq, len(b), b)
		}
	}
}

// TestWriterAppendsAndTimesEachLine runs the writer for a moment: every
// append it timed is a whole line in the file, each 300–500 bytes, and
// Stop returns them all summarised.
func TestWriterAppendsAndTimesEachLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "probe.log")
	w, err := Start(t.Context(), Options{Path: path, Source: dir, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	l, err := w.Stop()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	lines := 0
	for sc.Scan() {
		lines++
		if n := len(sc.Bytes()) + 1; n < MinLine || n > MaxLine {
			t.Errorf("line %d: %d bytes", lines, n)
		}
	}
	if got := len(w.Samples()); got != l.Samples {
		t.Errorf("Samples has %d, the summary %d", got, l.Samples)
	}
	if lines != l.Samples || lines < 5 {
		t.Fatalf("%d lines in the file, %d samples: want equal, and at least 5 in 300 ms at one per 10 ms", lines, l.Samples)
	}
	if l.P50Seconds <= 0 || l.P99Seconds < l.P50Seconds || l.MaxSeconds < l.P99Seconds {
		t.Errorf("summary %+v: want 0 < p50 <= p99 <= max", l)
	}
}

// TestWriterStopsWithItsContext: a writer whose context ends stops
// appending; Stop then still returns what it measured.
func TestWriterStopsWithItsContext(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "probe.log")
	ctx, cancel := context.WithCancel(t.Context())
	w, err := Start(ctx, Options{Path: path, Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-w.done
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if fi2, _ := os.Stat(path); fi2.Size() != fi.Size() {
		t.Fatalf("the file grew from %d to %d bytes after the context ended", fi.Size(), fi2.Size())
	}
	l, err := w.Stop()
	if err != nil || l.Samples == 0 {
		t.Fatalf("Stop: %+v, %v", l, err)
	}
}

// TestWriterRefusesAnotherFileSystem: the probe must share the source's
// file system, or the backup's I/O would not meet it.
func TestWriterRefusesAnotherFileSystem(t *testing.T) {
	src := t.TempDir()
	other := "/dev/shm"
	if same, err := SameFileSystem(other, src); err != nil || same {
		t.Skipf("no second file system to test with (%s: same %v, %v)", other, same, err)
	}
	_, err := Start(t.Context(), Options{Path: filepath.Join(other, "probe-test.log"), Source: src})
	if err == nil || !strings.Contains(err.Error(), "is not on the file system of the source") {
		t.Fatalf("Start on %s for a source in %s: %v", other, src, err)
	}
	if _, err := os.Stat(filepath.Join(other, "probe-test.log")); err == nil {
		t.Error("the refused probe created its file")
	}
}
