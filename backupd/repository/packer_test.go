package repository

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/backend/mem"
)

// TestWritebackFileStartsEveryMiB: the bytes written reach the file
// unchanged, and writeback is started each time a MiB more has been
// written, so no more than a MiB is ever left for the fsync.
func TestWritebackFileStartsEveryMiB(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "pack-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &writebackFile{f: f}
	var want []byte
	for i := range 40 {
		b := bytes.Repeat([]byte{byte(i)}, 90<<10+i)
		if n, err := w.Write(b); err != nil || n != len(b) {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		want = append(want, b...)
		if w.end != int64(len(want)) || w.end-w.start >= writebackEvery {
			t.Fatalf("after %d bytes: writeback started up to %d", len(want), w.start)
		}
	}
	if w.start < int64(len(want))-writebackEvery || w.start == 0 {
		t.Errorf("writeback started up to %d of %d bytes", w.start, len(want))
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file content differs (%d bytes, want %d): %v", len(got), len(want), err)
	}
}

// TestPackWritebackOnlyWhereFsynced: packs get their writeback started
// only in a directory repository's own tmp/, where Save fsyncs them; a
// temp file that is uploaded and removed (an object store's packs, or a
// TempDir elsewhere) is not pushed to the disk for nothing.
func TestPackWritebackOnlyWhereFsynced(t *testing.T) {
	root := filepath.Join(t.TempDir(), "repo")
	be, err := local.Create(root, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		be   backend.Backend
		dir  string
		want bool
	}{
		{"directory repository, its tmp/", be, be.TempDir(), true},
		{"directory repository, another TempDir", be, t.TempDir(), false},
		{"store without a temp directory", mem.New(), os.TempDir(), false},
	} {
		if got := inBackendTemp(tc.be, tc.dir); got != tc.want {
			t.Errorf("%s: writeback %v, want %v", tc.name, got, tc.want)
		}
	}
}
