// Package regfile opens regular files for reading safely: never through a
// symlink in the last component, never waiting on a FIFO or device put in
// a file's place (O_NONBLOCK: opening one returns at once), and only a
// regular file (fstat after the open). The backup opens source files
// relative to the directory handle its scan listed them from (OpenAt), so
// no symlink swapped in for a directory is followed and path length is no
// limit; the daemon's scrub and drill open files beneath an os.Root
// (OpenInRoot). docs/DESIGN.md §8 scenarios 37 and 38.
//
// O_NONBLOCK stays set on the returned file: it changes nothing for
// reading a regular file.
//
// Imports: the standard library and x/sys/unix only. Like all of the engine
// it never imports Prometheus, collectors/ or exporter/ (docs/DESIGN.md
// §2.3).
package regfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNotRegular means the name is not a regular file (now): a FIFO, socket,
// device or directory was found in its place.
var ErrNotRegular = errors.New("not a regular file")

const openFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC

// OpenAt opens the file name in the open directory dirfd for reading, as
// described in the package comment, without updating its access time where
// the file's owner allows it. path names the file in errors and becomes
// the *os.File's name. A symlink in name's place gives ELOOP, a file
// replaced by anything but a regular file ErrNotRegular (in a
// *fs.PathError). It returns the file's fstat.
func OpenAt(dirfd int, name, path string) (*os.File, *unix.Stat_t, error) {
	fd, err := openat(dirfd, name, openFlags|unix.O_NOATIME)
	if errors.Is(err, unix.EPERM) {
		fd, err = openat(dirfd, name, openFlags)
	}
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := retryEINTR(func() error { return unix.Fstat(fd, &st) }); err != nil {
		_ = unix.Close(fd)
		return nil, nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = unix.Close(fd)
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, typeName(st.Mode))}
	}
	return os.NewFile(uintptr(fd), path), &st, nil
}

// OpenInRoot opens the file at the slash-separated relative path name
// beneath root for reading (every component is opened relative to the one
// before, so path length is no limit and nothing outside root is reached),
// as described in the package comment. A symlink at name is followed only
// within root. It returns the file's fstat as an fs.FileInfo.
func OpenInRoot(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: f.Name(), Err: fmt.Errorf("%w (%s)", ErrNotRegular, fi.Mode().Type())}
	}
	return f, fi, nil
}

func openat(dirfd int, name string, flags int) (int, error) {
	var fd int
	err := retryEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, name, flags, 0)
		return err
	})
	return fd, err
}

func retryEINTR(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	}
	return fmt.Sprintf("type %#o", mode&unix.S_IFMT)
}
