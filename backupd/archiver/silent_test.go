package archiver

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repotest"
)

// A file whose content changed while its size and mtime did not (only the
// ctime moved: bit rot under a chmod, or an edit whose times were put
// back) is stored as found, counted as a silent change and named in a
// warning; an ordinary edit, and a chmod alone, are not.
func TestContentChangedBehindSizeAndMtime(t *testing.T) {
	orig := []byte(strings.Repeat("consul raft log entry\n", 200))
	flipped := bytes.Clone(orig)
	flipped[1000] ^= 0x10
	cases := []struct {
		name   string
		change func(t *testing.T, p string, mtime time.Time)
		want   []byte
		silent uint64
	}{
		{"bit flipped, mtime put back", func(t *testing.T, p string, mtime time.Time) {
			write(t, filepath.Dir(p), filepath.Base(p), string(flipped))
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}, flipped, 1},
		{"ordinary edit", func(t *testing.T, p string, mtime time.Time) {
			write(t, filepath.Dir(p), filepath.Base(p), string(flipped))
			later := mtime.Add(time.Second)
			if err := os.Chtimes(p, later, later); err != nil {
				t.Fatal(err)
			}
		}, flipped, 0},
		{"chmod alone", func(t *testing.T, p string, _ time.Time) {
			if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, orig, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			p := filepath.Join(src, "raft.log")
			write(t, src, "raft.log", string(orig))
			mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
			r, _ := repotest.NewMem(t)
			first, err := New(r, Options{Policy: "p"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := first.Backup(t.Context(), src); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // the change's ctime differs from the first backup's
			tc.change(t, p, mtime)
			var logs bytes.Buffer
			a, err := New(r, Options{Policy: "p", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			sn, err := a.Backup(t.Context(), src)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := fileContent(t, r, sn, "raft.log"); !bytes.Equal(got, tc.want) {
				t.Errorf("the snapshot holds %d bytes differing from what the file held", len(got))
			}
			if n := a.Stats.SilentChanges.Load(); n != tc.silent {
				t.Errorf("SilentChanges = %d, want %d", n, tc.silent)
			}
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "raft.log")
			if warned != (tc.silent > 0) {
				t.Errorf("warning naming the file: %v, want %v\n%s", warned, tc.silent > 0, logs.String())
			}
		})
	}
}
