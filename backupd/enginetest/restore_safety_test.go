package enginetest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/checker"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/restorer"
	"github.com/meshbackup/backupd/bench/workload"
)

// A snapshot may hold any name, the restorer's own marker and temp prefix
// too: a restore, a rerun and a rerun with --delete keep every entry the
// snapshot holds (docs/DESIGN.md §8 scenario 28).
func TestRestoreKeepsEntriesWithTheRestorersNames(t *testing.T) {
	e := newTreeEnv(t, "links, empties, modes")
	for _, name := range []string{".backupd-restoring", restorer.TempPrefix + "user-file", ".backupd-restoring.restore"} {
		must(t, os.WriteFile(filepath.Join(e.src, name), []byte("the user's own "+name), 0o644))
	}
	must(t, os.Mkdir(filepath.Join(e.src, "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(e.src, "sub", restorer.TempPrefix+"x"), []byte("deeper"), 0o644))
	sn, _ := e.mustBackup()
	target := filepath.Join(t.TempDir(), "restore")
	for _, opt := range []restorer.Options{{}, {}, {Delete: true}} {
		r := e.open()
		must(t, r.LoadIndex(t.Context()))
		res, err := restorer.New(r, opt).Restore(t.Context(), sn, target)
		must(t, err)
		must(t, res.Err())
		if d := workload.Diff(e.oracle[sn.ID], e.manifest(target), true); len(d) > 0 {
			t.Fatalf("restore (delete %v) lost entries the snapshot holds:\n%s", opt.Delete, strings.Join(d, "\n"))
		}
	}
	if _, err := os.Lstat(restorer.MarkerPath(target)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the marker of a finished restore is still there: %v", err)
	}
}

// A subtree whose tree blob is missing (its pack deleted) fails its own
// directory only: the siblings are restored byte-exact and the failure
// names the directory (scenario 29).
func TestRestoreOfMissingSubtreeRestoresTheRest(t *testing.T) {
	e := newTreeEnv(t, "links, empties, modes")
	must(t, os.MkdirAll(filepath.Join(e.src, "old", "deep"), 0o755))
	must(t, os.WriteFile(filepath.Join(e.src, "old", "deep", "f"), []byte("in the lost tree pack"), 0o644))
	first, _ := e.mustBackup()
	// The second snapshot's new trees go to a new tree pack; old/ is
	// unchanged and its tree stays in the first snapshot's.
	must(t, os.MkdirAll(filepath.Join(e.src, "new"), 0o755))
	must(t, os.WriteFile(filepath.Join(e.src, "new", "g"), []byte("written after"), 0o644))
	second, _ := e.mustBackup()

	oldNode, _ := e.node(second, "old")
	oldTree := *oldNode.Subtree
	r := e.open()
	must(t, r.LoadIndex(t.Context()))
	oldLoc, ok := r.Index().Lookup(oldTree)
	rootLoc, _ := r.Index().Lookup(second.Tree)
	if !ok || oldLoc.Pack == rootLoc.Pack {
		t.Fatalf("test setup: old/'s tree is not in a pack of its own (found %v)", ok)
	}
	must(t, os.Remove(filepath.Join(e.dir, "data", oldLoc.Pack.String()[:2], oldLoc.Pack.String())))
	_ = first

	target := filepath.Join(t.TempDir(), "restore")
	res, _, err := e.restore(second, target)
	if err != nil {
		t.Fatalf("a missing subtree stopped the whole restore: %v", err)
	}
	failed := map[string]bool{}
	for _, f := range res.Failed {
		failed[f.Path] = true
	}
	if !failed["old"] {
		t.Fatalf("failures %v do not name the directory old", res.Failed)
	}
	// What the second backup wrote anew is there: the root's own entries
	// and new/. The unchanged directories lost with the first pack are
	// the only failures.
	want := e.oracle[second.ID]
	got := e.manifest(target)
	for p, ent := range want {
		if !strings.Contains(p, "/") && ent.Type != "dir" || p == "new" || strings.HasPrefix(p, "new/") {
			if g, ok := got[p]; !ok || g.Type != ent.Type || g.Hash != ent.Hash {
				t.Errorf("%s not restored intact beside the missing subtree", p)
			}
		}
	}
	for _, f := range res.Failed {
		if ent, ok := want[f.Path]; !ok || ent.Type != "dir" || f.Path == "new" {
			t.Errorf("failure %v is not one of the directories whose tree was lost", f)
		}
	}
	if _, err := os.Lstat(restorer.MarkerPath(target)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("marker left behind: %v", err)
	}
}

// Restoring directory metadata costs the same per directory whatever its
// depth (scenario 30): the allocations of a restore grow linearly with the
// depth of a chain of directories, not with its square. Allocations, not
// time, are compared: they do not depend on how busy the machine is.
func TestRestoreCostLinearInDepth(t *testing.T) {
	allocs := map[int]uint64{}
	for _, depth := range []int{300, 1200} {
		e := newTreeEnv(t, "links, empties, modes")
		e.src = filepath.Join(t.TempDir(), "deep")
		p := e.src
		for range depth {
			p = filepath.Join(p, "d")
		}
		must(t, os.MkdirAll(p, 0o755))
		must(t, os.WriteFile(filepath.Join(p, "leaf"), []byte("at the bottom"), 0o644))
		// Read-only directories on the way down: their modes are set last.
		must(t, os.Chmod(filepath.Join(e.src, "d"), 0o555))
		src := e.src
		t.Cleanup(func() { _ = os.Chmod(filepath.Join(src, "d"), 0o755) }) // before t.TempDir's removal, also as nobody
		sn, _ := e.mustBackup()
		r := e.open()
		must(t, r.LoadIndex(t.Context()))
		target := filepath.Join(t.TempDir(), "restore")
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		res, err := restorer.New(r, restorer.Options{Workers: 1}).Restore(t.Context(), sn, target)
		runtime.ReadMemStats(&after)
		must(t, err)
		must(t, res.Err())
		allocs[depth] = after.Mallocs - before.Mallocs
		if d := workload.Diff(e.oracle[sn.ID], e.manifest(target), true); len(d) > 0 {
			t.Fatalf("depth %d: restore differs:\n%s", depth, strings.Join(head(d, 10), "\n"))
		}
		fi, err := os.Stat(filepath.Join(target, "d"))
		must(t, err)
		if fi.Mode().Perm() != 0o555 {
			t.Fatalf("depth %d: read-only directory restored as %v", depth, fi.Mode())
		}
		must(t, os.Chmod(filepath.Join(target, "d"), 0o755)) // let t.TempDir clean up
	}
	ratio := float64(allocs[1200]) / float64(allocs[300])
	t.Logf("allocations: depth 300 %d, depth 1200 %d, ratio %.1f (linear 4, quadratic 16)", allocs[300], allocs[1200], ratio)
	if ratio > 8 {
		t.Fatalf("restore cost grows faster than the depth: %.1fx the allocations for 4x the depth", ratio)
	}
}

// A tree indexed as a data blob (a lying index entry): check --read-data
// reports it, with the directory it holds, and goes on to the rest; a
// restore fails that directory only (scenario 29).
func TestTreeIndexedAsDataIsReported(t *testing.T) {
	e := newTreeEnv(t, "links, empties, modes")
	must(t, os.MkdirAll(filepath.Join(e.src, "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(e.src, "sub", "f"), []byte("below the mislabelled tree"), 0o644))
	sn, _ := e.mustBackup()
	subNode, _ := e.node(sn, "sub")
	sub := *subNode.Subtree
	r := e.open()
	must(t, r.LoadIndex(t.Context()))
	// One index file that supersedes every other, with sub/'s tree typed
	// as data.
	files, err := r.ReadIndexFiles(t.Context())
	must(t, err)
	forged := &repository.IndexFile{}
	for _, f := range files {
		must(t, f.Err)
		forged.Supersedes = append(forged.Supersedes, f.ID)
		for _, p := range f.File.Packs {
			for i := range p.Blobs {
				if p.Blobs[i].ID == sub {
					p.Blobs[i].Type = repository.DataBlob
				}
			}
			forged.Packs = append(forged.Packs, p)
		}
	}
	_, err = r.SaveIndexFile(t.Context(), forged)
	must(t, err)

	rep := e.check(checker.Options{ReadData: true, NoRecord: true})
	if rep.OK() || rep.Snapshots != 1 {
		t.Fatalf("check of a tree indexed as data: ok %v, %d snapshots checked", rep.OK(), rep.Snapshots)
	}
	named := false
	for _, p := range rep.Problems {
		if strings.Contains(p.Message, sub.Str()) || p.Object == "/sub" {
			named = true
		}
	}
	if !named {
		t.Fatalf("no problem names the tree %s or /sub: %+v", sub.Str(), rep.Problems)
	}
	target := filepath.Join(t.TempDir(), "restore")
	res, _, err := e.restore(sn, target)
	if err != nil {
		t.Fatalf("restore stopped: %v", err)
	}
	if len(res.Failed) != 1 || res.Failed[0].Path != "sub" || !res.Corrupt() {
		t.Fatalf("restore failures %v, want only sub, as corruption", res.Failed)
	}
}
