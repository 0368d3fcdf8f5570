package enginetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/meshbackup/backupd/backupd/archiver"
)

// deepPath is the relative path of 40 nested directories of 120-character
// names: 4,840 bytes, over PATH_MAX.
func deepPath() string {
	var parts []string
	for i := range 40 {
		parts = append(parts, strings.Repeat(string(rune('a'+i%26)), 120))
	}
	return filepath.Join(parts...)
}

// mkdirDeep creates rel below root one component at a time, through
// directory handles: no system call sees a path over PATH_MAX.
func mkdirDeep(t *testing.T, root, rel string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(root)
	must(t, err)
	t.Cleanup(func() { r.Close() })
	p := ""
	for _, c := range strings.Split(rel, "/") {
		p = filepath.Join(p, c)
		must(t, r.Mkdir(p, 0o755))
	}
	return r
}

// Scenario: a file at a path longer than PATH_MAX. The backup opens every
// file relative to its directory's handle, so the length is no limit: it is
// backed up (not counted as an error) and restores byte-exact.
func TestFileBeyondPathMaxBacksUpAndRestores(t *testing.T) {
	rel := deepPath()
	if len(rel) <= unix.PathMax {
		t.Fatalf("path of %d bytes is not over PATH_MAX", len(rel))
	}
	e := newTreeEnv(t, "links, empties, modes")
	e.src = filepath.Join(t.TempDir(), "deep")
	must(t, os.Mkdir(e.src, 0o755))
	src := mkdirDeep(t, e.src, rel)
	want := []byte("at the bottom, beyond PATH_MAX")
	must(t, src.WriteFile(filepath.Join(rel, "leaf"), want, 0o644))
	r := e.open()
	a, err := archiver.New(r, e.aopt)
	must(t, err)
	sn, err := a.Backup(t.Context(), e.src)
	must(t, err)
	if sn.Totals.Errors != 0 || sn.Totals.Files != 1 || sn.Totals.Dirs != 41 {
		t.Fatalf("backup of the deep file: %+v", sn.Totals)
	}
	target := filepath.Join(t.TempDir(), "restore")
	res, _, err := e.restore(sn, target)
	must(t, err)
	must(t, res.Err())
	tr, err := os.OpenRoot(target)
	must(t, err)
	defer tr.Close()
	got, err := tr.ReadFile(filepath.Join(rel, "leaf"))
	must(t, err)
	if string(got) != string(want) {
		t.Fatalf("restored %q, want %q", got, want)
	}
}
