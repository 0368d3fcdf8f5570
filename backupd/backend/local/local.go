// Package local stores repository objects as files in a directory.
//
// Layout: config, keys/<name>, data/<first two chars>/<name>, index/<name>,
// snapshots/<name>, locks/<name>, markers/<name>, results/<name>; tmp/ holds
// files being written. A write goes to tmp/, is fsynced, hard-linked to its
// final name (which fails if the name exists: objects are immutable), and the
// directory is fsynced before Save returns.
//
// Imports: backend and the standard library; no other engine package. Like
// all of the engine it never imports Prometheus, collectors/ or exporter/
// (docs/DESIGN.md §2.3).
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/meshbackup/backupd/backupd/backend"
)

// Local is a backend in a local directory.
type Local struct {
	root string
	fs   FS
}

// Local offers the optional features TempDirer, TempCleaner and
// SpaceReporter (see package backend).
var (
	_ backend.Backend       = (*Local)(nil)
	_ backend.TempDirer     = (*Local)(nil)
	_ backend.TempCleaner   = (*Local)(nil)
	_ backend.SpaceReporter = (*Local)(nil)
)

// Options configure a Local backend.
type Options struct {
	// FS defaults to the real file system.
	FS FS
}

// Open returns a backend for an existing repository directory.
func Open(root string, opt Options) (*Local, error) {
	l := newLocal(root, opt)
	fi, err := l.fs.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("open repository directory %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open repository directory %s: not a directory", root)
	}
	return l, nil
}

// Create makes the directory layout under root (which may exist but must not
// hold a repository) and returns the backend.
func Create(root string, opt Options) (*Local, error) {
	l := newLocal(root, opt)
	if _, err := l.fs.Stat(filepath.Join(root, "config")); err == nil {
		return nil, fmt.Errorf("create repository in %s: a repository already exists there", root)
	}
	dirs := []string{"tmp"}
	for _, t := range backend.Types {
		if t != backend.ConfigFile {
			dirs = append(dirs, string(t))
		}
	}
	for i := 0; i < 256; i++ {
		dirs = append(dirs, filepath.Join("data", fmt.Sprintf("%02x", i)))
	}
	for _, d := range dirs {
		if err := l.fs.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("create repository directory: %w", err)
		}
	}
	for _, d := range append([]string{".", "data"}, dirs...) {
		if err := l.fs.SyncDir(filepath.Join(root, d)); err != nil {
			return nil, fmt.Errorf("sync repository directory %s: %w", d, err)
		}
	}
	return l, nil
}

func newLocal(root string, opt Options) *Local {
	if opt.FS == nil {
		opt.FS = OS{}
	}
	return &Local{root: root, fs: opt.FS}
}

// Location returns the repository directory.
func (l *Local) Location() string { return l.root }

// TempDir returns a directory on the repository's file system for scratch
// files, so that copying them into objects stays on one device.
func (l *Local) TempDir() string { return filepath.Join(l.root, "tmp") }

// FreeBytes returns the space left to an unprivileged writer on the file
// system of the repository directory (statfs: available blocks times the
// block size).
func (l *Local) FreeBytes() (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(l.root, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", l.root, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func (l *Local) dir(t backend.FileType, name string) string {
	if t == backend.PackFile {
		return filepath.Join(l.root, "data", name[:2])
	}
	if t == backend.ConfigFile {
		return l.root
	}
	return filepath.Join(l.root, string(t))
}

func (l *Local) path(h backend.Handle) string {
	if h.Type == backend.ConfigFile {
		return filepath.Join(l.root, "config")
	}
	return filepath.Join(l.dir(h.Type, h.Name), h.Name)
}

// Save writes the object durably: temp file, fsync, link to the final name,
// fsync the directory.
func (l *Local) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) (err error) {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	final := l.path(h)
	if _, err := l.fs.Stat(final); err == nil {
		return fmt.Errorf("save %v: %w", h, backend.ErrExists)
	}
	if f, ok := rd.(*os.File); ok && l.ownTemp(f) {
		return l.saveTemp(h, f, final)
	}
	if _, err := rd.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("save %v: rewind: %w", h, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(l.root, "tmp", h.Name+"-"+hex.EncodeToString(rnd[:])+".tmp")
	f, err := l.fs.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	// Invariant: the temp file never outlives Save, whatever happens.
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		_ = l.fs.Remove(tmp)
	}()
	if _, err := io.Copy(f, readerOnly{rd}); err != nil {
		return fmt.Errorf("save %v: write: %w", h, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save %v: fsync: %w", h, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("save %v: close: %w", h, cerr)
	}
	return l.commit(h, tmp, final)
}

// commit links a complete, fsynced temp file to its final name (failing if
// the name exists: objects are immutable) and makes the entry durable.
func (l *Local) commit(h backend.Handle, tmp, final string) error {
	err := l.fs.Link(tmp, final)
	if errors.Is(err, fs.ErrNotExist) && h.Type != backend.PackFile && h.Type != backend.ConfigFile {
		// A type added after the repository was created (damaged/) has
		// no directory yet: make it durably, then link.
		dir := filepath.Dir(final)
		if merr := l.fs.MkdirAll(dir, 0o700); merr != nil {
			return fmt.Errorf("save %v: create directory: %w", h, merr)
		}
		if serr := l.fs.SyncDir(l.root); serr != nil {
			return fmt.Errorf("save %v: fsync directory: %w", h, serr)
		}
		err = l.fs.Link(tmp, final)
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("save %v: %w", h, backend.ErrExists)
		}
		return fmt.Errorf("save %v: link: %w", h, err)
	}
	if err := l.fs.SyncDir(filepath.Dir(final)); err != nil {
		return fmt.Errorf("save %v: fsync directory: %w", h, err)
	}
	return nil
}

