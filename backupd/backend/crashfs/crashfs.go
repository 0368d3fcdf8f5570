// Package crashfs is an in-memory file system for crash tests of the local
// backend (docs/DESIGN.md §8 scenario 3: lost unsynced writes on the repository host).
// It keeps what a real kernel would have on disk apart from what is only in
// the page cache: file contents become durable at File.Sync, directory
// entries (creates, links, removes) at SyncDir of their directory. Crash
// throws away everything that was not made durable.
//
// Imports: backend and backend/local (it implements local.FS); only tests
// import it. Like all of the engine it never imports Prometheus, collectors/
// or exporter/ (docs/DESIGN.md §2.3).
package crashfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/meshbackup/backupd/backupd/backend/local"
)

type inode struct {
	data   []byte // page cache
	synced []byte // on disk
	mtime  time.Time
}

// FS is a crashable in-memory file system. Directories are durable as soon
// as they exist.
type FS struct {
	mu       sync.Mutex
	volatile map[string]map[string]*inode // dir -> name -> inode
	durable  map[string]map[string]*inode
}

var _ local.FS = (*FS)(nil)

// New returns an empty file system with a root directory "/".
func New() *FS {
	return &FS{volatile: map[string]map[string]*inode{"/": {}}, durable: map[string]map[string]*inode{"/": {}}}
}

// Crash loses every write that was not synced.
func (c *FS) Crash() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.volatile = map[string]map[string]*inode{}
	for d, ents := range c.durable {
		m := map[string]*inode{}
		for n, ino := range ents {
			ino.data = append([]byte(nil), ino.synced...)
			m[n] = ino
		}
		c.volatile[d] = m
	}
}

func split(name string) (string, string) {
	name = filepath.Clean(name)
	return filepath.Dir(name), filepath.Base(name)
}

func pathErr(op, name string, err error) error { return &fs.PathError{Op: op, Path: name, Err: err} }

// OpenFile opens or creates a file.
func (c *FS) OpenFile(name string, flag int, perm fs.FileMode) (local.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dir, base := split(name)
	ents, ok := c.volatile[dir]
	if !ok {
		return nil, pathErr("open", name, fs.ErrNotExist)
	}
	if _, isDir := c.volatile[filepath.Clean(name)]; isDir {
		return nil, pathErr("open", name, errors.New("is a directory"))
	}
	ino, ok := ents[base]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, pathErr("open", name, fs.ErrExist)
	case !ok && flag&os.O_CREATE == 0:
		return nil, pathErr("open", name, fs.ErrNotExist)
	case !ok:
		ino = &inode{mtime: time.Now()}
		ents[base] = ino
	}
	if flag&os.O_TRUNC != 0 {
		ino.data = nil
	}
	return &file{c: c, ino: ino, name: name}, nil
}

// Link adds a directory entry for an existing file.
func (c *FS) Link(oldname, newname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	od, ob := split(oldname)
	ino, ok := c.volatile[od][ob]
	if !ok {
		return pathErr("link", oldname, fs.ErrNotExist)
	}
	nd, nb := split(newname)
	ents, ok := c.volatile[nd]
	if !ok {
		return pathErr("link", newname, fs.ErrNotExist)
	}
	if _, exists := ents[nb]; exists {
		return pathErr("link", newname, fs.ErrExist)
	}
	ents[nb] = ino
	return nil
}

// Remove deletes a directory entry.
func (c *FS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, b := split(name)
	if _, ok := c.volatile[d][b]; !ok {
		return pathErr("remove", name, fs.ErrNotExist)
	}
	delete(c.volatile[d], b)
	return nil
}

// MkdirAll creates directories (durable at once).
func (c *FS) MkdirAll(name string, perm fs.FileMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	name = filepath.Clean(name)
	for p := name; ; p = filepath.Dir(p) {
		if _, ok := c.volatile[p]; !ok {
			c.volatile[p] = map[string]*inode{}
			c.durable[p] = map[string]*inode{}
		}
		if p == "/" || p == "." {
			return nil
		}
	}
}

type dirEntry struct {
	name  string
	isDir bool
	info  fs.FileInfo
}

func (d dirEntry) Name() string               { return d.name }
func (d dirEntry) IsDir() bool                { return d.isDir }
func (d dirEntry) Type() fs.FileMode          { return d.info.Mode().Type() }
func (d dirEntry) Info() (fs.FileInfo, error) { return d.info, nil }

// ReadDir lists a directory: files and subdirectories.
func (c *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name = filepath.Clean(name)
	ents, ok := c.volatile[name]
	if !ok {
		return nil, pathErr("readdir", name, fs.ErrNotExist)
	}
	var out []fs.DirEntry
	for n, ino := range ents {
		out = append(out, dirEntry{name: n, info: fileInfo{name: n, size: int64(len(ino.data)), mtime: ino.mtime}})
	}
	for d := range c.volatile {
		if d != name && filepath.Dir(d) == name {
			out = append(out, dirEntry{name: filepath.Base(d), isDir: true, info: fileInfo{name: filepath.Base(d), dir: true}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// Stat describes a file or directory.
func (c *FS) Stat(name string) (fs.FileInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name = filepath.Clean(name)
	if _, ok := c.volatile[name]; ok {
		return fileInfo{name: filepath.Base(name), dir: true}, nil
	}
	d, b := split(name)
	ino, ok := c.volatile[d][b]
	if !ok {
		return nil, pathErr("stat", name, fs.ErrNotExist)
	}
	return fileInfo{name: b, size: int64(len(ino.data)), mtime: ino.mtime}, nil
}

// SyncDir makes a directory's entries durable.
func (c *FS) SyncDir(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	name = filepath.Clean(name)
	ents, ok := c.volatile[name]
	if !ok {
		return pathErr("fsync", name, fs.ErrNotExist)
	}
	m := map[string]*inode{}
	for n, ino := range ents {
		m[n] = ino
	}
	c.durable[name] = m
	return nil
}

type fileInfo struct {
	name  string
	size  int64
	dir   bool
	mtime time.Time
}

func (f fileInfo) Name() string { return f.name }
func (f fileInfo) Size() int64  { return f.size }
func (f fileInfo) Mode() fs.FileMode {
	if f.dir {
		return fs.ModeDir | 0o700
	}
	return 0o600
}
func (f fileInfo) ModTime() time.Time { return f.mtime }
func (f fileInfo) IsDir() bool        { return f.dir }
func (f fileInfo) Sys() any           { return nil }

type file struct {
	c    *FS
	ino  *inode
	name string
	off  int64
}

func (f *file) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *file) Write(p []byte) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	end := f.off + int64(len(p))
	if end > int64(len(f.ino.data)) {
		f.ino.data = append(f.ino.data, make([]byte, end-int64(len(f.ino.data)))...)
	}
	copy(f.ino.data[f.off:], p)
	f.off = end
	return len(p), nil
}

func (f *file) Seek(offset int64, whence int) (int64, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	switch whence {
	case io.SeekStart:
		f.off = offset
	case io.SeekCurrent:
		f.off += offset
	case io.SeekEnd:
		f.off = int64(len(f.ino.data)) + offset
	}
	return f.off, nil
}

func (f *file) Sync() error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	f.ino.synced = append([]byte(nil), f.ino.data...)
	return nil
}

func (f *file) Close() error { return nil }

func (f *file) Stat() (fs.FileInfo, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	return fileInfo{name: filepath.Base(f.name), size: int64(len(f.ino.data)), mtime: f.ino.mtime}, nil
}
