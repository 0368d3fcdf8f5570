// Package mem is an in-memory backend for tests and benchmarks.
//
// Imports: backend only. Like all of the engine it never imports Prometheus,
// collectors/ or exporter/ (docs/DESIGN.md §2.3).
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/meshbackup/backupd/backupd/backend"
)

// Mem keeps objects in a map.
type Mem struct {
	mu   sync.Mutex
	data map[backend.Handle][]byte
}

var _ backend.Backend = (*Mem)(nil)

// New returns an empty backend.
func New() *Mem { return &Mem{data: make(map[backend.Handle][]byte)} }

func norm(h backend.Handle) backend.Handle {
	if h.Type == backend.ConfigFile {
		h.Name = ""
	}
	return h
}

// Save stores a copy of rd's content.
func (m *Mem) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := rd.Seek(0, io.SeekStart); err != nil {
		return err
	}
	buf, err := io.ReadAll(rd)
	if err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.data[norm(h)]; ok {
		return fmt.Errorf("save %v: %w", h, backend.ErrExists)
	}
	m.data[norm(h)] = buf
	return nil
}

// Load serves a range of an object.
func (m *Mem) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	buf, ok := m.data[norm(h)]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("load %v: %w", h, backend.ErrNotFound)
	}
	if offset < 0 || length < 0 || offset > int64(len(buf)) {
		return fmt.Errorf("load %v: offset %d out of range: %w", h, offset, io.ErrUnexpectedEOF)
	}
	buf = buf[offset:]
	if length > 0 {
		if length > len(buf) {
			return fmt.Errorf("load %v: %w", h, io.ErrUnexpectedEOF)
		}
		buf = buf[:length]
	}
	return fn(bytes.NewReader(buf))
}

// Stat returns an object's size.
func (m *Mem) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := h.Valid(); err != nil {
		return backend.FileInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	buf, ok := m.data[norm(h)]
	if !ok {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, backend.ErrNotFound)
	}
	return backend.FileInfo{Name: h.Name, Size: int64(len(buf))}, nil
}

// List calls fn for a snapshot of the objects of type t.
func (m *Mem) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	m.mu.Lock()
	var fis []backend.FileInfo
	for h, buf := range m.data {
		if h.Type == t {
			fis = append(fis, backend.FileInfo{Name: h.Name, Size: int64(len(buf))})
		}
	}
	m.mu.Unlock()
	for _, fi := range fis {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// Remove deletes an object.
func (m *Mem) Remove(ctx context.Context, h backend.Handle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, norm(h))
	return nil
}

// Location names the backend.
func (m *Mem) Location() string { return "mem:" }

// Mutate lets tests corrupt a stored object in place. It reports whether the
// object exists.
func (m *Mem) Mutate(h backend.Handle, fn func([]byte) []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	buf, ok := m.data[norm(h)]
	if ok {
		m.data[norm(h)] = fn(buf)
	}
	return ok
}