// ownTemp reports whether f is a file in this repository's tmp/ on the real
// file system, which Save can link into place instead of copying.
func (l *Local) ownTemp(f *os.File) bool {
	_, isOS := l.fs.(OS)
	return isOS && filepath.Dir(f.Name()) == l.TempDir()
}

// saveTemp stores a file already written in tmp/: fsync it, link it to its
// final name, fsync the directory. The caller still owns and removes f.
func (l *Local) saveTemp(h backend.Handle, f *os.File, final string) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save %v: fsync: %w", h, err)
	}
	return l.commit(h, f.Name(), final)
}

// readerOnly hides WriterTo/ReaderFrom tricks that would bypass the FS.
type readerOnly struct{ io.Reader }

// Load streams part of an object to fn.
func (l *Local) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := l.fs.OpenFile(l.path(h), os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("load %v: %w", h, backend.ErrNotFound)
		}
		return fmt.Errorf("load %v: %w", h, err)
	}
	defer f.Close()
	if offset < 0 || length < 0 {
		return fmt.Errorf("load %v: negative offset or length", h)
	}
	var rd io.Reader = io.NewSectionReader(f, offset, 1<<62)
	if length > 0 {
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("load %v: %w", h, err)
		}
		if offset+int64(length) > fi.Size() {
			return fmt.Errorf("load %v: range %d+%d beyond size %d: %w", h, offset, length, fi.Size(), io.ErrUnexpectedEOF)
		}
		rd = io.NewSectionReader(f, offset, int64(length))
	}
	return fn(rd)
}

// Stat returns the object's size.
func (l *Local) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := h.Valid(); err != nil {
		return backend.FileInfo{}, err
	}
	fi, err := l.fs.Stat(l.path(h))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, backend.ErrNotFound)
		}
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, err)
	}
	return backend.FileInfo{Name: h.Name, Size: fi.Size()}, nil
}

// List calls fn for each object of type t.
func (l *Local) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if t == backend.ConfigFile {
		fi, err := l.Stat(ctx, backend.Handle{Type: t})
		if errors.Is(err, backend.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(fi)
	}
	dirs := []string{filepath.Join(l.root, string(t))}
	if t == backend.PackFile {
		dirs = dirs[:0]
		ents, err := l.fs.ReadDir(filepath.Join(l.root, "data"))
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		for _, e := range ents {
			if e.IsDir() && len(e.Name()) == 2 {
				dirs = append(dirs, filepath.Join(l.root, "data", e.Name()))
			}
		}
	}
	for _, d := range dirs {
		ents, err := l.fs.ReadDir(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("list %s: %w", t, err)
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return err
			}
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while listing
			}
			if err != nil {
				return fmt.Errorf("list %s: %w", t, err)
			}
			if err := fn(backend.FileInfo{Name: e.Name(), Size: fi.Size()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove deletes an object and makes the removal durable.
func (l *Local) Remove(ctx context.Context, h backend.Handle) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := l.path(h)
	if err := l.fs.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %v: %w", h, err)
	}
	if err := l.fs.SyncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("remove %v: fsync directory: %w", h, err)
	}
	return nil
}

// CleanTemp removes leftovers in tmp/ from writers that died. Only call it
// when no writer of this host is running, e.g. under the exclusive lock.
func (l *Local) CleanTemp() error {
	ents, err := l.fs.ReadDir(l.TempDir())
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := l.fs.Remove(filepath.Join(l.TempDir(), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
