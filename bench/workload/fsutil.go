package workload

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// mkdir creates dir with mode 0755 regardless of the umask (it may exist).
func mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o755)
}

// writeFile writes data in place (create or truncate) and forces perm.
func writeFile(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeFileAtomic writes data to a temporary file next to path and renames it
// over path, the way Envoy/Istio/Consul replace whole files.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := writeFile(tmp, data, perm); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// makeSocket leaves a unix socket file at path (a bound, closed listener
// whose file is not unlinked). Long paths are bound through /proc/self/fd to
// stay within the sun_path limit.
func makeSocket(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	addr := path
	if len(path) >= 100 {
		d, err := os.Open(filepath.Dir(path))
		if err != nil {
			return err
		}
		defer d.Close()
		addr = fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), filepath.Base(path))
		if len(addr) >= 100 {
			return fmt.Errorf("workload: socket name too long: %s", path)
		}
	}
	l, err := net.Listen("unix", addr)
	if err != nil {
		return err
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := l.Close(); err != nil {
		return err
	}
	return os.Chmod(path, 0o660)
}

// isSocket reports whether path is a unix socket.
func isSocket(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&fs.ModeSocket != 0
}
