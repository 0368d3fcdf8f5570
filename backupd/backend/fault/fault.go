// Package fault wraps a backend to inject failures, for tests of the
// engine's crash safety (docs/DESIGN.md §8, e.g. scenarios 1 and 6).
//
// Imports: backend only; only tests import it. Like all of the engine it
// never imports Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package fault

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"

	"github.com/meshbackup/backupd/backupd/backend"
)

// Op names a backend operation.
type Op string

// Operations the hook sees.
const (
	OpSave   Op = "save"
	OpLoad   Op = "load"
	OpList   Op = "list"
	OpRemove Op = "remove"
	OpStat   Op = "stat"
)

// ErrCrashed is returned for every operation after a simulated crash.
var ErrCrashed = errors.New("fault: simulated crash")

// ErrNoSpace is the error the ENOSPC fault returns.
var ErrNoSpace = syscall.ENOSPC

// Hook decides, before an operation runs, whether it fails. A non-nil error
// is returned instead of running it.
type Hook func(op Op, h backend.Handle) error

// Backend runs Hook before each operation of the wrapped backend.
type Backend struct {
	backend.Backend
	Hook Hook
}

var (
	_ backend.Backend   = (*Backend)(nil)
	_ backend.Unwrapper = (*Backend)(nil)
)

// Unwrap returns the wrapped backend, so that backend.As finds its optional
// features.
func (b *Backend) Unwrap() backend.Backend { return b.Backend }

// Save consults the hook, then saves.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	if err := b.Hook(OpSave, h); err != nil {
		return err
	}
	return b.Backend.Save(ctx, h, rd)
}

// Load consults the hook, then loads.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := b.Hook(OpLoad, h); err != nil {
		return err
	}
	return b.Backend.Load(ctx, h, length, offset, fn)
}

// Stat consults the hook, then stats.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := b.Hook(OpStat, h); err != nil {
		return backend.FileInfo{}, err
	}
	return b.Backend.Stat(ctx, h)
}

// List consults the hook, then lists.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := b.Hook(OpList, backend.Handle{Type: t}); err != nil {
		return err
	}
	return b.Backend.List(ctx, t, fn)
}

// Remove consults the hook, then removes.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := b.Hook(OpRemove, h); err != nil {
		return err
	}
	return b.Backend.Remove(ctx, h)
}

// Crasher is a Hook that lets the first N mutating operations (saves and
// removes) through and then fails everything, as if the process had died at
// that point: nothing after the crash point reaches the backend.
type Crasher struct {
	mu      sync.Mutex
	allowed int
	seen    int
	crashed bool
	// At records the operation that crashed.
	At string
}

// NewCrasher crashes at the (n+1)th mutating operation.
func NewCrasher(n int) *Crasher { return &Crasher{allowed: n} }

// Hook implements Hook.
func (c *Crasher) Hook(op Op, h backend.Handle) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return ErrCrashed
	}
	if op == OpSave || op == OpRemove {
		if c.seen == c.allowed {
			c.crashed = true
			c.At = string(op) + " " + h.String()
			return ErrCrashed
		}
		c.seen++
	}
	return nil
}

// Crashed reports whether the crash point was reached.
func (c *Crasher) Crashed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crashed
}

// Mutations returns how many mutating operations went through.
func (c *Crasher) Mutations() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen
}
