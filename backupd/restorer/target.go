package restorer

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// markerPrefix starts the name of the marker that sits beside a target this
// restore created, until the restore has finished with it: a rerun after an
// interruption knows the target is its own and still gives it the source
// directory's metadata. It is kept outside the target, in the directory the
// restore created the target in, so no entry of a snapshot can be mistaken
// for it (a snapshot may hold any name, ".backupd-restoring" too).
const markerPrefix = ".backupd-restoring."

// MarkerPath returns the path of the marker of an unfinished restore into
// target: beside it, never inside.
func MarkerPath(target string) string {
	t := filepath.Clean(target)
	return filepath.Join(filepath.Dir(t), markerPrefix+filepath.Base(t))
}

// targetIsOurs reports whether the target may take the source directory's
// metadata: this restore created it, an interrupted run of it did (the
// marker is beside it), or it is an empty directory (or holds only an empty
// lost+found) that is not sticky or writable by everyone.
func (r *Restorer) targetIsOurs(root *os.Root, created bool, marker string) bool {
	if created {
		return true
	}
	if fi, err := os.Lstat(marker); err == nil && fi.Mode().IsRegular() {
		return true
	}
	fi, err := root.Stat(".")
	if err != nil || fi.Mode()&fs.ModeSticky != 0 || fi.Mode().Perm()&0o002 != 0 {
		return false
	}
	d, err := root.Open(".")
	if err != nil {
		return false
	}
	names, err := d.Readdirnames(-1)
	_ = d.Close()
	if err != nil {
		return false
	}
	for _, name := range names {
		if name != "lost+found" {
			return false
		}
		lf, err := root.Open(name)
		if err != nil {
			return false
		}
		inside, err := lf.Readdirnames(1)
		_ = lf.Close()
		if len(inside) > 0 || err != nil && !errors.Is(err, io.EOF) {
			return false
		}
	}
	return true
}
