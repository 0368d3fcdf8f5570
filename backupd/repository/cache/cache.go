package cache

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
)

var _ repository.Cache = (*Dir)(nil)

// DefaultRoot is the directory holding the caches of a user's
// repositories, one directory per repository id:
// ${XDG_CACHE_HOME:-~/.cache}/backupd/repos.
func DefaultRoot() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	return filepath.Join(base, "backupd", "repos"), nil
}

// Opener returns what repository.Options.Cache wants: the cache of the
// repository with id repoID in root/<repoID>.
func Opener(root string) func(repoID string) (repository.Cache, error) {
	return func(repoID string) (repository.Cache, error) {
		if err := (backend.Handle{Type: backend.IndexFile, Name: repoID}).Valid(); err != nil {
			return nil, fmt.Errorf("cache: repository id %q: %w", repoID, err)
		}
		return Open(filepath.Join(root, repoID))
	}
}

// Types are the object types a cache holds; Save refuses every other one
// (config, keys and locks are never cached: see repository.Cache).
var Types = []backend.FileType{backend.IndexFile, backend.SnapshotFile, backend.PackFile}

// tmpPrefix starts the names of copies being written.
const tmpPrefix = ".tmp-"

// staleTemp is the age after which List removes a temp file: a writer that
// died left it.
const staleTemp = time.Hour

// cacheDirTag is the content of CACHEDIR.TAG
// (https://bford.info/cachedir/): backup tools that honour it skip the
// directory.
const cacheDirTag = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by backupd.\n# For information about cache directory tags see https://bford.info/cachedir/\n"

// Dir is the cache of one repository in a directory. It is safe for
// concurrent use, also by several processes.
type Dir struct {
	dir string
}

// Open returns the cache in dir, creating it (and its parents) with mode
// 0700, and setting that mode on dir if it exists with another.
func Open(dir string) (*Dir, error) {
	if dir == "" {
		return nil, errors.New("cache: no directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	for _, t := range Types {
		if err := os.Mkdir(filepath.Join(dir, string(t)), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	tag := filepath.Join(dir, "CACHEDIR.TAG")
	if _, err := os.Stat(tag); errors.Is(err, fs.ErrNotExist) {
		_ = writeFile(dir, tag, []byte(cacheDirTag)) // a missing tag costs nothing here
	}
	return &Dir{dir: dir}, nil
}

// Path returns the cache's directory.
func (d *Dir) Path() string { return d.dir }

// path returns the file of h's copy, refusing types the cache does not
// hold and names that are no object's (Handle.Valid: no separators, no
// leading dot).
func (d *Dir) path(h backend.Handle) (string, error) {
	if !holds(h.Type) {
		return "", fmt.Errorf("cache: %s objects are never cached", h.Type)
	}
	if err := h.Valid(); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	return filepath.Join(d.dir, string(h.Type), h.Name), nil
}

func holds(t backend.FileType) bool {
	for _, c := range Types {
		if c == t {
			return true
		}
	}
	return false
}

// Load returns the copy of h; an error matching fs.ErrNotExist when there
// is none. The bytes are not verified: the caller checks them.
func (d *Dir) Load(h backend.Handle) ([]byte, error) {
	p, err := d.path(h)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return b, nil
}

// Save stores data as the copy of h: a temp file in the type's directory,
// renamed into place.
func (d *Dir) Save(h backend.Handle, data []byte) error {
	p, err := d.path(h)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Dir(p), p, data); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// writeFile writes data to name through a temp file in dir. No fsync: a
// copy torn by a crash fails its check when read (see the package doc).
func writeFile(dir, name string, data []byte) (err error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// Remove removes the copy of h; a missing one is not an error.
func (d *Dir) Remove(h backend.Handle) error {
	p, err := d.path(h)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// List returns the names of the copies of type t, and removes the temp
// files of writers that died (older than an hour).
func (d *Dir) List(t backend.FileType) ([]string, error) {
	if !holds(t) {
		return nil, nil
	}
	dir := filepath.Join(d.dir, string(t))
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
				_ = os.Remove(filepath.Join(dir, name))
			}
			continue
		}
		if (backend.Handle{Type: t, Name: name}).Valid() == nil && e.Type().IsRegular() {
			names = append(names, name)
		}
	}
	return names, nil
}
