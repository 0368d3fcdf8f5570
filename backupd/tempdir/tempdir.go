// Package tempdir gives a process a directory of its own for scratch files
// (the packs a backup to object storage writes before it uploads them, the
// tree a restore drill restores), removed when the process releases it, and removes the ones that
// processes which died (SIGKILL, the out-of-memory killer, a node losing
// power) left behind, so that crashes do not fill the file system the
// directories are on (docs/DESIGN.md §3).
//
// Each directory is held by an flock(2) on it for as long as its process
// lives: the kernel drops the lock when the process dies, however it dies,
// so a directory whose lock can be taken is one nobody uses. A directory is
// made under a hidden name, locked, marked as this package's (a file named
// Marker in it), and only then renamed to its final name, so that no other
// process ever sees an unlocked directory of a live one under the final
// name. Only marked directories are removed: a user's own directory that
// happens to have the prefix (a restore target in /tmp) is never touched.
package tempdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// newPrefix marks a directory that is being made: hidden, and swept only
// when older than abandonedAfter (its maker died between mkdir and rename).
const newPrefix = ".new-"

// Marker is the file in every directory this package made: what Sweep
// looks for before it removes one.
const Marker = ".tempdir-of-a-process"

// abandonedAfter is the age after which a directory still under its hidden
// name is taken as abandoned.
const abandonedAfter = time.Hour

// Dir is a directory a process holds.
type Dir struct {
	path string
	lock *os.File
}

// Acquire removes the directories named prefix* in base that no live
// process holds (Sweep), then makes and holds a new one, empty but for
// its Marker. Sweeping is best effort:
// a directory that cannot be removed (another user's, a permission error)
// is left, and reported in the returned error only if making the new one
// fails too.
func Acquire(base, prefix string) (*Dir, error) {
	if prefix == "" || strings.ContainsRune(prefix, filepath.Separator) {
		return nil, fmt.Errorf("temp directory prefix %q: want a non-empty name without %q", prefix, filepath.Separator)
	}
	sweepErr := Sweep(base, prefix)
	tmp, err := os.MkdirTemp(base, newPrefix+prefix)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create a temp directory in %s: %w", base, err), sweepErr)
	}
	lock, err := lockDir(tmp)
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, Marker), nil, 0o600)
	}
	if err == nil {
		final := filepath.Join(base, strings.TrimPrefix(filepath.Base(tmp), newPrefix))
		if err = os.Rename(tmp, final); err == nil {
			return &Dir{path: final, lock: lock}, nil
		}
	}
	if lock != nil {
		_ = lock.Close()
	}
	_ = os.RemoveAll(tmp)
	return nil, fmt.Errorf("create a temp directory in %s: %w", base, err)
}

// Path is the directory's path.
func (d *Dir) Path() string { return d.path }

// Release removes the directory and everything in it, then drops the lock.
// It is safe to call more than once.
func (d *Dir) Release() error {
	if d == nil || d.lock == nil {
		return nil
	}
	err := RemoveAll(d.path)
	_ = d.lock.Close()
	d.lock = nil
	if err != nil {
		return fmt.Errorf("remove temp directory %s: %w", d.path, err)
	}
	return nil
}

// Sweep removes the directories named prefix* in base that this package
// made and no live process holds, and those still being made for longer
// than abandonedAfter.
func Sweep(base, prefix string) error {
	ents, err := os.ReadDir(base)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("list %s: %w", base, err)
	}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() {
			continue
		}
		path := filepath.Join(base, name)
		switch {
		case strings.HasPrefix(name, prefix):
			if fi, err := os.Lstat(filepath.Join(path, Marker)); err != nil || !fi.Mode().IsRegular() {
				continue // not one of ours
			}
			lock, err := lockDir(path)
			if errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, fs.ErrNotExist) {
				continue // held by a live process, or just released
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := RemoveAll(path); err != nil {
				errs = append(errs, fmt.Errorf("remove the temp directory %s of a dead process: %w", path, err))
			}
			_ = lock.Close()
		case strings.HasPrefix(name, newPrefix+prefix):
			// Ours by its name: a user does not name a directory so.
			fi, err := e.Info()
			if err != nil || time.Since(fi.ModTime()) < abandonedAfter {
				continue
			}
			if err := RemoveAll(path); err != nil {
				errs = append(errs, fmt.Errorf("remove the abandoned temp directory %s: %w", path, err))
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveAll removes dir and everything in it, as os.RemoveAll, making
// the directories in it writable first when that fails (a restored tree
// keeps its directories' modes, read-only ones too).
func RemoveAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// lockDir opens dir and takes an exclusive flock on it without waiting:
// unix.EWOULDBLOCK when another open file holds it, in this process or
// another.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, err
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}
