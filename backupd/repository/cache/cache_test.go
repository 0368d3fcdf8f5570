package cache_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/fault"
	"github.com/meshbackup/backupd/backupd/backend/mem"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repository/cache"
	"github.com/meshbackup/backupd/backupd/repotest"
)

// counter counts the reads (Load, Stat) of each object type that reach the
// backend.
type counter struct {
	mu    sync.Mutex
	reads map[backend.FileType]int
}

func (c *counter) hook(op fault.Op, h backend.Handle) error {
	if op == fault.OpLoad || op == fault.OpStat {
		c.mu.Lock()
		c.reads[h.Type]++
		c.mu.Unlock()
	}
	return nil
}

// take returns the reads counted since the last take.
func (c *counter) take() map[backend.FileType]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reads
	c.reads = map[backend.FileType]int{}
	return r
}

// fixture is a repository on a mem backend, read through a counter, with a
// snapshot object and a tree blob stored.
type fixture struct {
	be       *fault.Backend
	mem      *mem.Mem
	reads    *counter
	root     string // cache root
	snapshot repository.ID
	snapData []byte
	tree     repository.ID
	treeData []byte
}

func newFixture(t *testing.T, root string) *fixture {
	t.Helper()
	m := mem.New()
	c := &counter{reads: map[backend.FileType]int{}}
	f := &fixture{be: &fault.Backend{Backend: m, Hook: c.hook}, mem: m, reads: c, root: root}
	opt := repotest.Options()
	r, err := repository.Init(t.Context(), f.be, repotest.Password, opt)
	if err != nil {
		t.Fatal(err)
	}
	f.treeData = []byte(`{"nodes":["a tree blob, as the archiver stores one"]}`)
	f.tree = r.TreeID(f.treeData)
	ctx := t.Context()
	if _, _, err := r.SaveBlob(ctx, repository.TreeBlob, f.tree, f.treeData); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("data "), 1000)
	if _, _, err := r.SaveBlob(ctx, repository.DataBlob, r.BlobID(data), data); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.snapData = []byte(`{"a":"snapshot"}`)
	if f.snapshot, err = r.SaveUnpacked(ctx, backend.SnapshotFile, f.snapData); err != nil {
		t.Fatal(err)
	}
	c.take()
	return f
}

// open opens the repository as a new process would, with the cache under
// f.root when cached.
func (f *fixture) open(t *testing.T, cached bool) *repository.Repo {
	t.Helper()
	opt := repository.Options{}
	if cached {
		opt.Cache = cache.Opener(f.root)
	}
	r := repotest.Reopen(t, f.be, opt)
	f.reads.take() // config and keys are read from the backend, always
	return r
}

// backup reads what a backup reads: the index, the snapshots, the parent's
// tree; and checks that what it read is what was stored.
func (f *fixture) backup(t *testing.T, r *repository.Repo) {
	t.Helper()
	ctx := t.Context()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	ids, err := r.ListSnapshots(ctx)
	if err != nil || len(ids) != 1 || ids[0] != f.snapshot {
		t.Fatalf("snapshots %v, %v; want [%s]", ids, err, f.snapshot.Str())
	}
	b, err := r.LoadUnpacked(ctx, backend.SnapshotFile, f.snapshot)
	if err != nil || !bytes.Equal(b, f.snapData) {
		t.Fatalf("snapshot: %q, %v; want %q", b, err, f.snapData)
	}
	tb, err := r.LoadBlob(ctx, repository.TreeBlob, f.tree, nil)
	if err != nil || !bytes.Equal(tb, f.treeData) {
		t.Fatalf("tree: %q, %v; want %q", tb, err, f.treeData)
	}
}

// cachedFiles returns the cache's files of type t.
func cachedFiles(t *testing.T, dir string, ft backend.FileType) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, string(ft), "[0-9a-f]*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func repoDir(t *testing.T, root string, r *repository.Repo) string {
	t.Helper()
	return filepath.Join(root, r.Config().ID)
}

