package restorer

import (
	"io/fs"
	"os"
	"time"

	"github.com/meshbackup/backupd/backupd/snapshot"
)

// mkdir makes the directory name in dir, or takes the one there, which it
// makes writable and searchable for its owner until the directory's own
// metadata is set, once its entries are restored: a rerun of a restore whose earlier run set a
// directory to 0555 must still be able to write into it.
func (r *Restorer) mkdir(dir *os.Root, name string) error {
	fi, err := dir.Lstat(name)
	if err == nil {
		if fi.IsDir() {
			if fi.Mode().Perm()&0o700 != 0o700 {
				// Not owning it is no reason to give up: group or other
				// permissions may still let the restore in.
				_ = dir.Chmod(name, fi.Mode().Perm()|0o700)
			}
			return nil
		}
		if err := dir.RemoveAll(name); err != nil {
			return err
		}
	}
	return dir.Mkdir(name, 0o700)
}

func (r *Restorer) symlink(dir *os.Root, name string, n snapshot.Node) error {
	if cur, err := dir.Readlink(name); err == nil && cur == n.Target {
		return r.setOwner(dir, name, n, true)
	}
	if _, err := dir.Lstat(name); err == nil {
		if err := dir.RemoveAll(name); err != nil {
			return err
		}
	}
	if err := dir.Symlink(n.Target, name); err != nil {
		return err
	}
	return r.setOwner(dir, name, n, true)
}

func (r *Restorer) setOwner(dir *os.Root, name string, n snapshot.Node, link bool) error {
	if !*r.opt.Owner {
		return nil
	}
	if link {
		return dir.Lchown(name, int(n.UID), int(n.GID))
	}
	return dir.Chown(name, int(n.UID), int(n.GID))
}

func fileMode(n snapshot.Node) fs.FileMode {
	return n.Mode.Perm() | n.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
}

func (r *Restorer) setMeta(dir *os.Root, name string, n snapshot.Node) error {
	if err := r.setOwner(dir, name, n, false); err != nil {
		return err
	}
	if err := dir.Chmod(name, fileMode(n)); err != nil {
		return err
	}
	mt := time.Unix(0, n.MtimeNS)
	return dir.Chtimes(name, mt, mt)
}
