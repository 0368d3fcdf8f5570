package local_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/backendtest"
	"github.com/meshbackup/backupd/backupd/backend/local"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		be, err := local.Create(filepath.Join(t.TempDir(), "repo"), local.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ents, _ := os.ReadDir(be.TempDir())
			if len(ents) != 0 {
				t.Errorf("temp files left behind: %d", len(ents))
			}
		})
		return be
	})
}

func TestCreateRefusesExistingRepository(t *testing.T) {
	dir := t.TempDir()
	be, err := local.Create(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Save(t.Context(), backend.Handle{Type: backend.ConfigFile}, nilReader()); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Create(dir, local.Options{}); err == nil {
		t.Fatal("second create in the same directory succeeded")
	}
}

func TestOpenMissing(t *testing.T) {
	if _, err := local.Open(filepath.Join(t.TempDir(), "nope"), local.Options{}); err == nil {
		t.Fatal("open of a missing directory succeeded")
	}
}

func TestFreeBytes(t *testing.T) {
	dir := t.TempDir()
	be, err := local.Create(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := be.FreeBytes()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	want := st.Bavail * uint64(st.Bsize)
	// Other processes write to the same file system meanwhile: allow 64 MiB.
	if diff := int64(got) - int64(want); got == 0 || diff > 64<<20 || diff < -64<<20 {
		t.Errorf("FreeBytes = %d, statfs says %d", got, want)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := be.FreeBytes(); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("FreeBytes of a removed directory: err = %v, want an error naming %s", err, dir)
	}
}
