package archiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// guard bounds a wait that only a hang would exceed: a failure guard, not
// a timing assertion.
const guard = 30 * time.Second

// fileContent returns the content the snapshot sn holds for the file at
// the slash-separated path rel, and whether it holds one.
func fileContent(t *testing.T, r *repository.Repo, sn *snapshot.Snapshot, rel string) ([]byte, bool) {
	t.Helper()
	tree, err := snapshot.LoadTree(t.Context(), r, sn.Tree)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(rel, "/")
	for i, name := range parts {
		var n *snapshot.Node
		for j := range tree.Nodes {
			if tree.Nodes[j].Name == name {
				n = &tree.Nodes[j]
			}
		}
		if n == nil {
			return nil, false
		}
		if i < len(parts)-1 {
			if n.Type != snapshot.TypeDir {
				return nil, false
			}
			if tree, err = snapshot.LoadTree(t.Context(), r, *n.Subtree); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var b []byte
		for _, id := range n.Content {
			c, err := r.LoadBlob(t.Context(), repository.DataBlob, id, nil)
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, c...)
		}
		return b, n.Type == snapshot.TypeFile
	}
	return nil, false
}

// backupSwapping backs src up, calling swap (once) when a file worker is
// about to open the file at path, and fails the test if the backup does
// not finish within the guard. unblock, if set, is called on a hang to
// release the stuck worker before failing.
func backupSwapping(t *testing.T, r *repository.Repo, src, path string, swap func(), unblock func()) (*snapshot.Snapshot, *Archiver, error) {
	t.Helper()
	a, err := New(r, Options{Policy: "p"})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	a.beforeOpen = func(p string) {
		if p == path {
			once.Do(swap)
		}
	}
	type result struct {
		sn  *snapshot.Snapshot
		err error
	}
	done := make(chan result, 1)
	go func() {
		sn, err := a.Backup(t.Context(), src)
		done <- result{sn, err}
	}()
	select {
	case res := <-done:
		return res.sn, a, res.err
	case <-time.After(guard):
		if unblock != nil {
			unblock()
		}
		t.Fatalf("the backup hangs after %s was swapped", path)
		return nil, nil, nil
	}
}

// Scenario: a directory the scan listed is replaced by a symlink to a
// directory outside the source, holding a file of the same name, before a
// file worker opens its file. The worker opens the file relative to the
// directory the scan listed, so the outside file's content never enters the
// backup: the file is read from the directory listed (if it still exists
// elsewhere) or counted as vanished.
func TestDirSwappedForSymlinkIsNotFollowed(t *testing.T) {
	secret := []byte("SECRET: root-only content outside the source, never to be backed up")
	inside := []byte("inside the source")
	for _, how := range []string{"renamed away", "removed"} {
		t.Run(how, func(t *testing.T) {
			src, outside, aside := t.TempDir(), t.TempDir(), t.TempDir()
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.WriteFile(filepath.Join(outside, "f"), secret, 0o600))
			d := filepath.Join(src, "d")
			must(os.Mkdir(d, 0o755))
			must(os.WriteFile(filepath.Join(d, "f"), inside, 0o644))
			r, _ := repotest.NewMem(t)
			swap := func() {
				if how == "removed" {
					must(os.RemoveAll(d))
				} else {
					must(os.Rename(d, filepath.Join(aside, "d")))
				}
				must(os.Symlink(outside, d))
			}
			sn, a, err := backupSwapping(t, r, src, filepath.Join(d, "f"), swap, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := fileContent(t, r, sn, "d/f")
			if bytes.Contains(got, []byte("SECRET")) {
				t.Fatalf("the backup holds the content of a file outside the source: %q", got)
			}
			switch how {
			case "renamed away": // the directory listed still exists: its file is read
				if !ok || !bytes.Equal(got, inside) {
					t.Fatalf("d/f: %q (in the snapshot: %v), want %q", got, ok, inside)
				}
			case "removed": // vanished: left out and counted
				if ok || a.Stats.FilesSkipped.Load() != 1 {
					t.Fatalf("d/f in the snapshot: %v (%q); %d skipped", ok, got, a.Stats.FilesSkipped.Load())
				}
			}
		})
	}
}

