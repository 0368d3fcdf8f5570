package enginetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/bench/workload"
)

// Exclude patterns follow git's rules: a plain pattern anywhere, a leading
// slash anchors at the source, a trailing slash matches directories only,
// ** spans directories, and ! takes a path back in. What is excluded is
// neither stored nor descended into; the rest restores byte-exact.
func TestExcludePatterns(t *testing.T) {
	e := newTreeEnv(t, "links, empties, modes")
	for _, p := range []string{"a.tmp", "keep.tmp", "sub/b.tmp", "cache/x", "sub/cache/y", "deep/x/lost+found/z", "cachefile"} {
		must(t, os.MkdirAll(filepath.Join(e.src, filepath.Dir(p)), 0o755))
		must(t, os.WriteFile(filepath.Join(e.src, p), []byte(p), 0o644))
	}
	e.aopt.Exclude = []string{"*.tmp", "!keep.tmp", "/cache/", "**/lost+found"}
	sn, _ := e.mustBackup()
	target := filepath.Join(t.TempDir(), "restore")
	res, _, err := e.restore(sn, target)
	must(t, err)
	must(t, res.Err())
	got := e.manifest(target)
	for _, p := range []string{"a.tmp", "sub/b.tmp", "cache", "cache/x", "deep/x/lost+found"} {
		if _, ok := got[p]; ok {
			t.Errorf("%s is excluded, but the snapshot holds it", p)
		}
	}
	for _, p := range []string{"keep.tmp", "sub/cache/y", "cachefile", "deep/x"} {
		if _, ok := got[p]; !ok {
			t.Errorf("%s is not excluded, but the snapshot lacks it", p)
		}
	}
	// Everything not excluded is what the source holds.
	want := e.oracle[sn.ID]
	for p := range want {
		if _, ok := got[p]; !ok && !excludedIn(p, []string{"a.tmp", "sub/b.tmp", "cache", "deep/x/lost+found"}) {
			t.Errorf("%s missing from the restore", p)
		}
	}
}

func excludedIn(p string, roots []string) bool {
	return slices.ContainsFunc(roots, func(r string) bool { return p == r || strings.HasPrefix(p, r+"/") })
}

// With OneFileSystem a file system mounted below the source is stored as
// an empty directory (restic's rule); without, it is backed up. Needs root
// to mount a tmpfs.
func TestOneFileSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	e := newEnv(t, workload.Options{Proxies: 1, ConsulServers: 1, Scale: 0.01, Seed: 3})
	mnt := filepath.Join(e.src, "mnt")
	must(t, os.MkdirAll(mnt, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	must(t, os.WriteFile(filepath.Join(mnt, "other-fs"), []byte("on the tmpfs"), 0o644))
	for _, one := range []bool{false, true} {
		e.aopt = archiver.Options{Policy: "mesh", OneFileSystem: one}
		sn, _ := e.mustBackup()
		target := filepath.Join(t.TempDir(), "restore")
		res, _, err := e.restore(sn, target)
		must(t, err)
		must(t, res.Err())
		got := e.manifest(target)
		_, stored := got["mnt/other-fs"]
		if mp, ok := got["mnt"]; !ok || mp.Type != "dir" || stored == one {
			t.Fatalf("one file system %v: mount point %+v, its file stored %v", one, mp, stored)
		}
		if _, ok := got["proxies"]; !ok {
			t.Fatalf("one file system %v: the source's own files are missing", one)
		}
	}
}
