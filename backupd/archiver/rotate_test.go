package archiver

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/meshbackup/backupd/backupd/repotest"
)

// Scenario (docs/DESIGN.md §8 scenario 11): a proxy's log is rotated, or a
// config rewritten, after the scan listed the directory and before a file
// worker opens the file. Each name is stored with the content of the file
// the scan listed under it, found under its new name, so no line written
// before the backup started is lost; a file replaced by a rename over it
// (its old inode gone) is read as found.
func TestRotatedBetweenScanAndRead(t *testing.T) {
	const a, o, b = "line a1\nline a2\n", "old rotation\n", "new log\n"
	cases := []struct {
		name    string
		files   map[string]string // before the backup
		change  func(t *testing.T, dir string)
		want    map[string]string // in the snapshot
		renamed uint64            // at least: a worker may read a listed name before the change
	}{
		{
			name:  "first rotation",
			files: map[string]string{"access.log": a},
			change: func(t *testing.T, dir string) {
				mv(t, dir, "access.log", "access.log.1")
				write(t, dir, "access.log", b)
			},
			want:    map[string]string{"access.log": a},
			renamed: 1,
		},
		{
			name:  "rotation chain",
			files: map[string]string{"access.log": a, "access.log.1": o},
			change: func(t *testing.T, dir string) {
				mv(t, dir, "access.log.1", "access.log.2")
				mv(t, dir, "access.log", "access.log.1")
				write(t, dir, "access.log", b)
			},
			want:    map[string]string{"access.log": a, "access.log.1": o},
			renamed: 1,
		},
		{
			name:  "renamed, not yet reopened",
			files: map[string]string{"access.log": a},
			change: func(t *testing.T, dir string) {
				mv(t, dir, "access.log", "access.log.1")
			},
			want:    map[string]string{"access.log": a},
			renamed: 1,
		},
		{
			name:  "rewritten by a rename over it",
			files: map[string]string{"config.json": a},
			change: func(t *testing.T, dir string) {
				write(t, dir, "config.json.tmp", b)
				mv(t, dir, "config.json.tmp", "config.json")
			},
			want: map[string]string{"config.json": b},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			for name, content := range tc.files {
				write(t, src, name, content)
			}
			first := "access.log"
			if _, ok := tc.files[first]; !ok {
				first = "config.json"
			}
			r, _ := repotest.NewMem(t)
			sn, ar, err := backupSwapping(t, r, src, filepath.Join(src, first), func() { tc.change(t, src) }, nil)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				got, ok := fileContent(t, r, sn, name)
				if !ok || string(got) != want {
					t.Errorf("%s in the snapshot = %q (present %v), want %q", name, got, ok, want)
				}
			}
			if n := ar.Stats.Renamed.Load(); n < tc.renamed || n > uint64(len(tc.files)) {
				t.Errorf("Stats.Renamed = %d, want %d to %d", n, tc.renamed, len(tc.files))
			}
		})
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mv(t *testing.T, dir, from, to string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
		t.Fatal(err)
	}
}
