// Package faultpoint lets crash tests kill the process at a named point of a
// write path. Points are armed from the BACKUPD_FAULT environment variable,
// read once in main: "NAME" kills at the first hit of NAME, "NAME:N" at the
// Nth. An unarmed Set (or a nil *Set) costs one nil check per hit.
//
// Imports: the standard library only. Like all of the engine it never imports
// Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package faultpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The fault points of the engine (docs/DESIGN.md §8 scenarios 1 and 2, and
// the key changes' scenario).
const (
	AfterChunk         = "after-chunk"
	AfterPackPut       = "after-pack-put"
	AfterIndexWrite    = "after-index-write"
	AfterSnapshotWrite = "after-snapshot-write"
	RestoreMidFile     = "restore-mid-file"
	// AfterKeyWrite: a new key file is stored (key add, key passwd).
	AfterKeyWrite = "after-key-write"
	// BeforeKeyRemove and AfterKeyRemove: around the removal of a key
	// file (key remove, key passwd).
	BeforeKeyRemove = "before-key-remove"
	AfterKeyRemove  = "after-key-remove"
	// S3AfterPart: a part of a multipart upload to an S3 store is stored,
	// the upload not yet completed (docs/DESIGN.md §8, a writer killed
	// mid-multipart).
	S3AfterPart = "s3-after-part"
)

// Names lists every fault point.
var Names = []string{AfterChunk, AfterPackPut, AfterIndexWrite, AfterSnapshotWrite, RestoreMidFile,
	AfterKeyWrite, BeforeKeyRemove, AfterKeyRemove, S3AfterPart}

// Set is an armed fault point.
type Set struct {
	mu    sync.Mutex
	name  string
	after int
	hits  int
	kill  func()
	// each, if set, is called at every hit instead of kill at the Nth.
	each func(n int)
}

// Parse arms a point from a spec such as "after-pack-put:3". An empty spec
// returns nil (nothing armed).
func Parse(spec string) (*Set, error) {
	if spec == "" {
		return nil, nil
	}
	name, n, found := strings.Cut(spec, ":")
	after := 1
	if found {
		v, err := strconv.Atoi(n)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("BACKUPD_FAULT %q: count %q must be a positive integer", spec, n)
		}
		after = v
	}
	known := false
	for _, k := range Names {
		known = known || k == name
	}
	if !known {
		return nil, fmt.Errorf("BACKUPD_FAULT %q: unknown fault point %q (known: %s)", spec, name, strings.Join(Names, ", "))
	}
	return &Set{name: name, after: after, kill: func() {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns; the signal ends the process
	}}, nil
}

// NewFunc arms name to call fn (instead of killing) at its nth hit; for
// in-process tests.
func NewFunc(name string, n int, fn func()) *Set {
	return &Set{name: name, after: n, kill: fn}
}

// NewHook arms name to call fn at every hit, with the hit's number (from
// 1), on the goroutine that hit it; for in-process tests that hold a run
// at a point (fn blocks) or change its input there. Hits may come from
// several goroutines at once; fn must be safe for that.
func NewHook(name string, fn func(n int)) *Set {
	return &Set{name: name, each: fn}
}

// Hit marks that the program passed point name.
func (s *Set) Hit(name string) {
	if s == nil || name != s.name {
		return
	}
	s.mu.Lock()
	s.hits++
	n := s.hits
	s.mu.Unlock()
	switch {
	case s.each != nil:
		s.each(n)
	case n == s.after:
		s.kill()
	}
}