func TestBackupReadsFromTheCache(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cached bool
		// reads of each type by the first and by the second backup
		first, second map[backend.FileType]int
	}{
		// The first process fetches index, snapshot and tree pack (stat
		// and load) and keeps them; the second reads none of them.
		{"cached", true,
			map[backend.FileType]int{backend.IndexFile: 1, backend.SnapshotFile: 1, backend.PackFile: 2},
			map[backend.FileType]int{}},
		{"no cache", false,
			map[backend.FileType]int{backend.IndexFile: 1, backend.SnapshotFile: 1, backend.PackFile: 2},
			map[backend.FileType]int{backend.IndexFile: 1, backend.SnapshotFile: 1, backend.PackFile: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, t.TempDir())
			for i, want := range []map[backend.FileType]int{tc.first, tc.second} {
				r := f.open(t, tc.cached)
				f.backup(t, r)
				if got := f.reads.take(); !equalCounts(got, want) {
					t.Errorf("backup %d: backend reads %v, want %v", i+1, got, want)
				}
			}
			if !tc.cached {
				if entries, _ := os.ReadDir(f.root); len(entries) != 0 {
					t.Errorf("no cache: %d entries written to the cache root", len(entries))
				}
			}
		})
	}
}

// What a writer stores (index file, snapshot, tree pack) is cached as it is
// written: the next backup on the machine fetches none of it.
func TestWritesAreCached(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	m := mem.New()
	c := &counter{reads: map[backend.FileType]int{}}
	be := &fault.Backend{Backend: m, Hook: c.hook}
	opt := repotest.Options()
	opt.Cache = cache.Opener(root)
	r, err := repository.Init(t.Context(), be, repotest.Password, opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	f := &fixture{be: be, mem: m, reads: c, root: root, treeData: []byte("tree")}
	f.tree = r.TreeID(f.treeData)
	if _, _, err := r.SaveBlob(ctx, repository.TreeBlob, f.tree, f.treeData); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.snapData = []byte("snapshot")
	if f.snapshot, err = r.SaveUnpacked(ctx, backend.SnapshotFile, f.snapData); err != nil {
		t.Fatal(err)
	}
	f.backup(t, f.open(t, true))
	if got := c.take(); len(got) != 0 {
		t.Errorf("backend reads after the writer cached its objects: %v, want none", got)
	}
}

// A damaged copy in the cache is never used: it is detected, removed, and
// the object fetched from the repository (and cached again, intact).
func TestDamagedCacheEntriesAreRefetched(t *testing.T) {
	t.Parallel()
	damage := map[string]func(t *testing.T, path string){
		"flipped byte": func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x40
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, path string) {
			if err := os.Truncate(path, 3); err != nil {
				t.Fatal(err)
			}
		},
		"empty": func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		},
		"unreadable (a directory)": func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, spoil := range damage {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, t.TempDir())
			r := f.open(t, true)
			f.backup(t, r) // fills the cache
			f.reads.take()
			dir := repoDir(t, f.root, r)
			intact := map[string][]byte{}
			for _, ft := range []backend.FileType{backend.IndexFile, backend.SnapshotFile, backend.PackFile} {
				files := cachedFiles(t, dir, ft)
				if len(files) != 1 {
					t.Fatalf("%s: %d cached files, want 1", ft, len(files))
				}
				b, err := os.ReadFile(files[0])
				if err != nil {
					t.Fatal(err)
				}
				intact[files[0]] = b
				spoil(t, files[0])
			}
			f.backup(t, f.open(t, true)) // fails unless the data read is intact
			want := map[backend.FileType]int{backend.IndexFile: 1, backend.SnapshotFile: 1, backend.PackFile: 2}
			if got := f.reads.take(); !equalCounts(got, want) {
				t.Errorf("backend reads %v, want %v (each damaged copy fetched again)", got, want)
			}
			for path, b := range intact {
				got, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(got, b) {
					t.Errorf("%s: not cached again intact (%v)", path, err)
				}
			}
		})
	}
}

