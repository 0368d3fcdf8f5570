package local_test

import (
	"os"
	"path/filepath"
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
