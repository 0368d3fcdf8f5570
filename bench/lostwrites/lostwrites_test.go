package lostwrites

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// needFUSE skips unless a FUSE file system can be mounted here.
func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting FUSE directly needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
}

// A power cut leaves each file as of its last fsync: synced data kept,
// unsynced appends, overwrites and truncations rolled back, a file never
// synced empty; names (a rename into place) survive.
func TestPowerCutKeepsOnlySyncedData(t *testing.T) {
	needFUSE(t)
	backing, mnt := t.TempDir(), t.TempDir()
	old := bytes.Repeat([]byte("durable before the mount\n"), 1000)
	if err := os.WriteFile(filepath.Join(backing, "old"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(backing, "shrunk"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	cut := false
	t.Cleanup(func() {
		if !cut {
			_, _ = f.PowerCut()
		}
	})
	at := func(name string) string { return filepath.Join(mnt, name) }
	write := func(name string, flag int, data []byte, off int64, sync bool) {
		t.Helper()
		fh, err := os.OpenFile(at(name), flag, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
		if sync {
			if err := fh.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// synced: a new file written and fsynced, then appended to.
	write("synced", os.O_CREATE|os.O_WRONLY, []byte("first part, synced\n"), 0, true)
	write("synced", os.O_WRONLY, []byte("appended, never synced\n"), 19, false)
	// unsynced: written, renamed into place, never synced.
	write("tmp", os.O_CREATE|os.O_WRONLY, []byte("never synced\n"), 0, false)
	if err := os.Rename(at("tmp"), at("renamed")); err != nil {
		t.Fatal(err)
	}
	// old: overwritten in the middle without a sync.
	write("old", os.O_WRONLY, []byte("OVERWRITTEN"), 100, false)
	// shrunk: truncated without a sync.
	if err := os.Truncate(at("shrunk"), 10); err != nil {
		t.Fatal(err)
	}
	// Through the mount, everything is as written.
	if b, _ := os.ReadFile(at("synced")); string(b) != "first part, synced\nappended, never synced\n" {
		t.Fatalf("synced through the mount: %q", b)
	}
	rep, err := f.PowerCut()
	cut = true
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{
		"synced":  []byte("first part, synced\n"),
		"renamed": {},
		"old":     old,
		"shrunk":  old,
	}
	for name, w := range want {
		got, err := os.ReadFile(filepath.Join(backing, name))
		if err != nil {
			t.Fatalf("%s after the cut: %v", name, err)
		}
		if !bytes.Equal(got, w) {
			t.Errorf("%s after the cut: %d bytes %.40q, want %d bytes %.40q", name, len(got), got, len(w), w)
		}
	}
	if _, err := os.Stat(filepath.Join(backing, "tmp")); !os.IsNotExist(err) {
		t.Errorf("the old name of a renamed file is back: %v", err)
	}
	if rep.Files != 4 || rep.Syncs != 1 {
		t.Errorf("report %+v, want 4 files rolled back and 1 fsync", rep)
	}
}