// Scenario: a regular file replaced by a FIFO between the listing of its
// directory and its opening. The worker never waits on it: the backup
// finishes, the entry is left out and counted as an error.
func TestFileSwappedForFIFODoesNotHang(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "raft.db")
	if err := os.WriteFile(p, []byte("pages"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "other"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := repotest.NewMem(t)
	swap := func() {
		if err := errors.Join(os.Remove(p), syscall.Mkfifo(p, 0o644)); err != nil {
			t.Error(err)
		}
	}
	unblock := func() { // a writer releases a reader stuck in open
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}
	sn, a, err := backupSwapping(t, r, src, p, swap, unblock)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fileContent(t, r, sn, "raft.db"); ok {
		t.Fatal("the FIFO was stored as a file")
	}
	if got, ok := fileContent(t, r, sn, "other"); !ok || string(got) != "kept" {
		t.Fatalf("other: %q, %v", got, ok)
	}
	if a.Stats.FilesSkipped.Load() != 1 || a.Stats.Errors.Load() != 1 {
		t.Fatalf("%d skipped, %d errors; want the FIFO skipped and counted as an error", a.Stats.FilesSkipped.Load(), a.Stats.Errors.Load())
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// The directories the file workers open files in stay open only as long
// as needed: on a wide tree the descriptors held at once stay bounded by
// the look-ahead budget (not by the number of directories), and none is
// left open after a backup, finished or cancelled mid-way.
func TestDirHandlesBoundedAndClosed(t *testing.T) {
	src := t.TempDir()
	const dirs = 2000
	for i := range dirs {
		d := filepath.Join(src, fmt.Sprintf("d%04d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := repotest.NewMem(t)
	base := openFDs(t)
	a, err := New(r, Options{Policy: "p"})
	if err != nil {
		t.Fatal(err)
	}
	peak := 0
	var mu sync.Mutex
	a.beforeOpen = func(string) {
		n := openFDs(t)
		mu.Lock()
		peak = max(peak, n)
		mu.Unlock()
	}
	if _, err := a.Backup(t.Context(), src); err != nil {
		t.Fatal(err)
	}
	// The look-ahead budget's share, the scanner's and the walker's chains
	// (depth 1 here), the jobs of the workers: far fewer than the tree's
	// directories.
	if bound := base + 512 + 64; peak > bound {
		t.Errorf("%d descriptors open at once for %d directories; want at most %d", peak, dirs, bound)
	}
	if n := openFDs(t); n != base {
		t.Errorf("%d descriptors open after the backup, %d before", n, base)
	}

	// Cancelled while the scan is ahead of the walk and files are queued.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b, err := New(r, Options{Policy: "q"})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	b.beforeOpen = func(string) { once.Do(cancel) }
	if _, err := b.Backup(ctx, src); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled backup: %v", err)
	}
	if n := openFDs(t); n != base {
		t.Errorf("%d descriptors open after a cancelled backup, %d before", n, base)
	}
}

// Scenario: the source directory goes away while its files are read (a
// node agent's volume unmounted when its pod is deleted, docs/DESIGN.md §8):
// removed, or its path (a symlink, as the agent's stable source link)
// pointed at another directory. The files not yet read would be missing
// from a snapshot that passes for the volume's content: the backup fails
// with ErrSourceGone (which matches fs.ErrNotExist, a source failure) and
// saves none. A source that stays backs up as before.
func TestSourceGoneMidBackupSavesNoSnapshot(t *testing.T) {
	for _, how := range []string{"removed", "link repointed", "stays"} {
		t.Run(how, func(t *testing.T) {
			vol, other := t.TempDir(), t.TempDir()
			for i := range 4 {
				if err := os.WriteFile(filepath.Join(vol, fmt.Sprintf("f%d", i)), []byte(strings.Repeat("x", 100*(i+1))), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			src := filepath.Join(t.TempDir(), "volume")
			if err := os.Symlink(vol, src); err != nil {
				t.Fatal(err)
			}
			r, _ := repotest.NewMem(t)
			swap := func() {
				var err error
				switch how {
				case "removed":
					err = os.RemoveAll(vol)
				case "link repointed":
					tmp := src + ".new"
					if err = os.Symlink(other, tmp); err == nil {
						err = os.Rename(tmp, src)
					}
				}
				if err != nil {
					t.Error(err)
				}
			}
			sn, _, err := backupSwapping(t, r, src, filepath.Join(src, "f0"), swap, nil)
			snaps, _, lerr := snapshot.LoadAll(t.Context(), r)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if how == "stays" {
				if err != nil || sn == nil || len(snaps) != 1 {
					t.Fatalf("backup of a source that stayed: %v, %d snapshots", err, len(snaps))
				}
				return
			}
			if !errors.Is(err, ErrSourceGone) || !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("backup of a source that went away: err %v, want ErrSourceGone", err)
			}
			if sn != nil || len(snaps) != 0 {
				t.Fatalf("a snapshot was saved of a source that went away: %v, %d listed", sn, len(snaps))
			}
		})
	}
}
