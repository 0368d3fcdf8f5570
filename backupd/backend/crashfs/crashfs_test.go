package crashfs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/backendtest"
	"github.com/meshbackup/backupd/backupd/backend/crashfs"
	"github.com/meshbackup/backupd/backupd/backend/local"
)

// The crash model itself: unsynced data and unsynced directory entries are
// lost; synced ones survive.
func TestCrashModel(t *testing.T) {
	c := crashfs.New()
	if err := c.MkdirAll("/d", 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name string, sync, syncDir bool) {
		f, err := c.OpenFile(name, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.Write([]byte("data"))
		if sync {
			_ = f.Sync()
		}
		if syncDir {
			_ = c.SyncDir("/d")
		}
	}
	write("/d/durable", true, true)
	write("/d/no-file-sync", false, true)
	write("/d/no-dir-sync", true, false)
	c.Crash()
	if fi, err := c.Stat("/d/durable"); err != nil || fi.Size() != 4 {
		t.Fatalf("synced file lost: %v", err)
	}
	if _, err := c.Stat("/d/no-dir-sync"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("entry without directory fsync survived: %v", err)
	}
	if fi, err := c.Stat("/d/no-file-sync"); err != nil || fi.Size() != 0 {
		t.Fatalf("unsynced data survived: size %v err %v", fi, err)
	}
}

func TestLocalConformanceOnCrashFS(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		be, err := local.Create("/repo", local.Options{FS: crashfs.New()})
		if err != nil {
			t.Fatal(err)
		}
		return be
	})
}

// Every object Save reported as stored survives a crash right after.
func TestLocalSaveIsDurable(t *testing.T) {
	c := crashfs.New()
	be, err := local.Create("/repo", local.Options{FS: c})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for i := range 20 {
		h := backend.Handle{Type: backend.PackFile, Name: fmt.Sprintf("%02xff", i*7)}
		if err := be.Save(ctx, h, bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 1000))); err != nil {
			t.Fatal(err)
		}
		c.Crash()
		got, err := backend.LoadAll(ctx, be, h)
		if err != nil || len(got) != 1000 || got[999] != byte(i) {
			t.Fatalf("object %d lost or damaged by a crash after Save returned: %v", i, err)
		}
	}
}