// Copies of objects the repository no longer lists (removed by prune) leave
// the cache when the repository lists their type.
func TestRemovedObjectsLeaveTheCache(t *testing.T) {
	t.Parallel()
	f := newFixture(t, t.TempDir())
	r := f.open(t, true)
	f.backup(t, r)
	dir := repoDir(t, f.root, r)
	ctx := t.Context()
	for _, ft := range []backend.FileType{backend.IndexFile, backend.SnapshotFile, backend.PackFile} {
		if n := len(cachedFiles(t, dir, ft)); n != 1 {
			t.Fatalf("%s: %d cached files before removal, want 1", ft, n)
		}
	}
	// As prune does: the snapshot goes, then the packs and the index
	// file that listed them.
	for _, ft := range []backend.FileType{backend.SnapshotFile, backend.PackFile, backend.IndexFile} {
		if err := f.mem.List(ctx, ft, func(fi backend.FileInfo) error {
			return f.mem.Remove(ctx, backend.Handle{Type: ft, Name: fi.Name})
		}); err != nil {
			t.Fatal(err)
		}
	}
	r = f.open(t, true)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if ids, err := r.ListSnapshots(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("snapshots %v, %v; want none", ids, err)
	}
	for _, ft := range []backend.FileType{backend.IndexFile, backend.SnapshotFile, backend.PackFile} {
		if files := cachedFiles(t, dir, ft); len(files) != 0 {
			t.Errorf("%s: removed objects still cached: %v", ft, files)
		}
	}
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "root")
	// A directory that exists with a looser mode is tightened.
	if err := os.MkdirAll(filepath.Join(root, "loose"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fresh", "loose"} {
		d, err := cache.Open(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		h := backend.Handle{Type: backend.IndexFile, Name: "abc"}
		if err := d.Save(h, []byte("x")); err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]fs.FileMode{
			d.Path(): 0o700, filepath.Join(d.Path(), "index"): 0o700, filepath.Join(d.Path(), "index", "abc"): 0o600,
		} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
			}
		}
	}
}

// Config, keys, locks and markers are never cached, and no name reaches
// outside the cache.
func TestRefusesWhatIsNeverCached(t *testing.T) {
	t.Parallel()
	d, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []backend.Handle{
		{Type: backend.ConfigFile}, {Type: backend.KeyFile, Name: "k"}, {Type: backend.LockFile, Name: "l"},
		{Type: backend.MarkerFile, Name: "m"}, {Type: backend.IndexFile, Name: "../escape"}, {Type: backend.IndexFile, Name: ".tmp-x"},
	} {
		if err := d.Save(h, []byte("x")); err == nil {
			t.Errorf("save %s: accepted", h)
		}
	}
	if _, err := d.Load(backend.Handle{Type: backend.IndexFile, Name: "absent"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("load of a missing copy: %v, want fs.ErrNotExist", err)
	}
}

func equalCounts(a, b map[backend.FileType]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// FreshUncached (check, repair, drills) reads the backend's copies even
// when the cache holds them.
func TestFreshUncachedReadsTheBackend(t *testing.T) {
	t.Parallel()
	f := newFixture(t, t.TempDir())
	r := f.open(t, true)
	f.backup(t, r) // fills the cache
	f.reads.take()
	u, err := r.FreshUncached()
	if err != nil {
		t.Fatal(err)
	}
	f.backup(t, u)
	want := map[backend.FileType]int{backend.IndexFile: 1, backend.SnapshotFile: 1, backend.PackFile: 2}
	if got := f.reads.take(); !equalCounts(got, want) {
		t.Errorf("uncached view: backend reads %v, want %v", got, want)
	}
	fr, err := r.Fresh()
	if err != nil {
		t.Fatal(err)
	}
	f.backup(t, fr)
	if got := f.reads.take(); len(got) != 0 {
		t.Errorf("Fresh keeps the cache: backend reads %v, want none", got)
	}
}
