package archiver

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// mkTree makes dirs a/, a/x/, b/ ... each holding n files.
func mkTree(t *testing.T, n int) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"b", "a", "a/x", "a/x/deep", "c"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := os.WriteFile(filepath.Join(root, d, fmt.Sprintf("f%03d", i)), []byte(d), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Symlink("a/x", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	return root
}

// Listings come in the walk's order (pre-order, sorted names), whatever
// the look-ahead budget, including directories bigger than the budget.
func TestScanOrderAndBudget(t *testing.T) {
	root := mkTree(t, 12)
	want := []string{"a", "a/x", "a/x/deep", "b", "c"} // after the root
	for _, ahead := range []int64{1, 3, 100, scanAhead} {
		t.Run(fmt.Sprint(ahead), func(t *testing.T) {
			s := prescan(t.Context(), root, ScanOptions{}, ahead)
			defer s.Stop()
			rl, err := s.rootListing(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range rl.entries {
				names = append(names, e.name)
			}
			if !slices.Equal(names, []string{"a", "b", "c", "link"}) {
				t.Fatalf("root entries %v", names)
			}
			if e := rl.entries[len(rl.entries)-1]; e.target != "a/x" {
				t.Fatalf("symlink target %q", e.target)
			}
			if ahead > 1 {
				time.Sleep(20 * time.Millisecond) // let the scanner run into its budget
			}
			for _, rel := range want {
				l, err := s.next(t.Context(), filepath.Join(root, rel))
				if err != nil {
					t.Fatalf("next %q: %v", rel, err)
				}
				files := 0
				for _, e := range l.entries {
					if e.mode.IsRegular() {
						files++
					}
				}
				if files != 12 {
					t.Fatalf("%q: %d files, want 12", rel, files)
				}
			}
			if _, err := s.next(t.Context(), filepath.Join(root, "zzz")); err == nil {
				t.Fatal("a listing after the last directory")
			}
		})
	}
}

// Stop ends a scanner that waits for budget; a missing source is an error
// when the scan is used.
func TestScanStopAndErrors(t *testing.T) {
	s := prescan(t.Context(), mkTree(t, 3), ScanOptions{}, 1)
	time.Sleep(10 * time.Millisecond)
	done := make(chan struct{})
	go func() { s.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not end a blocked scan")
	}
	missing := prescan(t.Context(), filepath.Join(t.TempDir(), "absent"), ScanOptions{}, scanAhead)
	defer missing.Stop()
	if _, err := missing.rootListing(t.Context()); err == nil {
		t.Fatal("missing source accepted")
	}
	file := filepath.Join(t.TempDir(), "file")
	_ = os.WriteFile(file, nil, 0o644)
	notDir := prescan(t.Context(), file, ScanOptions{}, scanAhead)
	defer notDir.Stop()
	if _, err := notDir.rootListing(t.Context()); err == nil {
		t.Fatal("a file accepted as the source")
	}
}

// backupWith backs root up into r through a scan with look-ahead budget
// ahead.
func backupWith(t *testing.T, r *repository.Repo, root string, ahead int64) (*snapshot.Snapshot, *Archiver) {
	t.Helper()
	a, err := New(r, Options{Policy: "p"})
	if err != nil {
		t.Fatal(err)
	}
	scan := prescan(t.Context(), root, ScanOptions{}, ahead)
	defer scan.Stop()
	sn, err := a.backupScan(t.Context(), scan)
	if err != nil {
		t.Fatal(err)
	}
	return sn, a
}

// Backups with a look-ahead budget far smaller than the tree (the scanner
// waits for the walk all the time) neither deadlock nor lose entries, and
// the no-change backup still ends with the parent's tree.
func TestBackupWithTinyScanBudget(t *testing.T) {
	root := mkTree(t, 5)
	for _, ahead := range []int64{1, 2, 7} {
		t.Run(fmt.Sprint(ahead), func(t *testing.T) {
			r, _ := repotest.NewMem(t)
			first, _ := backupWith(t, r, root, ahead)
			second, a := backupWith(t, r, root, ahead)
			if first.Totals.Files != 25 || first.Totals.Dirs != 6 || second.Totals.Files != 25 || second.Totals.Dirs != 6 ||
				second.Totals.BytesTotal != first.Totals.BytesTotal {
				t.Fatalf("counts: %+v then %+v", first.Totals, second.Totals)
			}
			if second.Tree != first.Tree || a.Stats.FilesUnchanged.Load() != 25 {
				t.Fatalf("no-change backup: tree %s (parent's %s), %d unchanged", second.Tree.Str(), first.Tree.Str(), a.Stats.FilesUnchanged.Load())
			}
		})
	}
}

// Below a directory with many subdirectories (whose own digest the walk
// does not wait for), each subdirectory is still taken whole by its digest.
func TestReuseBelowFanOut(t *testing.T) {
	root := t.TempDir()
	for i := range fanOut + 2 {
		d := filepath.Join(root, "proxies", fmt.Sprintf("p%02d", i), "logs")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "access.log"), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := repotest.NewMem(t)
	first, _ := backupWith(t, r, root, scanAhead)
	second, a := backupWith(t, r, root, scanAhead)
	// Each p%02d with its logs/ is reused (2 directories per proxy), and
	// proxies/ too when its digest happened to be ready.
	if second.Tree != first.Tree || a.Stats.FilesUnchanged.Load() != fanOut+2 || a.Stats.DirsReused.Load() < 2*(fanOut+2) {
		t.Fatalf("tree %s (parent's %s), %d unchanged, %d directories reused", second.Tree.Str(), first.Tree.Str(),
			a.Stats.FilesUnchanged.Load(), a.Stats.DirsReused.Load())
	}
}

// listDir's entries agree to the bit with what os.Lstat and os.Readlink
// say: the nodes of a snapshot come from both.
func TestListDirAgreesWithLstat(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o640))
	must(os.WriteFile(filepath.Join(dir, "setuid"), nil, 0o755))
	must(os.Chmod(filepath.Join(dir, "setuid"), 0o755|fs.ModeSetuid|fs.ModeSetgid))
	must(os.Mkdir(filepath.Join(dir, "sticky"), 0o777))
	must(os.Chmod(filepath.Join(dir, "sticky"), 0o777|fs.ModeSticky))
	must(os.Symlink("../"+strings.Repeat("long-target/", 40), filepath.Join(dir, "link")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	ln, err := net.Listen("unix", filepath.Join(dir, "sock"))
	must(err)
	defer ln.Close()
	d, err := openRoot(dir)
	must(err)
	defer d.Close()
	l := listDir(t.Context(), d, dir, make([]byte, 100)) // records of 6 entries take more: several reads
	if l.err != nil || len(l.entries) != 6 {
		t.Fatalf("listing: %v, %d entries", l.err, len(l.entries))
	}
	for _, e := range l.entries {
		p := filepath.Join(dir, e.name)
		fi, err := os.Lstat(p)
		must(err)
		want := newEntryInfo(e.name, fi)
		if fi.Mode()&fs.ModeSymlink != 0 {
			want.target, _ = os.Readlink(p)
		}
		if e != want {
			t.Errorf("%s:\n got %+v\nwant %+v", e.name, e, want)
		}
	}
	if _, err := openRoot(filepath.Join(dir, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing directory: %v", err)
	}
}

// A subdirectory replaced between its lstat and its opening is not
// followed, not waited on, and not taken for the one stat'ed.
func TestOpenSubdirRefusesReplacements(t *testing.T) {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	outside := t.TempDir()
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("not in the source"), 0o600))
	d, err := openRoot(root)
	must(err)
	defer d.Close()
	// Replacements are made while the original still exists, so they
	// cannot reuse its inode number.
	for _, tc := range []struct {
		name    string
		replace func(p string) error
	}{
		{"symlink out of the source", func(p string) error { return os.Symlink(outside, p) }},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"another directory", func(p string) error { return os.Mkdir(p, 0o755) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(root, strings.ReplaceAll(tc.name, " ", "-"))
			must(os.Mkdir(p, 0o755))
			fi, err := os.Lstat(p)
			must(err)
			e := newEntryInfo(filepath.Base(p), fi)
			tmp := p + ".new"
			must(tc.replace(tmp))
			must(os.Remove(p))
			must(os.Rename(tmp, p))
			done := make(chan error, 1)
			go func() {
				f, err := openSubdir(d, p, &e)
				if err == nil {
					f.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("opened the replacement")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("opening the replacement waits")
			}
		})
	}
	// The directory itself opens.
	must(os.Mkdir(filepath.Join(root, "plain"), 0o755))
	fi, _ := os.Lstat(filepath.Join(root, "plain"))
	e := newEntryInfo("plain", fi)
	f, err := openSubdir(d, filepath.Join(root, "plain"), &e)
	must(err)
	f.Close()
}

// The backup command starts the scan before the repository is open (the
// key derivation needs none of it). A scan handed over later makes the same
// snapshot as Backup, dated when the scan started; one that is never
// handed over (the repository would not open) stops without leaving
// anything running.
func TestStartScanBeforeRepository(t *testing.T) {
	root := mkTree(t, 4)
	base := runtime.NumGoroutine()
	unused := StartScan(t.Context(), root, ScanOptions{})
	unused.Stop()
	unused.Stop()
	for i := 0; runtime.NumGoroutine() > base; i++ {
		if i == 100 {
			t.Fatalf("%d goroutines after a stopped scan, %d before", runtime.NumGoroutine(), base)
		}
		time.Sleep(10 * time.Millisecond)
	}

	started := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	scan := StartScan(t.Context(), root, ScanOptions{Now: func() time.Time { return started }})
	r, _ := repotest.NewMem(t)
	a, err := New(r, Options{Policy: "p", Now: func() time.Time { return started.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := a.BackupScan(t.Context(), scan)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := backupWith(t, r, root, scanAhead)
	if !sn.Time.Equal(started) {
		t.Errorf("snapshot time %v, want the scan's start %v", sn.Time, started)
	}
	if sn.Tree != ref.Tree || sn.Totals.Files != 20 || sn.Totals.Dirs != 6 {
		t.Errorf("tree %s with %+v; Backup of the same source made %s", sn.Tree.Str(), sn.Totals, ref.Tree.Str())
	}
}
