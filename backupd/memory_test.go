package main

import (
	"runtime/debug"
	"testing"
)

// The soft memory limit is the budget, or 90% of the container's cgroup
// limit when that is smaller; GOMEMLIMIT leaves it alone.
func TestMemoryLimitFollowsCgroup(t *testing.T) {
	share := func(n uint64) int64 { return int64(float64(n) * 0.9) }
	for _, tc := range []struct {
		name   string
		blobs  int
		extra  int64
		cgroup uint64
		want   int64
	}{
		{"no cgroup limit", 0, 0, 0, 48 << 20},
		{"index grows the budget", 1 << 20, 0, 0, 48<<20 + 256<<20},
		{"a restore's read-ahead grows it", 1000, 48 << 20, 0, 96<<20 + 1000*256},
		{"a small container", 1 << 20, 0, 64 << 20, share(64 << 20)},
		{"a small container caps a restore", 1000, 48 << 20, 64 << 20, share(64 << 20)},
		{"a large container", 1000, 0, 4 << 30, 48<<20 + 1000*256},
	} {
		if got := memoryLimit(tc.blobs, tc.extra, tc.cgroup); got != tc.want {
			t.Errorf("%s: memoryLimit(%d, %d, %d) = %d, want %d", tc.name, tc.blobs, tc.extra, tc.cgroup, got, tc.want)
		}
	}
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	g := &globalOptions{env: environment{CgroupMemory: 40 << 20}}
	g.applyMemoryLimit(1 << 20)
	if got := debug.SetMemoryLimit(-1); got != share(40<<20) {
		t.Fatalf("limit under a 40 MiB cgroup: %d", got)
	}
	g.env.GoMemLimit = true
	debug.SetMemoryLimit(123 << 20)
	g.applyMemoryLimit(0)
	if got := debug.SetMemoryLimit(-1); got != 123<<20 {
		t.Fatalf("GOMEMLIMIT set, yet the limit changed to %d", got)
	}
}
