package enginetest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/checker"
	"github.com/meshbackup/backupd/backupd/chunker"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/restorer"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/bench/workload"
)

// env is one repository and one source tree, with the oracle: the manifest
// of the source at each snapshot.
type env struct {
	t      *testing.T
	be     backend.Backend
	dir    string // local repository directory, if local
	src    string
	wl     workload.Options
	opt    repository.Options
	aopt   archiver.Options
	oracle map[repository.ID]map[string]workload.Entry
}

func smallVolume() workload.Options {
	return workload.Options{Proxies: 4, ConsulServers: 1, Scale: 0.02, Seed: 7}
}

func newEnv(t *testing.T, wl workload.Options) *env {
	t.Helper()
	_, dir := repotest.NewLocal(t)
	be, err := local.Open(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, be: be, dir: dir, src: filepath.Join(t.TempDir(), "vol"), wl: wl,
		aopt: archiver.Options{Policy: "mesh"}, oracle: map[repository.ID]map[string]workload.Entry{}}
	if err := workload.Generate(e.src, wl); err != nil {
		t.Fatal(err)
	}
	return e
}

// open opens the repository as a new process would.
// newTreeEnv is newEnv with a source of writeTree's shape instead of the
// generated volume set.
func newTreeEnv(t *testing.T, shape string) *env {
	t.Helper()
	e := newEnv(t, smallVolume())
	e.src = filepath.Join(t.TempDir(), "src")
	writeTree(t, e.src, shape)
	return e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// appendTo appends s to the file p.
func appendTo(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString(s)
	must(t, errors.Join(err, f.Close()))
}

// moveUnder moves the file root/name into a new directory root/dir and
// returns its path: below the root, which every backup walks, so that its
// directory can be taken whole by its digest.
func moveUnder(t *testing.T, root, dir, name string) string {
	t.Helper()
	p := filepath.Join(root, dir, name)
	must(t, os.Mkdir(filepath.Dir(p), 0o755))
	must(t, os.Rename(filepath.Join(root, name), p))
	return p
}

// keptChunks is how many of old's chunks new starts with.
func keptChunks(old, new snapshot.Node) int {
	k := 0
	for k < len(old.Content) && k < len(new.Content) && old.Content[k] == new.Content[k] {
		k++
	}
	return k
}

// lastChunk is the size of the last chunk of a file whose chunks end at
// ends (as node returns them).
func lastChunk(ends []uint64) uint64 {
	if len(ends) > 1 {
		return ends[len(ends)-1] - ends[len(ends)-2]
	}
	return ends[0]
}

// keptOnGrowth is how many of its chunks a file that only grew keeps: all,
// but a last chunk shorter than the chunker's minimum is chunked again
// with the appended bytes.
func keptOnGrowth(ends []uint64) int {
	if lastChunk(ends) < chunker.MinSize {
		return len(ends) - 1
	}
	return len(ends)
}

func (e *env) open() *repository.Repo {
	e.t.Helper()
	return repotest.Reopen(e.t, e.be, e.opt)
}

func (e *env) manifest(root string) map[string]workload.Entry {
	e.t.Helper()
	m, err := workload.Manifest(root)
	if err != nil {
		e.t.Fatal(err)
	}
	// Sockets, FIFOs and devices are skipped by design.
	for k, v := range m {
		if v.Type != "file" && v.Type != "dir" && v.Type != "symlink" {
			delete(m, k)
		}
	}
	return m
}

// backup runs a backup and records the oracle for the snapshot it made.
func (e *env) backup() (*snapshot.Snapshot, *archiver.Archiver, error) {
	e.t.Helper()
	want := e.manifest(e.src)
	r := e.open()
	a, err := archiver.New(r, e.aopt)
	if err != nil {
		e.t.Fatal(err)
	}
	sn, err := a.Backup(e.t.Context(), e.src)
	if err == nil {
		e.oracle[sn.ID] = want
	}
	return sn, a, err
}

func (e *env) mustBackup() (*snapshot.Snapshot, *archiver.Archiver) {
	e.t.Helper()
	sn, a, err := e.backup()
	if err != nil {
		e.t.Fatalf("backup: %v", err)
	}
	return sn, a
}

// node returns the node of the file at the slash-separated path name in sn
// and the end offset of each of its chunks.
func (e *env) node(sn *snapshot.Snapshot, name string) (snapshot.Node, []uint64) {
	e.t.Helper()
	r := e.open()
	if err := r.LoadIndex(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	tree, err := snapshot.LoadTree(e.t.Context(), r, sn.Tree)
	if err != nil {
		e.t.Fatal(err)
	}
	dirs := strings.Split(filepath.ToSlash(name), "/")
	name = dirs[len(dirs)-1]
	for _, d := range dirs[:len(dirs)-1] {
		i := slices.IndexFunc(tree.Nodes, func(n snapshot.Node) bool { return n.Name == d && n.Subtree != nil })
		if i < 0 {
			e.t.Fatalf("snapshot %s has no directory %s", sn.ID.Str(), d)
		}
		if tree, err = snapshot.LoadTree(e.t.Context(), r, *tree.Nodes[i].Subtree); err != nil {
			e.t.Fatal(err)
		}
	}
	for _, n := range tree.Nodes {
		if n.Name != name {
			continue
		}
		ends := make([]uint64, len(n.Content))
		var end uint64
		for i, id := range n.Content {
			loc, ok := r.Index().Lookup(id)
			if !ok {
				e.t.Fatalf("%s: chunk %d not indexed", name, i)
			}
			end += uint64(loc.RawLen)
			ends[i] = end
		}
		return n, ends
	}
	e.t.Fatalf("snapshot %s has no %s", sn.ID.Str(), name)
	return snapshot.Node{}, nil
}

func (e *env) snapshots() []*snapshot.Snapshot {
	e.t.Helper()
	r := e.open()
	snaps, bad, err := snapshot.LoadAll(e.t.Context(), r)
	if err != nil || len(bad) > 0 {
		e.t.Fatalf("list snapshots: %v %v", err, bad)
	}
	return snaps
}

func (e *env) restore(sn *snapshot.Snapshot, target string) (*restorer.Result, *restorer.Restorer, error) {
	e.t.Helper()
	r := e.open()
	if err := r.LoadIndex(e.t.Context()); err != nil {
		return nil, nil, err
	}
	rs := restorer.New(r, restorer.Options{})
	res, err := rs.Restore(e.t.Context(), sn, target)
	return res, rs, err
}

// assertRestores restores sn and compares it with its oracle.
func (e *env) assertRestores(sn *snapshot.Snapshot) {
	e.t.Helper()
	want, ok := e.oracle[sn.ID]
	if !ok {
		e.t.Fatalf("no oracle for snapshot %s", sn.ID.Str())
	}
	target := filepath.Join(e.t.TempDir(), "restore")
	res, _, err := e.restore(sn, target)
	if err != nil {
		e.t.Fatalf("restore %s: %v", sn.ID.Str(), err)
	}
	if err := res.Err(); err != nil {
		e.t.Fatalf("restore %s: %v", sn.ID.Str(), err)
	}
	if d := workload.Diff(want, e.manifest(target), true); len(d) > 0 {
		e.t.Fatalf("restore of snapshot %s (seq %d) differs from the source at backup time:\n%s", sn.ID.Str(), sn.Seq, strings.Join(head(d, 20), "\n"))
	}
}

// assertAllRestore restores every snapshot that has an oracle.
func (e *env) assertAllRestore() {
	e.t.Helper()
	n := 0
	for _, sn := range e.snapshots() {
		if _, ok := e.oracle[sn.ID]; ok {
			e.assertRestores(sn)
			n++
		}
	}
	if n == 0 {
		e.t.Fatal("no snapshot to restore")
	}
}

func (e *env) check(opt checker.Options) *checker.Report {
	e.t.Helper()
	rep, err := checker.Check(e.t.Context(), e.open(), opt)
	if err != nil {
		e.t.Fatalf("check: %v", err)
	}
	return rep
}

func (e *env) assertCheckOK(readData bool) {
	e.t.Helper()
	rep := e.check(checker.Options{ReadData: readData})
	if !rep.OK() {
		e.t.Fatalf("check found problems: %+v", rep.Problems)
	}
}

func head(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "...")
	}
	return s
}

func packFiles(t *testing.T, repoDir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(repoDir, "data"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func e0() repository.Options { return repository.Options{} }
