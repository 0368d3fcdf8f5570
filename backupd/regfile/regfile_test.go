package regfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Every kind of entry that is not a regular file is refused at once, by
// both ways of opening; a regular file opens.
func TestOnlyRegularFilesOpen(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "file"), []byte("data"), 0o644))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(os.Mkdir(filepath.Join(dir, "dir"), 0o755))
	must(os.Symlink("file", filepath.Join(dir, "link")))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "escape")))
	ln, err := net.Listen("unix", filepath.Join(dir, "sock"))
	must(err)
	defer ln.Close()
	d, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(err)
	defer unix.Close(d)
	root, err := os.OpenRoot(dir)
	must(err)
	defer root.Close()

	done := make(chan struct{})
	go func() {
		defer close(done)
		f, st, err := OpenAt(d, "file", filepath.Join(dir, "file"))
		if err != nil || st.Size != 4 {
			t.Errorf("OpenAt file: %v", err)
		} else {
			f.Close()
		}
		f, fi, err := OpenInRoot(root, "file")
		if err != nil || fi.Size() != 4 {
			t.Errorf("OpenInRoot file: %v", err)
		} else {
			f.Close()
		}
		for _, name := range []string{"fifo", "dir", "sock", "link", "escape", "absent"} {
			if f, _, err := OpenAt(d, name, name); err == nil {
				f.Close()
				t.Errorf("OpenAt opened %s", name)
			} else if name == "fifo" || name == "dir" {
				if !errors.Is(err, ErrNotRegular) {
					t.Errorf("OpenAt %s: %v, want ErrNotRegular", name, err)
				}
			}
			if name == "link" {
				continue // followed within the root: the file
			}
			if f, _, err := OpenInRoot(root, name); err == nil {
				f.Close()
				t.Errorf("OpenInRoot opened %s", name)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a failure guard: only a hang takes this long
		t.Fatal("opening waits")
	}
}
